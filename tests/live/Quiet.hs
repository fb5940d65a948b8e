-- | Quiet: all the work on capability 0 of four, a quiet global buffer.
--
--   usage: Quiet SECONDS TICK_MS +RTS -N4 -l -ol<FIFO> -RTS
--
--   One thread pinned to capability 0 (forkOn) does some allocating work,
--   then emits the user marker "tick K" (traceMarkerIO) and writes capability
--   0's eventlog buffer to the pipe at once (quiet_flush.c: GHC 9.0 has no
--   working flush of its own), every TICK_MS milliseconds for SECONDS
--   seconds.  The global buffer (the start-up events: capsets, capabilities)
--   is written once, at the first tick, and then never again until exit;
--   capabilities 1 to 3 are never written before exit.  So the eventlog
--   reaching the pipe has one stream that speaks every tick and four that
--   are quiet: what a live reader's watermark must not wait for.
--
--   Exit status 3 if the flusher refused the RTS's buffers (see quiet_flush.c).
module Main (main) where

import Control.Concurrent
import Control.Monad
import Data.IORef
import qualified Data.Map.Strict as M
import Data.Word (Word64)
import Debug.Trace (traceMarkerIO)
import Foreign.C.Types (CLong (..))
import GHC.Clock (getMonotonicTimeNSec)
import System.Environment (getArgs)
import System.Exit
import System.IO

foreign import ccall unsafe "quiet_flush" c_quietFlush :: CLong -> IO CLong

work :: Int -> Int
work k = M.foldl' (+) 0 (M.fromList [((i * 7919 + k) `mod` 4099, i) | i <- [1 .. 3000]])

main :: IO ()
main = do
  args <- getArgs
  (secs, tick) <- case args of
    [s, t] -> return (read s :: Double, read t :: Word64)
    _ -> die "usage: Quiet SECONDS TICK_MS +RTS -N4 -l -ol<FIFO> -RTS"
  refused <- newIORef (0 :: CLong)
  done <- newEmptyMVar
  _ <- forkOn 0 $ do
    start <- getMonotonicTimeNSec
    let deadline = start + round (secs * 1e9)
        period = tick * 1000000
        loop k = do
          now <- getMonotonicTimeNSec
          when (now < deadline) $ do
            _ <- evaluateInt (work k)
            traceMarkerIO ("tick " ++ show k)
            r <- c_quietFlush (if k == 0 then 1 else 0)
            when (r < 0) $ writeIORef refused r
            now' <- getMonotonicTimeNSec
            let due = start + fromIntegral (k + 1) * period
            when (due > now') $ threadDelay (fromIntegral ((due - now') `div` 1000))
            loop (k + 1)
    loop (0 :: Int)
    putMVar done ()
  takeMVar done
  r <- readIORef refused
  when (r < 0) $ do
    hPutStrLn stderr ("Quiet: the eventlog flusher refused, code " ++ show r)
    exitWith (ExitFailure 3)
  where
    evaluateInt :: Int -> IO Int
    evaluateInt x = x `seq` return x

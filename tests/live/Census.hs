-- | Census: a threaded program that keeps a changing heap alive and writes
--   every capability's eventlog buffer to the pipe every tick, for the
--   live-equals-import tests (heap profile by closure type with -hT, the
--   non-moving collector with -xn).
--
--   usage: Census SECONDS TICK_MS +RTS -N2 -l -ol<FIFO> [-hT -i0.2 | -xn] -RTS
--
--   One worker per capability (forkOn) builds and folds maps, keeps the last
--   few alive, emits "tick K" (traceMarkerIO) and the span "START round" /
--   "STOP round", then writes its capability's buffer to the pipe
--   (quiet_flush.c; worker 0 also writes the global buffer, which holds the
--   heap census samples).  Every fifth tick worker 0 asks for a major GC.
--   Exit status 3 if the flusher refused the RTS's buffers.
module Main (main) where

import Control.Concurrent
import Control.Monad
import Data.IORef
import qualified Data.Map.Strict as M
import Data.Word (Word64)
import Debug.Trace (traceEventIO, traceMarkerIO)
import Foreign.C.Types (CLong (..))
import GHC.Clock (getMonotonicTimeNSec)
import System.Environment (getArgs)
import System.Exit
import System.IO
import System.Mem (performMajorGC)

foreign import ccall unsafe "quiet_flush" c_flush :: CLong -> IO CLong

build :: Int -> Int -> M.Map Int [Int]
build cap k = M.fromList [(i, [i .. i + (k + cap) `mod` 7]) | i <- [1 .. 2000 + 300 * (k `mod` 5)]]

main :: IO ()
main = do
  args <- getArgs
  (secs, tick) <- case args of
    [s, t] -> return (read s :: Double, read t :: Word64)
    _ -> die "usage: Census SECONDS TICK_MS +RTS -N2 -l -ol<FIFO> -RTS"
  caps <- getNumCapabilities
  refused <- newIORef (0 :: CLong)
  start <- getMonotonicTimeNSec
  dones <- forM [0 .. caps - 1] $ \cap -> do
    done <- newEmptyMVar
    kept <- newIORef ([] :: [M.Map Int [Int]])
    _ <- forkOn cap $ do
      let deadline = start + round (secs * 1e9)
          period = tick * 1000000
          loop k = do
            now <- getMonotonicTimeNSec
            when (now < deadline) $ do
              traceEventIO "START round"
              let m = build cap k
              _ <- evaluateInt (M.foldl' (\a xs -> a + sum xs) 0 m)
              modifyIORef' kept (take 6 . (m :))
              traceEventIO "STOP round"
              when (cap == 0) $ do
                traceMarkerIO ("tick " ++ show k)
                when (k `mod` 5 == 4) performMajorGC
              r <- c_flush (if cap == 0 then 1 else 0)
              when (r < 0) $ writeIORef refused r
              now' <- getMonotonicTimeNSec
              let due = start + fromIntegral (k + 1) * period
              when (due > now') $ threadDelay (fromIntegral ((due - now') `div` 1000))
              loop (k + 1)
      loop (0 :: Int)
      putMVar done ()
    return done
  mapM_ takeMVar dones
  r <- readIORef refused
  when (r < 0) $ do
    hPutStrLn stderr ("Census: the eventlog flusher refused, code " ++ show r)
    exitWith (ExitFailure 3)
  where
    evaluateInt :: Int -> IO Int
    evaluateInt x = x `seq` return x

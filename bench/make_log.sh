#!/usr/bin/env bash
# usage: bench/make_log.sh [MB]
#
# Builds a big real GHC eventlog (~MB megabytes, default 50) for bench/decode.py,
# bench/derive.py and bench/import.py, plus the ghc-events CountEvents baseline,
# from the corpus sources:
#   bench/data/CountEvents     ghc-events parse-and-count client (ghc -O2)
#   bench/data/threads-mvar    corpus ThreadsMVar.hs, -threaded -eventlog
#   bench/data/big.eventlog    ./threads-mvar $BIG_WORKERS $BIG_ROUNDS +RTS -l -N2 -A64k
#   bench/data/big-MBmb.eventlog  the same, for another size: bench/make_log.sh 500
#                              gives the >= 500 MB log of issue 16 (about a minute to run)
#
# The log mixes thread scheduling (run/stop/wakeup/migrate), START/STOP user
# messages and markers, and GC events (the small -A64k allocation area makes
# collections frequent, about a fifth of all events).
#
# Environment:
#   LIVEPROF_CORPUS  corpus folder (default: ../shared/corpus, relative to the repo root)
#   BIG_WORKERS      worker threads (default 100)
#   BIG_ROUNDS       rounds per worker (default 61 per MB asked: ~18 KB of log per round
#                    of the 100 workers, 2800 for 50 MB)
#   SKIP_APT=1       never run apt-get
#
# bench/data/ is git-ignored: nothing this script writes is committed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORPUS="${LIVEPROF_CORPUS:-../shared/corpus}"
case "$CORPUS" in
  /*) ;;
  *) CORPUS="$ROOT/$CORPUS" ;;
esac
SRC="$CORPUS/src"
DATA="$ROOT/bench/data"
MB="${1:-50}"
case "$MB" in
  ''|*[!0-9]*) echo "usage: bench/make_log.sh [MB]" >&2; exit 2 ;;
esac
WORKERS="${BIG_WORKERS:-100}"
if [ "$MB" = 50 ]; then
  ROUNDS="${BIG_ROUNDS:-2800}"
  OUT_NAME=big.eventlog
else
  ROUNDS="${BIG_ROUNDS:-$(( MB * 61 ))}"
  OUT_NAME="big-${MB}mb.eventlog"
fi

for f in CountEvents.hs ThreadsMVar.hs; do
  if [ ! -f "$SRC/$f" ]; then
    echo "error: $SRC/$f not found (set LIVEPROF_CORPUS)" >&2
    exit 1
  fi
done

# 1. toolchain: GHC + ghc-events from Debian, only if missing
have_toolchain() {
  command -v ghc >/dev/null 2>&1 &&
    ghc-pkg --simple-output field ghc-events version >/dev/null 2>&1
}
if ! have_toolchain; then
  if [ "${SKIP_APT:-0}" = 1 ]; then
    echo "error: ghc / ghc-events missing and SKIP_APT=1" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  start=$(date +%s)
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y ghc libghc-ghc-events-dev
  echo "== toolchain installed in $(( $(date +%s) - start )) s" >&2
fi
echo "== ghc $(ghc --numeric-version), ghc-events $(ghc-pkg --simple-output field ghc-events version)" >&2

# 2. compile, from a scratch copy of the sources (the corpus stays read-only)
mkdir -p "$DATA"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp "$SRC/CountEvents.hs" "$SRC/ThreadsMVar.hs" "$WORK/"
(
  cd "$WORK"
  echo "== ghc -O2 CountEvents.hs" >&2
  ghc -v0 -O2 -rtsopts -outputdir obj/CountEvents CountEvents.hs -o "$DATA/CountEvents"
  echo "== ghc -O -threaded -rtsopts -eventlog ThreadsMVar.hs" >&2
  ghc -v0 -O -threaded -rtsopts -eventlog -outputdir obj/threads-mvar ThreadsMVar.hs \
    -o "$DATA/threads-mvar"
)

# 3. run it in the scratch folder; the RTS writes threads-mvar.eventlog there
mkdir -p "$WORK/run"
(
  cd "$WORK/run"
  echo "== threads-mvar $WORKERS $ROUNDS +RTS -l -N2 -A64k -RTS" >&2
  "$DATA/threads-mvar" "$WORKERS" "$ROUNDS" +RTS -l -N2 -A64k -RTS
)
mv "$WORK/run/threads-mvar.eventlog" "$DATA/$OUT_NAME"

# 4. check the log is complete: ends with the 0xFFFF end-of-data marker and
#    ghc-events parses it
LOG="$DATA/$OUT_NAME"
size=$(stat -c %s "$LOG")
tail_hex=$(tail -c 2 "$LOG" | od -An -tx1 | tr -d ' \n')
if [ "$tail_hex" != "ffff" ]; then
  echo "error: $LOG does not end with the end-of-data marker (last bytes: $tail_hex)" >&2
  exit 1
fi
events=$("$DATA/CountEvents" "$LOG")
echo "== $LOG: $size bytes, $events events (ghc-events)" >&2
if [ "$size" -lt $(( MB * 800000 )) ] || [ "$size" -gt $(( MB * 1200000 )) ]; then
  echo "warning: $size bytes is outside $MB MB +-20%; adjust BIG_ROUNDS" >&2
fi

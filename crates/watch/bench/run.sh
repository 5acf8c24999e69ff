#!/usr/bin/env bash
# Benchmark of `rstscope watch` (as root): idle cost, then the highest reset
# rate namespaced clients can produce against a closed port, bounded in count
# and time. Reports resets produced vs received (loss) and watch's CPU.
#
#   crates/watch/bench/run.sh [COUNT=2000000] [SECONDS=20] [THREADS=2] [IDLE_SECONDS=10]
#   BACKEND=perf crates/watch/bench/run.sh ...   (default: auto = ftrace)
set -euo pipefail
cd "$(dirname "$0")/../../.."
N=${1:-2000000}; T=${2:-20}; J=${3:-2}; IDLE=${4:-10}
PORT=9
cargo build --release -q -p rstscope
cargo build --release -q -p rstscope-watch --example rstload
NS="rsw-$$-bench"
OUT=$(mktemp -d)
WPID=""
cleanup() {
  if [ -n "$WPID" ] && kill -0 "$WPID" 2>/dev/null; then kill -INT "$WPID"; wait "$WPID" || true; fi
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip -n "$NS" link set lo up

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

target/release/rstscope watch --quiet --backend "${BACKEND:-auto}" --port "$PORT" 2>"$OUT/watch.err" &
WPID=$!
sleep 1
kill -0 "$WPID" || { cat "$OUT/watch.err"; exit 1; }

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(ticks "$WPID"); sleep "$IDLE"; t1=$(ticks "$WPID")
echo "idle: watch used $(( (t1 - t0) * 1000 / HZ )) ms CPU in ${IDLE} s"

t0=$(ticks "$WPID"); s0=$(date +%s.%N)
ip netns exec "$NS" target/release/examples/rstload --port "$PORT" --count "$N" --seconds "$T" --threads "$J" | tee "$OUT/load"
sleep 1   # let watch drain the tail
t1=$(ticks "$WPID"); s1=$(date +%s.%N)
kill -INT "$WPID"; wait "$WPID" || true; WPID=""
refused=$(sed -n 's/.*refused=\([0-9]*\).*/\1/p' "$OUT/load")
secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$OUT/load")
seen=$(sed -n 's/^rstscope watch: \([0-9]*\) resets.*/\1/p' "$OUT/watch.err")
lost=$(sed -n 's/.* \([0-9]*\) lost samples.*/\1/p' "$OUT/watch.err")
cat "$OUT/watch.err" | sed 's/^/  watch| /'
awk -v r="$refused" -v s="$secs" -v seen="$seen" -v lost="$lost" -v c0="$t0" -v c1="$t1" -v hz="$HZ" -v w0="$s0" -v w1="$s1" 'BEGIN {
  produced = 2 * r;   # each refused connect = one sent + one received reset
  cpu = (c1 - c0) / hz; wall = w1 - w0;
  printf "load: %d refused connects in %.2f s = %d resets produced (%.0f resets/s)\n", r, s, produced, produced / s;
  printf "watch: %d resets reported, %d lost samples, missing %d\n", seen, lost, produced - seen;
  printf "watch CPU: %.2f s over %.2f s wall = %.3f cores (%.3f cores during load at %.0f resets/s)\n", cpu, wall, cpu / wall, cpu / s, produced / s;
}'

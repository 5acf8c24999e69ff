#!/usr/bin/env bash
# Times the whole lab catalog N times (default 5) as root and checks it is
# deterministic: every run must pass every scenario. Prints the machine load.
# Usage: sudo crates/lab/bench/run.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../../.."
n=${1:-5}
cargo build --release -q -p rstscope
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
fails=0
for i in $(seq "$n"); do
  start=$(date +%s.%N)
  if ./target/release/rstscope lab run --format json > /tmp/rstscope-lab-bench.$$ 2>/dev/null; then r=ok; else r=FAIL; fails=$((fails+1)); fi
  end=$(date +%s.%N)
  passed=$(grep -c '"pass":true' /tmp/rstscope-lab-bench.$$ || true)
  printf 'run %d: %s, %d/12 passed, %.1f s wall\n' "$i" "$r" "$passed" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')"
done
rm -f /tmp/rstscope-lab-bench.$$
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "left-over rsl- namespaces: $(ip netns list | grep -c '^rsl-' || true)"
exit $((fails > 0))

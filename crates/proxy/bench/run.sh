#!/usr/bin/env bash
# Speed benchmark of `rstscope proxy` (not a test; loopback only).
#   throughput: iperf3 direct vs through the proxy vs through socat, 1 and 64 streams
#   latency:    32-byte ping-pong, direct vs through the proxy (added p50/p99)
#   memory:     RSS of the proxy holding 10,000 idle connections
# Needs iperf3 and socat (scripts/setup installs them). Usage:
#   crates/proxy/bench/run.sh [SECONDS_PER_IPERF_RUN]   (RSP_BENCH_ONLY=idle: memory part only;
#   RSP_BENCH_ROUNDS=N: iperf3 rounds per figure, median reported, default 3)
# On a shared machine throughput swings with the load from elsewhere; the
# CPU spent per GB moved is the steadier figure.
set -euo pipefail
cd "$(dirname "$0")/../../.."
T=${1:-5}
BASE=${RSP_BENCH_PORT:-27000}
cargo build --release -q -p rstscope
cargo build --release -q -p rstscope-proxy --example pingpong
BIN=target/release/rstscope
PP=target/release/examples/pingpong
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
bg() { "$@" >/dev/null 2>&1 & pids+=($!); }

IPERF=$BASE; PROXY=$((BASE+1)); SOCAT=$((BASE+2)); PPS=$((BASE+3)); PPP=$((BASE+4))
HOLD=$((BASE+5)); HOLDP=$((BASE+6)); API=$((BASE+7))
iperf3 -s -B 127.0.0.1 -p $IPERF >/dev/null 2>&1 & IPERF_PID=$!; pids+=($IPERF_PID)
bg $PP server 127.0.0.1:$PPS
bg $PP hold 127.0.0.1:$HOLD
cat > /tmp/rsp-bench-$$.json <<EOF
[{"name":"iperf","listen":"127.0.0.1:$PROXY","upstream":"127.0.0.1:$IPERF"},
 {"name":"ping","listen":"127.0.0.1:$PPP","upstream":"127.0.0.1:$PPS"},
 {"name":"idle","listen":"127.0.0.1:$HOLDP","upstream":"127.0.0.1:$HOLD"}]
EOF
$BIN proxy --api 127.0.0.1:$API --config /tmp/rsp-bench-$$.json --quiet >/dev/null 2>&1 & PROXY_PID=$!; pids+=($PROXY_PID)
socat TCP-LISTEN:$SOCAT,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:$IPERF >/dev/null 2>&1 & SOCAT_PID=$!; pids+=($SOCAT_PID)
sleep 1
rm -f /tmp/rsp-bench-$$.json

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# CPU ticks (user+sys, children included: socat forks one per connection)
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15+$16+$17}' /proc/$p/stat))); done; echo $t; }
HZ=$(getconf CLK_TCK)
# one iperf3 run: prints "Gbit/s CPU-ms/GB" (client + server + middle process)
run1() { # port streams middle-pid
  local t0 t1
  t0=$(ticks $IPERF_PID ${3:-})
  iperf3 -c 127.0.0.1 -p "$1" -P "$2" -t "$T" -J > /tmp/rsp-iperf-$$.json 2>/dev/null
  sleep 0.3 # let socat reap its children
  t1=$(ticks $IPERF_PID ${3:-})
  python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["end"]
r = e["sum_received"]; gb = r["bytes"] / 1e9
cpu = e["cpu_utilization_percent"]["host_total"] / 100 * r["seconds"] + (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
print("%.2f %.0f" % (gb * 8 / r["seconds"], 1000 * cpu / gb))' /tmp/rsp-iperf-$$.json "$t0" "$t1" "$HZ"
}
ROUNDS=${RSP_BENCH_ROUNDS:-3}
if [ "${RSP_BENCH_ONLY:-}" != idle ]; then
for P in 1 64; do
  : > /tmp/rsp-tp-$$.txt
  # Alternate the three, so a burst of load from elsewhere hits all of them.
  for _ in $(seq "$ROUNDS"); do
    echo "direct $(run1 $IPERF $P)" >> /tmp/rsp-tp-$$.txt
    echo "proxy $(run1 $PROXY $P $PROXY_PID)" >> /tmp/rsp-tp-$$.txt
    echo "socat $(run1 $SOCAT $P $SOCAT_PID)" >> /tmp/rsp-tp-$$.txt
  done
  python3 - "$P" "$ROUNDS" /tmp/rsp-tp-$$.txt <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[3]):
    k, g, c = line.split(); runs.setdefault(k, []).append((float(g), float(c)))
med = {k: (statistics.median(g for g, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
d, x, s = med["direct"], med["proxy"], med["socat"]
print("throughput -P %s (median of %s): direct %.1f Gbit/s, rstscope proxy %.1f Gbit/s (%.0f%% of direct), socat %.1f Gbit/s"
      % (sys.argv[1], sys.argv[2], d[0], x[0], 100 * x[0] / d[0], s[0]))
print("  CPU per GB moved (iperf3 client + server + middle): direct %.0f ms, proxy %.0f ms, socat %.0f ms"
      % (d[1], x[1], s[1]))
print("  runs (Gbit/s): " + "; ".join("%s %s" % (k, " ".join("%.1f" % g for g, _ in v)) for k, v in runs.items()))
PY
done
echo "# load average after the throughput runs: $(cut -d' ' -f1-3 /proc/loadavg)"

direct=$($PP client 127.0.0.1:$PPS 20000)
viap=$($PP client 127.0.0.1:$PPP 20000)
echo "ping-pong direct:  $direct"
echo "ping-pong proxied: $viap"
python3 - "$direct" "$viap" <<'EOF'
import sys
def parse(s): return {k: float(v) for k, v in (p.split("=") for p in s.split())}
d, p = parse(sys.argv[1]), parse(sys.argv[2])
print("added latency: p50 %.1f us, p99 %.1f us" % (p["p50_us"] - d["p50_us"], p["p99_us"] - d["p99_us"]))
EOF
fi

rss() { awk '/VmRSS/ {print $2}' /proc/$PROXY_PID/status; }
# Each proxied connection holds two sockets in the proxy: 10,000 need more
# than 20,000 descriptors. Without CAP_SYS_RESOURCE the hard RLIMIT_NOFILE
# cannot be raised (the proxy raises its soft limit to the hard one), so
# hold as many as it allows and say so.
hard=$(awk '/Max open files/ {print $5}' /proc/$PROXY_PID/limits)
N=10000
if [ "$hard" != unlimited ] && [ $(( (hard - 64) / 2 )) -lt $N ]; then
  N=$(( (hard - 64) / 2 ))
  echo "note: the proxy's hard RLIMIT_NOFILE is $hard (cannot be raised here): holding $N idle connections, not 10000"
fi
before=$(rss)
$PP idle 127.0.0.1:$HOLDP $N 5 > /tmp/rsp-idle-$$.out & IDLE=$!; pids+=($IDLE)
# connecting 10,000 sockets takes a while on a loaded machine: wait for it
for _ in $(seq 1 240); do grep -q open= /tmp/rsp-idle-$$.out 2>/dev/null && break; sleep 0.5; done
sleep 1
held=$(curl -s http://127.0.0.1:$API/metrics | awk '/connections_active\{proxy="idle"\}/ {print $2}' || true)
after=$(rss)
wait $IDLE || true
echo "idle: $(cat /tmp/rsp-idle-$$.out), proxy holds $held connections, RSS ${before} kB before -> ${after} kB with them ($(( after / 1024 )) MB, $(( (after - before) * 1024 / (held > 0 ? held : 1) )) bytes per connection)"
rm -f /tmp/rsp-idle-$$.out /tmp/rsp-tp-$$.txt /tmp/rsp-iperf-$$.json

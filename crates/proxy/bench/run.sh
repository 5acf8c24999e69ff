#!/usr/bin/env bash
# Speed benchmark of `rstscope proxy` (not a test; loopback only).
#   throughput: iperf3 direct vs through the proxy vs through socat, 1 and 64 streams
#   latency:    32-byte ping-pong, direct vs through the proxy (added p50/p99)
#   memory:     RSS of the proxy holding 10,000 idle connections
# Needs iperf3 and socat (scripts/setup installs them). Usage:
#   crates/proxy/bench/run.sh [SECONDS_PER_IPERF_RUN]   (RSP_BENCH_ONLY=idle: memory part only)
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
bg iperf3 -s -B 127.0.0.1 -p $IPERF
bg $PP server 127.0.0.1:$PPS
bg $PP hold 127.0.0.1:$HOLD
cat > /tmp/rsp-bench-$$.json <<EOF
[{"name":"iperf","listen":"127.0.0.1:$PROXY","upstream":"127.0.0.1:$IPERF"},
 {"name":"ping","listen":"127.0.0.1:$PPP","upstream":"127.0.0.1:$PPS"},
 {"name":"idle","listen":"127.0.0.1:$HOLDP","upstream":"127.0.0.1:$HOLD"}]
EOF
$BIN proxy --api 127.0.0.1:$API --config /tmp/rsp-bench-$$.json --quiet >/dev/null 2>&1 & PROXY_PID=$!; pids+=($PROXY_PID)
bg socat TCP-LISTEN:$SOCAT,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:$IPERF
sleep 1
rm -f /tmp/rsp-bench-$$.json

echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
gbps() { # port streams
  iperf3 -c 127.0.0.1 -p "$1" -P "$2" -t "$T" -J 2>/dev/null |
    python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
if [ "${RSP_BENCH_ONLY:-}" != idle ]; then
for P in 1 64; do
  d=$(gbps $IPERF $P); x=$(gbps $PROXY $P); s=$(gbps $SOCAT $P)
  pct=$(python3 -c "print('%.0f' % (100*$x/$d))")
  echo "throughput -P $P: direct $d Gbit/s, rstscope proxy $x Gbit/s ($pct% of direct), socat $s Gbit/s"
done

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
before=$(rss)
$PP idle 127.0.0.1:$HOLDP 10000 5 > /tmp/rsp-idle-$$.out & IDLE=$!; pids+=($IDLE)
# connecting 10,000 sockets takes a while on a loaded machine: wait for it
for _ in $(seq 1 240); do grep -q open= /tmp/rsp-idle-$$.out 2>/dev/null && break; sleep 0.5; done
sleep 1
held=$(curl -s http://127.0.0.1:$API/metrics | awk '/connections_active\{proxy="idle"\}/ {print $2}' || true)
after=$(rss)
wait $IDLE || true
echo "idle: $(cat /tmp/rsp-idle-$$.out), proxy holds $held connections, RSS ${before} kB before -> ${after} kB with them ($(( (after) / 1024 )) MB)"
rm -f /tmp/rsp-idle-$$.out

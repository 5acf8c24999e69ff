#!/usr/bin/env bash
# Wall time of `rstscope doctor` (one full read: /proc counters, sysctls,
# sock_diag dump, every process's descriptors) and of `rstscope explain`
# (process start + one table lookup). Usage:
#   crates/doctor/bench/run.sh [path/to/rstscope] [runs]
# Prints the machine load too: quote it with the figures.
set -euo pipefail
bin=${1:-target/release/rstscope}
runs=${2:-20}
now() { date +%s%N; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg), cpus: $(nproc), processes: $(ls -d /proc/[0-9]* | wc -l), tcp sockets: $(( $(wc -l < /proc/net/tcp) + $(wc -l < /proc/net/tcp6) - 2 ))"
t0=$(now); for _ in $(seq "$runs"); do "$bin" doctor --format json >/dev/null || true; done; t1=$(now)
echo "doctor --format json: $(( (t1 - t0) / runs / 1000 )) us per run ($runs runs)"
t0=$(now); for _ in $(seq "$runs"); do "$bin" doctor >/dev/null || true; done; t1=$(now)
echo "doctor (human):       $(( (t1 - t0) / runs / 1000 )) us per run ($runs runs)"
t0=$(now); for _ in $(seq "$runs"); do "$bin" explain --format json "read tcp 10.0.0.2:52814->10.0.0.1:80: read: connection reset by peer" >/dev/null; done; t1=$(now)
echo "explain --format json: $(( (t1 - t0) / runs / 1000 )) us per run ($runs runs)"

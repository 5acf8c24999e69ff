#!/usr/bin/env bash
# Demonstrates `rstscope doctor --netns NAME --interval T` (as root): creates
# a network namespace, sets tcp_abort_on_overflow=1 inside it only, and
# while the doctor measures, produces three kinds of resets on loopback in
# that namespace: a refused connection, a close with unread data, and an
# accept-queue overflow. The namespace is removed on every exit.
# Usage: crates/doctor/scripts/demo-netns.sh [path/to/rstscope] [doctor args...]
set -euo pipefail
bin=${1:-target/debug/rstscope}; shift || true
ns="rsd-demo-$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip -n "$ns" link set lo up
ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv4/tcp_abort_on_overflow'
ip netns exec "$ns" python3 - <<'PY' &
import socket, time
time.sleep(1)
# refused
p = socket.socket(); p.bind(("127.0.0.1", 0)); port = p.getsockname()[1]; p.close()
try: socket.create_connection(("127.0.0.1", port), timeout=1)
except ConnectionRefusedError: pass
# close with unread data
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(); c = socket.create_connection(l.getsockname())
s, _ = l.accept(); c.sendall(b"unread"); time.sleep(0.1); s.close(); time.sleep(0.1)
# accept-queue overflow: backlog 1, never accept
o = socket.socket(); o.bind(("127.0.0.1", 0)); o.listen(1); held = []
for _ in range(6):
    try: held.append(socket.create_connection(o.getsockname(), timeout=0.2))
    except OSError: pass
time.sleep(8)
PY
work=$!
"$bin" doctor --netns "$ns" --interval 4 "$@" || true
kill "$work" 2>/dev/null || true
wait "$work" 2>/dev/null || true

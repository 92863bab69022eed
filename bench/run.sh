#!/usr/bin/env bash
# Side-by-side throughput: N trivial tasks (`true`) through `lote up` with one
# agent of $(nproc) slots, against `xargs -P $(nproc)` running the same
# commands, in the same run on the same machine. Prints a table of tasks/s and
# Lote's ratio to each peer. Durable state stays on (SQLite, synchronous=full).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
CORES=$(nproc)
LOTE=${LOTE:-$PWD/bin/lote}
[ -x "$LOTE" ] || { echo "build first: make build" >&2; exit 1; }

work=$(mktemp -d)
up_pid=
cleanup() {
  if [ -n "$up_pid" ]; then kill -INT "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

# xargs: the machine's practical ceiling for spawning trivial processes.
t0=$(now); seq "$N" | xargs -P "$CORES" -n 1 true; t1=$(now)
xargs_rate=$(rate "$N" "$t0" "$t1")

export LOTE_HOME="$work/home"
"$LOTE" up --dir "$LOTE_HOME" --nodes 1 --slots "$CORES" --listen 127.0.0.1:0 >"$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 100); do
  [ -s "$LOTE_HOME/client.json" ] && "$LOTE" pool nodes local -o json 2>/dev/null | grep -q '"state": "idle"' && break
  sleep 0.1
done
# Warm-up: one small job so the agent, spawner and store are started.
"$LOTE" submit -q --array 1-100 --wait -- true >/dev/null

t0=$(now); "$LOTE" submit -q --array "1-$N" --wait -- true >/dev/null; t1=$(now)
lote_rate=$(rate "$N" "$t0" "$t1")

printf '\n%-34s %10s %10s\n' "end to end, $N x true, $CORES cores" "tasks/s" "lote/peer"
printf '%-34s %10s %10s\n' "xargs -P $CORES" "$xargs_rate" "$(awk -v a="$lote_rate" -v b="$xargs_rate" 'BEGIN{printf "%.2f", a/b}')"
printf '%-34s %10s %10s\n' "lote up (1 agent, $CORES slots)" "$lote_rate" "1.00"

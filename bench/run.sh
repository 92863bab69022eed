#!/usr/bin/env bash
# make bench: every measure of DESIGN §7, in one run on this machine, printed
# as one table (and written to bench/results/latest.md). See
# docs/benchmarks.md for the method.
#
#   1. end to end: N trivial tasks (`true`) through `lote up` (1 node of
#      $(nproc) slots) against xargs -P $(nproc) (same N), alternated for
#      ROUNDS rounds (medians reported), then GNU parallel (N_PARALLEL) and
#      Slurm (N_SLURM, sbatch --array on a single-node cluster this script
#      configures and starts), as tasks/s and ratios;
#   2. stubbed execution (STUB_ROUNDS runs, medians reported), 3. big
#      array, 5. restart after kill -9 (lotebench
#      stubbed / bigarray: the real server process, simulated agents in
#      another process over loopback);
#   4. submit → running latency on an idle pool (lotebench latency).
#
# Durable state stays on everywhere (SQLite, synchronous=full). Overrides for
# quick runs: N, ROUNDS, N_PARALLEL, N_SLURM, STUB_N, STUB_NODES, STUB_ROUNDS,
# BIG_N, LAT_N;
# BENCH_SKIP="slurm parallel ..." leaves measures out (words: xargs lote
# parallel slurm stubbed bigarray latency). A peer that cannot be installed
# or started is skipped with a message; BENCH_REQUIRE_PEERS=1 makes that an
# error (for a CI job; the bench is not part of CI today).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CORES=$(nproc)
N=${N:-20000}
ROUNDS=${ROUNDS:-3}
STUB_ROUNDS=${STUB_ROUNDS:-3}
N_PARALLEL=${N_PARALLEL:-2000}
N_SLURM=${N_SLURM:-300}
STUB_N=${STUB_N:-1000000}
STUB_NODES=${STUB_NODES:-1000}
BIG_N=${BIG_N:-1000000}
LAT_N=${LAT_N:-1000}
SKIP=" ${BENCH_SKIP:-} "
LOTE=${LOTE:-$ROOT/bin/lote}
LOTEBENCH=$ROOT/bin/lotebench
RESULTS=$ROOT/bench/results
[ -x "$LOTE" ] || { echo "build first: make build" >&2; exit 1; }

started=$SECONDS
work=$(mktemp -d /tmp/lote-bench.XXXXXX)
chmod 755 "$work" # munged, running as user munge, must reach its socket dir
figs=$work/figures # "key value" lines, from this script and lotebench
rows=$work/rows    # the table, tab-separated
: >"$figs"
: >"$rows"
skipped=()

up_pid= munge_pid= ctld_pid= slurmd_pid= bench_pid= created_key=

log() { printf '%s\n' "$*" >&2; }
skip() { log "SKIPPED $1: $2"; skipped+=("$1: $2"); }
failed=()
fail() { log "FAILED $1 (logs in bench/results/logs/)"; failed+=("$1"); }
skipping() { [[ $SKIP == *" $1 "* ]]; }
now() { date +%s.%N; }
fig() { echo "$1 $2" >>"$figs"; }
get() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$figs"; }
# med KEY: the median of every figure recorded as KEY (one per round).
med() { awk -v k="$1" '$1 == k { print $2 }' "$figs" | sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%g\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# stop PID [SIGNAL [SECONDS]]: signal a process this script started, wait for
# it, and kill it when it takes longer.
stop() {
  local pid=$1 sig=${2:-TERM} secs=${3:-15}
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# strays: processes left behind by what this run started, found by the work
# directory in their command line (an agent's spawner outlives its stopped
# agent by its orphan timeout, by design).
strays() {
  local d pid
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = $$ ] && continue
    { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -qF "$work" && echo "$pid"
  done
  return 0
}
reap_strays() {
  local pids
  pids=$(strays)
  [ -z "$pids" ] && return 0
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 30); do
    [ -z "$(strays)" ] && return 0
    sleep 0.1
  done
  pids=$(strays)
  [ -n "$pids" ] && { log "killing stray processes: $pids"; kill -KILL $pids 2>/dev/null || true; }
  return 0
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop "$bench_pid" INT 30
  stop "$up_pid" INT 30
  if [ -n "$ctld_pid" ] && kill -0 "$ctld_pid" 2>/dev/null; then sl scancel --quiet --full --user=root 2>/dev/null || true; fi
  stop "$slurmd_pid" TERM 15
  stop "$ctld_pid" TERM 15
  stop "$munge_pid" TERM 10
  reap_strays
  [ -n "$created_key" ] && rm -f /etc/munge/munge.key
  if [ -d "$work" ]; then
    mkdir -p "$RESULTS/logs"
    rm -f "$RESULTS"/logs/*.log
    find "$work" -maxdepth 2 -name '*.log' -exec cp {} "$RESULTS/logs/" \; 2>/dev/null || true
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ peers

# install_peers installs GNU parallel, Slurm and munge when they are missing
# (Debian packages; policy-rc.d or the lack of systemd keeps their services
# from starting on their own, and this script starts its own daemons).
install_peers() {
  local want=()
  if ! skipping parallel && ! command -v parallel >/dev/null; then want+=(parallel); fi
  if ! skipping slurm; then
    for b in slurmctld slurmd sbatch squeue sinfo; do command -v $b >/dev/null || { want+=(slurm-wlm); break; }; done
    command -v munged >/dev/null || want+=(munge)
  fi
  [ ${#want[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "cannot install ${want[*]}: needs root and apt-get"
    return 0
  fi
  log "installing ${want[*]} (apt-get; log in bench/results/logs/apt.log)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}"; } >"$work/apt.log" 2>&1; then
    log "apt-get failed; see bench/results/logs/apt.log"
  fi
}

# run_parallel: GNU parallel -j CORES over N_PARALLEL trivial commands.
run_parallel() {
  command -v parallel >/dev/null || { skip parallel "GNU parallel is not installed"; return 0; }
  parallel --will-cite -j "$CORES" true ::: 1 2 3 4 >/dev/null 2>&1 || { skip parallel "parallel does not run"; return 0; }
  local t0 t1
  t0=$(now)
  parallel --will-cite -j "$CORES" true ::: $(seq "$N_PARALLEL")
  t1=$(now)
  fig parallel_rate "$(awk -v n="$N_PARALLEL" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')"
}

# sl CMD...: a Slurm client command, which would otherwise retry for a long
# time when slurmctld is gone.
sl() { timeout -k 2 20 "$@"; }

# slurm_wait JOBID SECONDS: wait until the job (every task of an array) has
# left the queue.
slurm_wait() {
  local deadline=$((SECONDS + $2)) out
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$ctld_pid" 2>/dev/null && kill -0 "$slurmd_pid" 2>/dev/null || return 1
    if out=$(sl squeue -h -j "$1" -o %i 2>&1); then
      [ -z "$out" ] && return 0
    elif [[ $out == *"Invalid job id"* ]]; then
      return 0 # already purged: done
    fi
    sleep 0.2
  done
  return 1
}

# slurm_start configures and starts munged and a single-node Slurm cluster
# in the work directory; it fails (and the caller skips Slurm) when any part
# does not come up.
slurm_start() {
  local b
  for b in munged setpriv slurmctld slurmd sbatch squeue sinfo scancel; do
    command -v $b >/dev/null || { echo "$b is not installed"; return 1; }
  done
  [ "$(id -u)" = 0 ] || { echo "slurmd must run as root"; return 1; }
  id munge >/dev/null 2>&1 || { echo "no user munge"; return 1; }
  if ss -ltn 2>/dev/null | grep -qE ':(6817|6818)\b'; then
    echo "ports 6817/6818 are in use (another Slurm?)"
    return 1
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    head -c 1024 /dev/urandom >/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    created_key=1
  fi
  local m=$work/munge s=$work/slurm
  mkdir -p "$m" "$s/state" "$s/spool"
  chown munge:munge "$m"
  chmod 755 "$m"
  setpriv --reuid=munge --regid=munge --init-groups munged -F --key-file=/etc/munge/munge.key \
    --socket="$m/munge.sock" --pid-file="$m/munged.pid" --log-file="$m/munged.log" --seed-file="$m/munged.seed" \
    >"$work/munged.log" 2>&1 &
  munge_pid=$!
  for _ in $(seq 50); do [ -S "$m/munge.sock" ] && break; sleep 0.1; done
  [ -S "$m/munge.sock" ] || { echo "munged did not start: $(tail -3 "$work/munged.log")"; return 1; }

  local host mem
  host=$(hostname -s)
  mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  [ -n "$mem" ] || mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.95 }' /proc/meminfo)
  # batch_sched_delay=0: Slurm's default (3 s) holds batch jobs back to
  # batch them, which alone cuts this workload to ~0.7 tasks/s; SchedMD's
  # high-throughput guide lowers it. Everything else is the stock behaviour.
  cat >"$s/slurm.conf" <<EOF
ClusterName=lotebench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$m/munge.sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=batch_sched_delay=0
MaxArraySize=1000001
MaxJobCount=100000
MpiDefault=none
ReturnToService=2
StateSaveLocation=$s/state
SlurmdSpoolDir=$s/spool
SlurmctldPidFile=$s/slurmctld.pid
SlurmdPidFile=$s/slurmd.pid
SlurmctldLogFile=$s/slurmctld.log
SlurmdLogFile=$s/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$CORES RealMemory=$mem State=UNKNOWN
PartitionName=bench Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF=$s/slurm.conf
  slurmctld -D -c >"$work/slurmctld.out.log" 2>&1 &
  ctld_pid=$!
  slurmd -D >"$work/slurmd.out.log" 2>&1 &
  slurmd_pid=$!
  for _ in $(seq 150); do
    [ "$(sl sinfo -h -n "$host" -o %T 2>/dev/null)" = idle ] && return 0
    kill -0 "$ctld_pid" 2>/dev/null && kill -0 "$slurmd_pid" 2>/dev/null || break
    sleep 0.2
  done
  echo "the node did not become idle: $(sl sinfo -h -o '%T %E' 2>&1 | head -1); $(tail -2 "$s/slurmctld.log" 2>/dev/null)"
  return 1
}

# run_slurm: sbatch --array of N_SLURM `true` tasks, timed from the sbatch
# call until the last task left the queue; each task's success is read back
# from slurmctld's log.
run_slurm() {
  # Not in $(...): the daemons it starts must be children of this shell.
  if ! slurm_start >"$work/slurm-start.txt"; then
    skip slurm "$(cat "$work/slurm-start.txt")"
    return 0
  fi
  export SLURM_CONF=$work/slurm/slurm.conf
  local jid t0 t1 ok
  # Warm-up: a two-task array.
  jid=$(sl sbatch --parsable --array=1-2 -o /dev/null -e /dev/null --wrap true 2>"$work/sbatch.err") ||
    { skip slurm "sbatch: $(cat "$work/sbatch.err")"; return 0; }
  slurm_wait "$jid" 60 || { skip slurm "a 2-task array did not finish in 60 s"; return 0; }
  t0=$(now)
  jid=$(sl sbatch --parsable --array="1-$N_SLURM" -o /dev/null -e /dev/null --wrap true 2>"$work/sbatch.err") ||
    { skip slurm "sbatch: $(cat "$work/sbatch.err")"; return 0; }
  slurm_wait "$jid" $((N_SLURM * 5 + 60)) || { skip slurm "the array did not finish in time (or Slurm stopped)"; return 0; }
  t1=$(now)
  ok=$(grep -cE "_job_complete: JobId=${jid}_[0-9]+(\([0-9]+\))? WEXITSTATUS 0" "$work/slurm/slurmctld.log" || true)
  [ "$ok" = "$N_SLURM" ] || log "warning: slurmctld logged $ok successful tasks of $N_SLURM"
  fig slurm_version "$(sl sinfo -V | awk '{ print $2 }')"
  fig slurm_rate "$(awk -v n="$N_SLURM" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", n / (b - a) }')"
  sl scancel --quiet --full --user=root 2>/dev/null || true
  stop "$slurmd_pid" TERM 15
  stop "$ctld_pid" TERM 15
  stop "$munge_pid" TERM 10
  slurmd_pid= ctld_pid= munge_pid=
}

# ------------------------------------------------------------------ lote

# cpu_ticks PID...: CPU the processes used, with that of their reaped
# children (user + system, in clock ticks).
cpu_ticks() {
  local p t=0
  for p; do
    t=$((t + $({ awk '{ sub(/.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$p/stat"; } 2>/dev/null || echo 0)))
  done
  echo "$t"
}
# self_ticks PID: CPU the process itself used (user + system, clock ticks).
self_ticks() { { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; } 2>/dev/null || echo 0; }
per_task_us() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }'; }

run_xargs() {
  local t0 t1 c0 c1
  c0=$(cpu_ticks $$)
  t0=$(now)
  seq "$N" | xargs -P "$CORES" -n 1 true
  t1=$(now)
  c1=$(cpu_ticks $$)
  fig xargs_rate "$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')"
  fig xargs_cpu_us_per_task "$(per_task_us $((c1 - c0)) "$N")"
}

# run_lote_up ROUND: N `true` tasks through a fresh `lote up`.
run_lote_up() {
  local home=$work/up-$1 t0 t1
  mkdir -p "$home"
  LOTE_HOME=$home "$LOTE" up --dir "$home" --nodes 1 --slots "$CORES" --listen 127.0.0.1:0 >"$work/up-$1.log" 2>&1 &
  up_pid=$!
  local idle=
  for _ in $(seq 300); do
    if [ -s "$home/client.json" ] && LOTE_HOME=$home "$LOTE" pool nodes local -o json 2>/dev/null | grep -q '"state": "idle"'; then
      idle=1
      break
    fi
    sleep 0.1
  done
  [ -n "$idle" ] || { log "lote up: no idle node after 30 s"; return 1; }
  # Warm-up: one small job so the agent, spawner and store are started.
  LOTE_HOME=$home "$LOTE" submit -q --array 1-100 --wait -- true >/dev/null || return 1
  # CPU of the server (lote up), the agent and the spawner, with the tasks
  # the spawner reaped; the submitting CLI's own CPU is left out.
  local pids c0 c1 s0 s1 p
  pids=$(for p in $(strays); do grep -qF "$home" "/proc/$p/cmdline" 2>/dev/null && echo "$p"; done)
  # Each process's own CPU too (user + system, without reaped children):
  # its role is the subcommand in its command line (up, agent, _spawner).
  local -A own0=()
  for p in $pids; do own0[$p]=$(self_ticks "$p"); done
  c0=$(cpu_ticks $pids)
  s0=0
  for p in $pids; do grep -q _spawner "/proc/$p/cmdline" 2>/dev/null && s0=$(awk '{ sub(/.*\) /, ""); print $14 + $15 }' "/proc/$p/stat"); done
  t0=$(now)
  LOTE_HOME=$home "$LOTE" submit -q --array "1-$N" --wait -- true >/dev/null || return 1
  t1=$(now)
  c1=$(cpu_ticks $pids)
  s1=0
  for p in $pids; do grep -q _spawner "/proc/$p/cmdline" 2>/dev/null && s1=$(awk '{ sub(/.*\) /, ""); print $14 + $15 }' "/proc/$p/stat"); done
  local role
  for p in $pids; do
    role=$({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | awk '{ sub(/^_/, "", $2); print $2 }')
    case $role in up | agent | spawner) fig "lote_${role}_cpu_us_per_task" "$(per_task_us $(($(self_ticks "$p") - ${own0[$p]})) "$N")" ;; esac
  done
  fig lote_rate "$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')"
  fig lote_cpu_us_per_task "$(per_task_us $((c1 - c0)) "$N")"
  fig lote_task_cpu_us_per_task "$(per_task_us $((s1 - s0)) "$N")"
  stop "$up_pid" INT 30
  up_pid=
  reap_strays
}

# lotebench DIR ARGS...: bench/lotebench with DIR as its scratch directory.
lotebench() {
  local rc=0 dir=$1
  shift
  "$LOTEBENCH" -lote "$LOTE" -work "$dir" -out "$figs" "$@" 2> >(tee -a "$work/lotebench.log" >&2) &
  bench_pid=$!
  wait "$bench_pid" || rc=$?
  bench_pid=
  return $rc
}

# ------------------------------------------------------------------ run

go version >/dev/null 2>&1 || { echo "go is needed to build bench/lotebench" >&2; exit 1; }
go build -o "$LOTEBENCH" ./bench/lotebench

machine="$(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, Linux $(uname -r), $(go version | awk '{ print $3 }')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit + uncommitted changes"; fi
load=$(cut -d' ' -f1-3 /proc/loadavg)
log "lote bench on $machine; commit $commit; load average $load"
busy=$(awk -v l="${load%% *}" 'BEGIN { print (l >= 0.5 ? 1 : 0) }')
busy_note="load average $load at the start: other work was running on this machine, so figures are low and noisy; compare ratios within one run"
[ "$busy" = 1 ] && log "warning: $busy_note"

install_peers

# xargs and Lote alternate, so that both see the same minutes of a machine
# whose speed drifts (a shared VM), and each figure is the median of the
# rounds.
for round in $(seq "$ROUNDS"); do
  if ! skipping xargs; then log "== end to end, round $round of $ROUNDS: xargs -P $CORES, $N x true"; run_xargs; fi
  if ! skipping lote; then
    log "== end to end, round $round of $ROUNDS: lote up (1 node x $CORES slots), $N x true"
    if ! run_lote_up "$round"; then
      fail "end to end through lote up"
      break
    fi
    stop "$up_pid" INT 30
    up_pid=
  fi
  if ! skipping xargs && ! skipping lote; then
    fig xargs_round_ratio "$(awk -v l="$(get lote_rate)" -v x="$(get xargs_rate)" 'BEGIN { printf "%.4f", l / x }')"
  fi
done
if ! skipping parallel; then log "== end to end: GNU parallel -j $CORES, $N_PARALLEL x true"; run_parallel; fi
if ! skipping slurm; then log "== end to end: Slurm sbatch --array, $N_SLURM x true (about 2 tasks/s: ~$((N_SLURM / 2)) s)"; run_slurm; fi
if ! skipping stubbed; then
  for round in $(seq "$STUB_ROUNDS"); do
    log "== stubbed execution, run $round of $STUB_ROUNDS: $STUB_N tasks, $STUB_NODES simulated nodes x 4 slots (then a restart with its rows)"
    if ! lotebench "$work/stub-$round" -tasks "$STUB_N" -nodes "$STUB_NODES" -slots 4 stubbed; then
      fail "stubbed execution"
      break
    fi
    rm -rf "$work/stub-$round"/*/ # the store of a million tasks, not needed again
  done
fi
if ! skipping bigarray; then
  log "== big array: $BIG_N tasks, no nodes; restart after kill -9"
  lotebench "$work" -tasks "$BIG_N" bigarray || fail "big array and restart"
fi
if ! skipping latency; then
  log "== latency: $LAT_N single-task jobs on an idle lote up"
  lotebench "$work" -jobs "$LAT_N" -slots "$CORES" latency || fail latency
fi

# ------------------------------------------------------------------ table

# row MEASURE FIGURE UNIT TARGET RATIO MET
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$rows"; }
num() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { s = sprintf("%." d "f", v); n = split(s, p, "."); i = p[1]; o = "";
  neg = (i ~ /^-/); sub(/^-/, "", i); while (length(i) > 3) { o = "," substr(i, length(i) - 2) o; i = substr(i, 1, length(i) - 3) }
  print (neg ? "-" : "") i o (n > 1 ? "." p[2] : "") }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf (r >= 100 ? "%.0f" : r >= 10 ? "%.1f" : "%.2f"), r }'; }
met() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<" ? v < t : v >= t); print (ok ? "yes" : "**no**") }'; }

lote=$(med lote_rate) xr=$(med xargs_rate)
rounds=
[ "$ROUNDS" -gt 1 ] && rounds=", median of $ROUNDS rounds" pr=$(get parallel_rate) sr=$(get slurm_rate)
if [ -n "$lote" ]; then
  m="—"
  [ -n "$xr" ] && m=$(met "$(med xargs_round_ratio)" ">=" 0.8)
  row "end to end: Lote, \`lote up\` 1 node × $CORES slots, N=$(num "$N")$rounds" "$(num "$lote")" tasks/s "≥ 0.8 × xargs" "—" "$m"
fi
peer_row() { # NAME RATE [RATIO: Lote ÷ this peer, when not Lote's rate ÷ RATE]
  if [ -z "$2" ]; then row "$1" skipped tasks/s "" "" ""; return; fi
  local r="—"
  if [ -n "${3:-}" ]; then
    r="$(ratio "$3" 1)"
  elif [ -n "$lote" ]; then
    r="$(ratio "$lote" "$2")"
  fi
  row "$1" "$(num "$2" $(awk -v v="$2" 'BEGIN { print (v < 100 ? 2 : 0) }'))" tasks/s "" "$r" ""
}
skipping xargs || peer_row "end to end: xargs -P $CORES, N=$(num "$N")$rounds" "$xr" "$(med xargs_round_ratio)"
skipping parallel || peer_row "end to end: GNU parallel -j $CORES, N=$(num "$N_PARALLEL")" "$pr"
sv=$(get slurm_version)
skipping slurm || peer_row "end to end: Slurm${sv:+ $sv} \`sbatch --array\`, N=$(num "$N_SLURM")" "$sr"
stub_rounds=
[ "$STUB_ROUNDS" -gt 1 ] && stub_rounds=", median of $STUB_ROUNDS runs"
if v=$(med stubbed_rate) && [ -n "$v" ]; then
  row "stubbed: $(num "$STUB_N") tasks, $(num "$STUB_NODES") simulated nodes × 4 slots, submit → job done$stub_rounds" "$(num "$v")" tasks/s \
    "≥ 50,000 (stretch 100,000)" "" "$(met "$v" ">=" 50000)"
fi
if v=$(get big_ack_s) && [ -n "$v" ]; then
  row "big array: submit of $(num "$BIG_N") tasks acknowledged" "$(num "$v" 3)" s "< 2 s" "" "$(met "$v" "<" 2)"
  v=$(get big_rss_mb)
  row "big array: server RSS (VmRSS) while queued" "$(num "$v" 1)" MB "< 300 MB" "" "$(met "$v" "<" 300)"
  row "big array: first page, \`lote task list J --limit 100\` (median of 5)" "$(num "$(get big_list_ms)" 1)" ms "" "" ""
fi
if v=$(get lat_p50_ms) && [ -n "$v" ]; then
  row "latency submit → running, idle pool, p50 of $(num "$LAT_N") jobs" "$(num "$v" 2)" ms "< 10 ms" "" "$(met "$v" "<" 10)"
  v=$(get lat_p99_ms)
  row "latency submit → running, idle pool, p99" "$(num "$v" 2)" ms "< 50 ms" "" "$(met "$v" "<" 50)"
fi
if v=$(get restart_s) && [ -n "$v" ]; then
  row "restart after kill -9, $(num "$BIG_N") queued: exec → first task finished" "$(num "$v" 3)" s "< 5 s" "" "$(met "$v" "<" 5)"
fi
if v=$(med restart_full_s) && [ -n "$v" ]; then
  row "restart after kill -9, $(num "$STUB_N") queued + $(num "$STUB_N") finished in the store$stub_rounds" "$(num "$v" 3)" s "< 5 s" "" "$(met "$v" "<" 5)"
fi

# table prints the rows as an aligned Markdown table (widths in characters,
# not bytes: the cells hold ×, ≥, → and —).
table() {
  LC_ALL=C awk -F'\t' '
    function dlen(s, t) { t = s; gsub(/[\200-\277]/, "", t); return length(t) }
    function pad(s, w, right, p) { p = ""; while (dlen(s) + length(p) < w) p = p " "; return right ? p s : s p }
    function line(v, i, s) { s = "|"; for (i = 1; i <= 6; i++) s = s " " pad(v[i], w[i], i == 2 || i == 5) " |"; print s }
    BEGIN { h[1] = "measure"; h[2] = "figure"; h[3] = "unit"; h[4] = "target (DESIGN §7)"; h[5] = "Lote ÷ peer"; h[6] = "met"
      for (i = 1; i <= 6; i++) w[i] = dlen(h[i]) }
    { n++; for (i = 1; i <= 6; i++) { c[n, i] = $i; if (dlen($i) > w[i]) w[i] = dlen($i) } }
    END {
      line(h)
      s = "|"
      for (i = 1; i <= 6; i++) { d = ""; while (length(d) < w[i]) d = d "-"; s = s (i == 2 || i == 5 ? " " substr(d, 2) ": |" : " " d " |") }
      print s
      for (r = 1; r <= n; r++) { for (i = 1; i <= 6; i++) v[i] = c[r, i]; line(v) }
    }' "$rows"
}

elapsed=$((SECONDS - started))
mkdir -p "$RESULTS"
{
  echo "# Lote benchmark results"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') · $machine · commit $commit · load average at start $load · \`make bench\` took $((elapsed / 60)) min $((elapsed % 60)) s"
  echo
  table
  echo
  echo "Lote ÷ peer: Lote's end-to-end tasks/s (N=$(num "$N")) divided by the peer's, each at its own N. Lote and xargs: medians of $ROUNDS alternated rounds; Lote ÷ xargs is the median of the rounds' ratios."
  [ "$busy" = 1 ] && { echo; echo "Warning: $busy_note."; }
  if [ ${#skipped[@]} -gt 0 ] || [ ${#failed[@]} -gt 0 ]; then
    echo
    for s in "${skipped[@]}"; do echo "- skipped $s"; done
    for s in "${failed[@]}"; do echo "- FAILED: $s"; done
  fi
  echo
  echo "Details:"
  echo
  echo '```'
  if [ -n "$lote" ] && [ -n "$xr" ]; then
    echo "end to end, each round (xargs, then Lote): $(paste -d' ' <(awk '$1 == "xargs_rate" { print $2 }' "$figs") <(awk '$1 == "lote_rate" { print $2 }' "$figs") |
      awk '{ printf "%s%s / %s = %.2f", (NR > 1 ? "; " : ""), $2, $1, $2 / $1 }') (Lote / xargs tasks/s); the table has the median rates and the median of these ratios"
  fi
  if [ -n "$(get lote_cpu_us_per_task)" ]; then
    echo "end to end: CPU per task (medians of the rounds): xargs $(med xargs_cpu_us_per_task) µs (xargs and the tasks);" \
      "Lote $(med lote_cpu_us_per_task) µs (server, agent, spawner and the tasks; the tasks alone $(med lote_task_cpu_us_per_task) µs)"
    echo "end to end: Lote's own CPU per task: server (lote up) $(med lote_up_cpu_us_per_task) µs, agent $(med lote_agent_cpu_us_per_task) µs, spawner $(med lote_spawner_cpu_us_per_task) µs"
  fi
  grep -h 'lotebench:' "$work/lotebench.log" 2>/dev/null | sed 's/^ *lotebench: //' || true
  echo "raw figures:"
  sed 's/^/  /' "$figs"
  echo '```'
} >"$RESULTS/latest.md"

echo
table
echo
echo "Lote ÷ peer: Lote's end-to-end tasks/s divided by the peer's (each at its own N)."
[ "$busy" = 1 ] && echo "warning: $busy_note"
for s in "${skipped[@]}"; do echo "skipped $s"; done
for s in "${failed[@]}"; do echo "FAILED: $s (logs in bench/results/logs/)"; done
echo "make bench took $((elapsed / 60)) min $((elapsed % 60)) s; results in bench/results/latest.md, logs in bench/results/logs/"
[ ${#failed[@]} -eq 0 ] || exit 1
if [ ${#skipped[@]} -gt 0 ] && [ "${BENCH_REQUIRE_PEERS:-0}" = 1 ]; then
  echo "BENCH_REQUIRE_PEERS=1 and a peer was skipped" >&2
  exit 1
fi

#!/bin/sh
# Estimate pi with many Lote tasks, then combine their outputs.
#
# Each task of an array runs pi.awk with its own seed ({index}) and prints
# "HITS SAMPLES" on stdout, which Lote keeps; the combine step reads every
# task's output back with `lote task logs` and sums them.
#
# Needs a running Lote (`lote up`, or `make run` in the repository) and lote
# on PATH. TASKS and SAMPLES (per task) size the run.
set -eu
TASKS=${TASKS:-100}
SAMPLES=${SAMPLES:-100000}
here=$(cd "$(dirname "$0")" && pwd)

# The tasks run on this machine's local pool, so they can read pi.awk here.
job=$(lote submit -q --wait --array "1-$TASKS" -- awk -v seed={index} -v n="$SAMPLES" -f "$here/pi.awk")

for id in $(lote task list "$job" --all -q); do
	lote task logs "$job" "$id"
done | awk '
	{ hits += $1; n += $2 }
	END { printf "pi ~= %.6f from %d samples in %d tasks\n", 4 * hits / n, n, NR }'

#!/usr/bin/env bash
# Runs the chaos test (tests/chaos) with OUTPOST_CHAOS_JOBS jobs (1,000 by
# default; `make test` runs it with 200) against one broker and against a
# 3-node JetStream cluster, prints the figures and writes them to
# bench/results/chaos.json. OUTPOST_CHAOS_SEED repeats a run's kill schedule.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUTPOST_CHAOS_JOBS="${OUTPOST_CHAOS_JOBS:-1000}"
export OUTPOST_CHAOS_OUT="$PWD/bench/results/chaos.json"
log=$(mktemp)
(cd tests && go test -count=1 -p 1 -timeout 60m -v ./chaos/) >"$log" 2>&1
status=$?
# Figures are lines "name value"; the job ids and events of a failure too.
grep -E '^[a-z_0-9-]+ +-?[0-9.]+$|^(--- |ok|FAIL|PASS)|chaos_test.go' "$log"
if [ $status -ne 0 ]; then
	echo "chaos run failed; full output in $log"
	exit $status
fi
rm -f "$log"
echo "figures written to bench/results/chaos.json"

#!/usr/bin/env bash
# Runs the benchmarks (tests/bench, build tag `bench`) against the binaries
# `make build` left in bin/, prints the figures and writes them to
# bench/results/latest.json, then runs the 1,000-job chaos run
# (scripts/chaos.sh, figures in bench/results/chaos.json). Not part of
# `make test`.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUTPOST_BIN_DIR="$PWD/bin"
export OUTPOST_BENCH_OUT="$PWD/bench/results/latest.json"
log=$(mktemp)
(cd tests && go test -tags bench -count=1 -p 1 -timeout 30m -v ./bench/) >"$log" 2>&1
status=$?
# Figures are lines "name value"; the rest (process logs) only on failure.
grep -E '^[a-z_0-9-]+ +-?[0-9.]+$|^(--- |ok|FAIL|PASS)' "$log"
if [ $status -ne 0 ]; then
	echo "benchmarks failed; full output in $log"
	exit $status
fi
rm -f "$log"
echo "figures written to bench/results/latest.json"
# The chaos run (1,000 jobs under kill -9) with the same binaries.
scripts/chaos.sh

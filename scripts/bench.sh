#!/usr/bin/env bash
# Runs the benchmarks (tests/bench, build tag `bench`) against the binaries
# `make build` left in bin/, prints the figures and writes them to
# bench/results/latest.json. Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export OUTPOST_BIN_DIR="$PWD/bin"
export OUTPOST_BENCH_OUT="$PWD/bench/results/latest.json"
cd tests
go test -tags bench -count=1 -p 1 -timeout 30m -v ./bench/ 2>&1 | grep -E '^[a-z_0-9-]+ +[0-9.]+$|^(--- |ok|FAIL|PASS)|Error|never' || true
test -f "$OUTPOST_BENCH_OUT" && echo "figures written to bench/results/latest.json"

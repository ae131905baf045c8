#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx) of every module for FUZZTIME
# each (default 10s) and fails if any finds a crash. Targets are found, not
# listed: packages whose tests define a Fuzz function, then `go test -list`.
# Go fuzzes one target per run, so each target is its own `go test`. A crash
# leaves its input in the package's testdata/fuzz/<Target>/: commit it with
# the fix, and it runs in `make test` from then on.
#
# Go 1.26's fuzz coordinator can end a run that found nothing with a bare
# "context deadline exceeded" when a loaded machine delays its workers at
# the -fuzztime deadline (go.dev/issue/75804, fixed in Go 1.27). Such a run
# wrote no failing input; it passes once its corpus replays cleanly. Any
# other failure fails.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}

failed=()
count=0
start=$SECONDS
for mod in $(go list -m -f '{{.Dir}}'); do
	cd "$mod" || exit 1
	# Packages (import path and directory) with a test file defining a
	# fuzz target.
	pkgs=$(go list -f '{{$d := .Dir}}{{.ImportPath}} {{$d}}{{range .TestGoFiles}} {{$d}}/{{.}}{{end}}{{range .XTestGoFiles}} {{$d}}/{{.}}{{end}}' ./... |
		while read -r pkg dir files; do
			# shellcheck disable=SC2086 # one word per file
			if [ -n "$files" ] && grep -qE '^func Fuzz[A-Za-z0-9_]*\(' $files; then echo "$pkg=$dir"; fi
		done)
	for entry in $pkgs; do
		pkg=${entry%%=*} dir=${entry#*=}
		targets=$(go test -list '^Fuzz' "$pkg" | grep -E '^Fuzz') || {
			echo "FAIL $pkg: cannot list its fuzz targets"
			failed+=("$pkg")
			continue
		}
		for target in $targets; do
			count=$((count + 1))
			t0=$SECONDS
			corpus="$dir/testdata/fuzz/$target"
			before=$(ls "$corpus" 2>/dev/null)
			if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -parallel 1 "$pkg" 2>&1); then
				echo "ok   $pkg $target ($((SECONDS - t0))s)"
				continue
			fi
			after=$(ls "$corpus" 2>/dev/null)
			if [ "$before" = "$after" ] && grep -q '^    context deadline exceeded$' <<<"$out" &&
				! grep -q 'Failing input written' <<<"$out" &&
				go test -count=1 -run "^${target}\$" "$pkg" >/dev/null 2>&1; then
				echo "ok   $pkg $target ($((SECONDS - t0))s; stopped by the fuzztime deadline race, no failing input)"
				continue
			fi
			echo "FAIL $pkg $target"
			grep -v '^fuzz: elapsed' <<<"$out"
			failed+=("$pkg $target")
		done
	done
done
echo "$count fuzz targets, $FUZZTIME each, in $((SECONDS - start))s"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'failed: %s\n' "${failed[@]}"
	exit 1
fi

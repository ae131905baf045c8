#!/usr/bin/env bash
# Checks proto/ for changes that break the wire or JSON compatibility of
# the previous version (buf breaking, rules in proto/buf.yaml). Agents and
# the control plane are upgraded on their own schedules, so every version
# must read what the previous one writes.
#
# Compared with: BUF_BREAKING_AGAINST if set (any git revision); else, on a
# branch other than main, main; else the commit before HEAD (main's previous
# commit).
set -euo pipefail
cd "$(dirname "$0")/.."

against=${BUF_BREAKING_AGAINST:-}
if [[ -z $against ]]; then
	if git rev-parse -q --verify refs/heads/main >/dev/null && [[ $(git rev-parse HEAD) != $(git rev-parse main) ]]; then
		against=main
	else
		against=HEAD~1
	fi
fi

if ! rev=$(git rev-parse -q --verify "$against^{commit}"); then
	if [[ $(git rev-parse --is-shallow-repository) == true ]]; then
		echo "buf breaking: $against is not in this shallow clone; fetch more history (git fetch --deepen=1) to compare proto/ with it" >&2
		exit 1
	fi
	if [[ $against == HEAD~1 ]] && ! git rev-parse -q --verify HEAD~1 >/dev/null; then
		echo "buf breaking: skipped, HEAD is the first commit: there is no previous version of proto/ to compare with"
		exit 0
	fi
	echo "buf breaking: unknown revision $against (set BUF_BREAKING_AGAINST to a revision to compare proto/ with)" >&2
	exit 1
fi

if [[ -z $(git ls-tree -d "$rev" proto) ]]; then
	echo "buf breaking: skipped, $against ($rev) has no proto/ to compare with"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$rev" proto | tar -x -C "$tmp"
echo "buf breaking: proto/ against $against (${rev:0:12})"
cd proto
buf breaking --against "$tmp/proto"

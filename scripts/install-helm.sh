#!/usr/bin/env bash
# Installs helm, pinned by HELM_VERSION (Makefile), built with `go install`
# from the Go module proxy into .cache/helm/<version>/helm (gitignored).
# The chart tests (tests/ship) and `make helm-lint` use it. Idempotent;
# a cold build takes a few minutes (niced, reusing the Go build cache).
#
#   scripts/install-helm.sh                    install if needed
#   HELM_FORCE=1 scripts/install-helm.sh       rebuild
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
[[ "$HELM_VERSION" =~ ^v([0-9]+)\.[0-9]+\.[0-9]+$ ]] || {
	echo "install-helm: version '$HELM_VERSION' is not of the form vX.Y.Z" >&2
	exit 1
}
major="${BASH_REMATCH[1]}"
dir="$PWD/.cache/helm/$HELM_VERSION"
module="helm.sh/helm/v$major"
[[ "$major" == 3 ]] && module="helm.sh/helm/v3"

stamp="$dir/.installed"
if [[ -z "${HELM_FORCE:-}" && -x "$dir/helm" && -f "$stamp" && "$(cat "$stamp")" == "$HELM_VERSION" ]]; then
	echo "install-helm: helm $HELM_VERSION already in .cache/helm/$HELM_VERSION"
	exit 0
fi
echo "install-helm: building helm $HELM_VERSION with go install (minutes when cold)"
mkdir -p "$dir"
rm -f "$stamp"
start=$SECONDS
GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$dir" nice -n 10 \
	go install -ldflags "-s -w -X $module/internal/version.version=$HELM_VERSION" "$module/cmd/helm@$HELM_VERSION"
got="$("$dir/helm" version --short 2>&1)" || {
	echo "install-helm: helm version failed: $got" >&2
	exit 1
}
echo "$HELM_VERSION" >"$stamp"
echo "install-helm: helm $got ready in .cache/helm/$HELM_VERSION ($((SECONDS - start))s)"

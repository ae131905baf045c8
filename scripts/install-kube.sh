#!/usr/bin/env bash
# Installs what the Kubernetes tests need (libs/kubetest):
#
#   - kube-apiserver and kubectl, built from the Go module proxy at the version
#     pinned in libs/kubetest/kube-version.txt, cached in
#     .cache/kube/<version>/ (gitignored);
#   - etcd, from Debian's etcd-server package, when no etcd is on PATH.
#
# Idempotent: nothing is built when the pinned binaries are already cached.
# A cold build takes several minutes (niced, and reusing the Go build cache).
#
#   scripts/install-kube.sh                    install if needed
#   KUBE_FORCE=1 scripts/install-kube.sh       rebuild the binaries
#   KUBE_VERSION=v1.35.4 scripts/install-kube.sh   build another version
#                                              (the tests only use the pinned one)
#
# How: k8s.io/kubernetes's go.mod requires its staging modules (k8s.io/api,
# k8s.io/client-go, ...) at v0.0.0 and replaces them with in-tree folders,
# which a dependent module cannot use. A throwaway module requires
# k8s.io/kubernetes vX.Y.Z and replaces each of those staging modules with its
# published v0.Y.Z, then builds the two commands.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

log() { echo "install-kube: $*"; }
die() {
	echo "install-kube: $*" >&2
	exit 1
}

version_file="libs/kubetest/kube-version.txt"
[[ -f "$version_file" ]] || die "$version_file is missing"
KUBE_VERSION="${KUBE_VERSION:-$(tr -d '[:space:]' <"$version_file")}"
[[ "$KUBE_VERSION" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "version '$KUBE_VERSION' is not of the form v1.Y.Z"
staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
kube_minor="${BASH_REMATCH[1]}"
dir="$root/.cache/kube/$KUBE_VERSION"
stamp="$dir/.installed"
binaries=(kube-apiserver kubectl)

install_etcd() {
	if command -v etcd >/dev/null; then
		log "etcd present: $(command -v etcd) ($(etcd --version 2>/dev/null | head -n1))"
		return
	fi
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		die "etcd is missing: install it as root with 'apt-get update && apt-get install -y etcd-server'"
	fi
	log "etcd missing: installing etcd-server from Debian"
	apt-get update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null ||
		die "apt-get install etcd-server failed"
	command -v etcd >/dev/null || die "etcd-server installed but no etcd on PATH"
	log "etcd installed: $(command -v etcd) ($(etcd --version 2>/dev/null | head -n1))"
}

cached() {
	[[ -f "$stamp" && "$(cat "$stamp")" == "$KUBE_VERSION" ]] || return 1
	local b
	for b in "${binaries[@]}"; do
		[[ -x "$dir/$b" ]] || return 1
	done
}

build_kube() {
	if [[ -z "${KUBE_FORCE:-}" ]] && cached; then
		log "kube-apiserver and kubectl $KUBE_VERSION already in .cache/kube/$KUBE_VERSION"
		return
	fi
	command -v go >/dev/null || die "go is required to build kube-apiserver and kubectl"

	local work
	work="$(mktemp -d "${TMPDIR:-/tmp}/outpost-kube-build.XXXXXX")"
	# shellcheck disable=SC2064 # expand $work now
	trap "rm -rf '$work'" EXIT
	export GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod"

	log "reading the go.mod of k8s.io/kubernetes $KUBE_VERSION from the Go module proxy"
	local json gomod
	json="$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" 2>&1)" ||
		die "cannot download k8s.io/kubernetes@$KUBE_VERSION: $(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | head -n1)
  (the versions on the proxy: GOWORK=off go list -m -versions k8s.io/kubernetes)"
	gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
	[[ -f "$gomod" ]] || die "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"
	local go_directive
	go_directive="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"

	# The staging modules: required at v0.0.0, replaced with in-tree folders.
	local staging
	staging="$(sed -n 's/^[[:space:]]*\(k8s\.io\/[A-Za-z0-9._-]*\) v0\.0\.0$/\1/p' "$gomod" | sort -u)"
	[[ -n "$staging" ]] || die "found no k8s.io staging modules at v0.0.0 in $gomod"
	log "pinning $(wc -l <<<"$staging" | tr -d ' ') staging modules to $staging_version"

	{
		echo "// Throwaway module of scripts/install-kube.sh."
		echo "module outpost.local/kubebuild"
		echo
		echo "go ${go_directive:-1.26.0}"
		echo
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		echo
		echo "tool ("
		echo "	k8s.io/kubernetes/cmd/kube-apiserver"
		echo "	k8s.io/kubernetes/cmd/kubectl"
		echo ")"
		echo
		echo "replace ("
		local m
		while read -r m; do
			echo "	$m => $m $staging_version"
		done <<<"$staging"
		echo ")"
	} >"$work/go.mod"

	log "resolving dependencies (go mod tidy)"
	(cd "$work" && nice -n 10 go mod tidy) || die "go mod tidy failed for k8s.io/kubernetes $KUBE_VERSION (see $work/go.mod above)"

	# What hack/lib/version.sh stamps into release builds, so the server
	# reports its real version (/version, kubectl version).
	local date ldflags="-s -w" pkg
	date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
		ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
	done

	log "building kube-apiserver and kubectl $KUBE_VERSION (CGO_ENABLED=0, niced; minutes when cold)"
	local start=$SECONDS
	mkdir -p "$work/bin"
	(cd "$work" && nice -n 10 go build -ldflags "$ldflags" -o "$work/bin/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl) ||
		die "go build failed for k8s.io/kubernetes $KUBE_VERSION"
	log "built in $((SECONDS - start))s"

	local got
	got="$("$work/bin/kube-apiserver" --version 2>&1)" || die "kube-apiserver --version failed: $got"
	[[ "$got" == "Kubernetes $KUBE_VERSION" ]] || die "kube-apiserver --version says '$got', want 'Kubernetes $KUBE_VERSION'"
	got="$("$work/bin/kubectl" version --client 2>&1)" || die "kubectl version --client failed: $got"
	[[ "$got" == *"Client Version: $KUBE_VERSION"* ]] || die "kubectl version --client says '$got', want $KUBE_VERSION"

	mkdir -p "$dir"
	rm -f "$stamp"
	local b
	for b in "${binaries[@]}"; do
		mv -f "$work/bin/$b" "$dir/$b"
	done
	echo "$KUBE_VERSION" >"$stamp"
	log "kube-apiserver and kubectl $KUBE_VERSION ready in .cache/kube/$KUBE_VERSION"
}

install_etcd
build_kube

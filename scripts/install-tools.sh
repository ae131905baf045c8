#!/usr/bin/env bash
# Installs the pinned code-generation and lint tools into .cache/bin.
# Cached: a tool already at the pinned version is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/.cache/bin"
mkdir -p "$bin"

install() { # name module version
	local name=$1 module=$2 version=$3 stamp="$bin/.$1.version"
	if [[ -x "$bin/$name" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
		return
	fi
	echo "installing $name $version"
	GOBIN="$bin" GOWORK=off go install "$module@$version"
	echo "$version" >"$stamp"
}

install buf github.com/bufbuild/buf/cmd/buf "${BUF_VERSION:-v1.50.0}"
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "${PROTOC_GEN_GO_VERSION:-v1.36.12}"
install golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "${GOLANGCI_LINT_VERSION:-v2.15.0}"

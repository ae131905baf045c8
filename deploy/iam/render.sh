#!/usr/bin/env bash
# Renders one of the policies in this folder for a tenant and pool:
#
#   deploy/iam/render.sh runner-policy.json REGION=eu-west-1 ACCOUNT_ID=123456789012 TENANT=acme POOL=remote
#
# Defaults: PARTITION=aws STACK=outpost QUEUE_PREFIX= FIFO_SUFFIX=.fifo (set
# FIFO_SUFFIX= for queue_type: standard) RUNNER_ID='*' (any runner of the
# pool; give one id for a runner with a fixed id). Only these variables are
# replaced.
set -euo pipefail
cd "$(dirname "$0")"
file=$1
shift
export PARTITION=aws STACK=outpost QUEUE_PREFIX= FIFO_SUFFIX=.fifo REGION= ACCOUNT_ID= TENANT= POOL= RUNNER_ID='*'
for kv in "$@"; do
	export "${kv?}"
done
for v in REGION ACCOUNT_ID; do
	[[ -n "${!v}" ]] || { echo "render: $v is required" >&2; exit 1; }
done
envsubst '${PARTITION} ${REGION} ${ACCOUNT_ID} ${QUEUE_PREFIX} ${STACK} ${TENANT} ${POOL} ${RUNNER_ID} ${FIFO_SUFFIX}' <"$file"

#!/usr/bin/env bash
# Starts Outpost on this machine with no external dependency: the embedded
# JetStream broker, the scheduler, the account-migrator, the k8s-watcher and
# one ingestion-runner, each a process of its own with prefixed logs.
# Ctrl-C, or SIGTERM to the script or its process group (what a process
# manager sends), stops them all gracefully; a second Ctrl-C at least a second
# later kills what is left.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
DATA=${OUTPOST_DATA_DIR:-$PWD/.data}
NATS_PORT=${OUTPOST_NATS_PORT:-4222}
export OUTPOST_BROKER_URL=${OUTPOST_BROKER_URL:-nats://127.0.0.1:$NATS_PORT}
export OUTPOST_TENANT=${OUTPOST_TENANT:-default}
mkdir -p "$DATA"
# The k8s-watcher's own cluster: $KUBECONFIG or ~/.kube/config when there is
# one (a kind or minikube cluster), else none until you set OUTPOST_KUBECONFIG.
if [ -z "${OUTPOST_KUBECONFIG:-}" ]; then
	if [ -n "${KUBECONFIG:-}" ]; then
		export OUTPOST_KUBECONFIG=${KUBECONFIG%%:*}
	elif [ -f "$HOME/.kube/config" ]; then
		export OUTPOST_KUBECONFIG=$HOME/.kube/config
	fi
fi
# One AES key, kept in the data folder, seals inline kubeconfigs between the
# account-migrator and the k8s-watcher.
if [ -z "${OUTPOST_KUBECONFIG_KEY:-}" ]; then
	[ -s "$DATA/kubeconfig.key" ] || (umask 077 && head -c 32 /dev/urandom | base64 >"$DATA/kubeconfig.key")
	OUTPOST_KUBECONFIG_KEY=$(cat "$DATA/kubeconfig.key")
	export OUTPOST_KUBECONFIG_KEY
fi
# The control plane signs the work it sends (jobs, leases, operations) with
# one ed25519 key, kept in the data folder: the scheduler generates it at
# its first start, with its public key beside it (signing.key.pub), which
# the runner and the watcher trust. They start after the scheduler is ready.
export OUTPOST_SIGNING_KEY_FILE=${OUTPOST_SIGNING_KEY_FILE:-$DATA/signing.key}
export OUTPOST_SIGNING_GENERATE=${OUTPOST_SIGNING_GENERATE:-true}
export OUTPOST_SIGNING_TRUSTED_KEYS_FILE=${OUTPOST_SIGNING_TRUSTED_KEYS_FILE:-$OUTPOST_SIGNING_KEY_FILE.pub}
# Both APIs want a credential: on first start the scheduler writes an admin
# API key for every tenant into the data folder (mode 0600); the
# account-migrator verifies keys from the same bucket.
export OUTPOST_AUTH_BOOTSTRAP_KEY_FILE=${OUTPOST_AUTH_BOOTSTRAP_KEY_FILE:-$DATA/admin.key}

# The broker runs in operator mode: the operator, its accounts and every
# service's credentials are made in the data folder on first start (0600)
# and kept. OUTPOST_BROKER_AUTH=off runs it without authentication.
AUTH=$DATA/nats-auth
creds() { # file role [flags...]
	local out=$AUTH/creds/$1; shift
	"$BIN/outpost-broker" creds -auth-dir "$AUTH" -out "$out" -role "$@" || exit 1
	echo "$out"
}
if [ "${OUTPOST_BROKER_AUTH:-on}" != off ]; then
	BROKER_AUTH=(-auth-dir "$AUTH")
	SCHEDULER_CREDS=$(creds scheduler.creds scheduler)
	MIGRATOR_CREDS=$(creds account-migrator.creds account-migrator)
	# The agents' credentials name the streams of the layout every
	# service reads from OUTPOST_BROKER_LAYOUT (default per-tenant).
	WATCHER_CREDS=$(creds "watcher-$OUTPOST_TENANT-${OUTPOST_ZONE:-default}.creds" watcher -tenant "$OUTPOST_TENANT" -zone "${OUTPOST_ZONE:-default}" -layout "${OUTPOST_BROKER_LAYOUT:-per-tenant}")
	RUNNER_CREDS=$(creds "runner-$OUTPOST_TENANT-${OUTPOST_POOL:-default}.creds" runner -tenant "$OUTPOST_TENANT" -pool "${OUTPOST_POOL:-default}" -layout "${OUTPOST_BROKER_LAYOUT:-per-tenant}")
	for c in "$SCHEDULER_CREDS" "$MIGRATOR_CREDS" "$WATCHER_CREDS" "$RUNNER_CREDS"; do
		[ -s "$c" ] || { echo "[run] broker credentials not made in $AUTH" >&2; exit 1; }
	done
else
	BROKER_AUTH=()
	SCHEDULER_CREDS='' MIGRATOR_CREDS='' WATCHER_CREDS='' RUNNER_CREDS=''
fi

pids=()
names=()
# Each service runs in a session of its own: Ctrl-C in the terminal reaches
# only this script, which stops the services one by one, each with a single
# SIGTERM (a second signal would make them exit at once).
start() { # name command...
	local name=$1; shift
	# The log prefixer ignores Ctrl-C and SIGTERM to the process group: it
	# ends when its service exits, so the service can log while it stops
	# (a write to a closed pipe would kill it).
	setsid "$@" > >(trap '' INT TERM; exec sed -u "s/^/[$name] /") 2>&1 &
	pids+=($!)
	names+=("$name")
}

wait_ready() { # name url
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "[run] $1 did not become ready at $2" >&2
	return 1
}

# One stop request often arrives as several signals at once: SIGTERM to the
# process group of `make run` reaches this script, and make forwards its own
# SIGTERM to it too. A signal within a second of the first is that same
# request; only a later one (a second Ctrl-C) means "kill now".
stopping=0
stop_at=0
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
on_signal() { # signal name
	if ((stopping)); then
		if (($(now_ms) - stop_at < 1000)); then
			return # the same stop, delivered twice: keep stopping gracefully
		fi
		echo "[run] second $1: killing"
		kill -9 "${pids[@]}" 2>/dev/null
		exit 130
	fi
	stopping=1
	stop_at=$(now_ms)
	stop
}
stop() {
	echo "[run] stopping"
	# Agents and control plane first, the broker last, so nothing loses its queue mid-shutdown.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null
		# A signal handled meanwhile interrupts wait: wait again until
		# the service has really exited. The status is the service's
		# (0: stopped cleanly; see docs/architecture.md).
		wait "${pids[i]}" 2>/dev/null
		status=$?
		while kill -0 "${pids[i]}" 2>/dev/null; do
			wait "${pids[i]}" 2>/dev/null
			status=$?
		done
		echo "[run] ${names[i]} exited with status $status"
	done
	echo "[run] stopped"
	exit 0
}
trap 'on_signal interrupt' INT
trap 'on_signal SIGTERM' TERM

start broker "$BIN/outpost-broker" "${BROKER_AUTH[@]}" -data "$DATA/jetstream" -listen "127.0.0.1:$NATS_PORT" -health "127.0.0.1:${OUTPOST_BROKER_HEALTH_PORT:-8222}"
wait_ready broker "http://127.0.0.1:${OUTPOST_BROKER_HEALTH_PORT:-8222}/readyz" || on_signal failure
# Metrics are served apart from the APIs, without credentials, on the ops
# listeners (a deployment's scrapers reach only those).
# The web console (http://127.0.0.1:8080/) shows the accounts of the local
# account-migrator, called server-side with the signed-in user's key.
export OUTPOST_CONSOLE_ACCOUNTS_URL=${OUTPOST_CONSOLE_ACCOUNTS_URL:-http://127.0.0.1:8081}
OUTPOST_OPS_LISTEN=${OUTPOST_SCHEDULER_OPS_LISTEN:-127.0.0.1:9090} OUTPOST_BROKER_CREDENTIALS=$SCHEDULER_CREDS OUTPOST_AGENTS_AUTH_DIR=${BROKER_AUTH[1]:-} start scheduler "$BIN/scheduler"
wait_ready scheduler "http://127.0.0.1:8080/readyz" || on_signal failure
OUTPOST_OPS_LISTEN=${OUTPOST_MIGRATOR_OPS_LISTEN:-127.0.0.1:9093} OUTPOST_BROKER_CREDENTIALS=$MIGRATOR_CREDS start account-migrator "$BIN/account-migrator"
# The watcher's policy, permissive on this machine: accounts may use its own
# cluster identity, Secrets of any namespace of it, and kubeconfig files
# under $DATA/kubeconfigs (a deployed watcher allows none of these until
# configured).
mkdir -p "$DATA/kubeconfigs"
OUTPOST_ALLOW_SERVICE_ACCOUNT=${OUTPOST_ALLOW_SERVICE_ACCOUNT:-true} \
	OUTPOST_SECRET_NAMESPACES=${OUTPOST_SECRET_NAMESPACES:-*} \
	OUTPOST_KUBECONFIG_DIR=${OUTPOST_KUBECONFIG_DIR:-$DATA/kubeconfigs} \
	OUTPOST_BROKER_CREDENTIALS=$WATCHER_CREDS \
	start k8s-watcher "$BIN/k8s-watcher"
# The runner's policy is the customer's say over what jobs may do. A
# deployed runner allows no destination host, no secret name and no file
# sink directory until they are listed; this local one is permissive on
# this machine only: sinks and databases on loopback, any ${NAME} its
# providers know, and the file sink under $DATA/out.
mkdir -p "$DATA/out"
OUTPOST_POLICY_ALLOWED_HOSTS=${OUTPOST_POLICY_ALLOWED_HOSTS:-127.0.0.1,localhost,[::1]} \
	OUTPOST_POLICY_SECRETS=${OUTPOST_POLICY_SECRETS:-*=*} \
	OUTPOST_POLICY_FILE_SINK_DIR=${OUTPOST_POLICY_FILE_SINK_DIR:-$DATA/out} \
	OUTPOST_COMMAND_ALLOWLIST=${OUTPOST_COMMAND_ALLOWLIST:-echo,sh,sleep,env,date,uname} \
	OUTPOST_BROKER_CREDENTIALS=$RUNNER_CREDS \
	start ingestion-runner "$BIN/ingestion-runner"

echo "[run] Outpost is up: console and scheduler API http://127.0.0.1:8080, accounts API http://127.0.0.1:8081 (Ctrl-C to stop)"
echo "[run] the admin API key is in $OUTPOST_AUTH_BOOTSTRAP_KEY_FILE; use it as:"
echo "[run]   curl -H \"Authorization: Bearer \$(cat $OUTPOST_AUTH_BOOTSTRAP_KEY_FILE)\" http://127.0.0.1:8080/api/v1/jobs"
wait

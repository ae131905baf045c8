#!/usr/bin/env bash
# Installs the database servers the tests start on loopback through
# libs/dbtest: PostgreSQL and MariaDB, from Debian. Idempotent: nothing is
# installed when both servers are already there. System services are never
# started (a policy-rc.d that refuses them is in place during the install);
# the tests run their own private instances in temporary folders.
#
#   scripts/install-databases.sh        install what is missing (needs root)
#
# libs/dbtest looks for the binaries where this leaves them:
# /usr/lib/postgresql/<version>/bin (initdb, postgres) and /usr/sbin/mariadbd
# with /usr/bin/mariadb-install-db, or in OUTPOST_PG_BIN / OUTPOST_MARIADB_BIN.
set -euo pipefail

log() { echo "install-databases: $*"; }
die() { echo "install-databases: $*" >&2; exit 1; }

# postgres_bin prints the bin folder of the newest PostgreSQL that has both
# initdb and postgres, the way libs/dbtest picks it.
postgres_bin() {
	if [[ -n "${OUTPOST_PG_BIN:-}" && -x "$OUTPOST_PG_BIN/initdb" && -x "$OUTPOST_PG_BIN/postgres" ]]; then
		echo "$OUTPOST_PG_BIN"
		return 0
	fi
	local dir
	for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -V -r); do
		if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
			echo "$dir"
			return 0
		fi
	done
	return 1
}

# find_one prints the first executable among the given names, looked up in
# the folder list and then on PATH.
find_one() { # dirs... -- names...
	local dirs=() names=() d n
	while [[ $# -gt 0 && "$1" != "--" ]]; do dirs+=("$1"); shift; done
	shift
	names=("$@")
	for n in "${names[@]}"; do
		for d in "${dirs[@]}"; do
			if [[ -x "$d/$n" ]]; then echo "$d/$n"; return 0; fi
		done
		if command -v "$n" >/dev/null 2>&1; then command -v "$n"; return 0; fi
	done
	return 1
}

mariadb_server() {
	local dirs=(/usr/sbin /usr/libexec /usr/bin)
	[[ -n "${OUTPOST_MARIADB_BIN:-}" ]] && dirs=("$OUTPOST_MARIADB_BIN" "${dirs[@]}")
	find_one "${dirs[@]}" -- mariadbd mysqld
}

mariadb_install_db() {
	local dirs=(/usr/bin /usr/sbin /usr/local/bin)
	[[ -n "${OUTPOST_MARIADB_BIN:-}" ]] && dirs=("$OUTPOST_MARIADB_BIN" "${dirs[@]}")
	find_one "${dirs[@]}" -- mariadb-install-db mysql_install_db
}

missing=()
if pg=$(postgres_bin); then
	log "PostgreSQL found in $pg ($("$pg/postgres" --version))"
else
	log "PostgreSQL server not found"
	missing+=(postgresql)
fi
if srv=$(mariadb_server) && idb=$(mariadb_install_db); then
	log "MariaDB found: $srv ($("$srv" --version 2>/dev/null | head -n1)), $idb"
else
	log "MariaDB server not found"
	missing+=(mariadb-server)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
	log "nothing to install"
	exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	die "missing ${missing[*]}; installing needs root: sudo $0 (or apt-get install -y ${missing[*]})"
fi
if ! command -v apt-get >/dev/null 2>&1; then
	die "missing ${missing[*]} and apt-get is not available: install PostgreSQL and MariaDB server yourself and set OUTPOST_PG_BIN / OUTPOST_MARIADB_BIN"
fi

# Debian starts a package's service from its postinst through invoke-rc.d,
# which asks /usr/sbin/policy-rc.d first: exit 101 means "do not start".
# An existing policy is left alone; ours is removed when the script ends.
policy=/usr/sbin/policy-rc.d
if [[ -e "$policy" ]]; then
	log "keeping the existing $policy"
else
	log "writing a temporary $policy so no database service is started"
	printf '#!/bin/sh\n# written by scripts/install-databases.sh, removed when it ends\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"; log "removed the temporary $policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -qq
log "apt-get install -y ${missing[*]}"
apt-get install -y -qq --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	"${missing[@]}" >/dev/null

pg=$(postgres_bin) || die "apt-get finished but no /usr/lib/postgresql/<version>/bin holds initdb and postgres"
srv=$(mariadb_server) || die "apt-get finished but mariadbd is not in /usr/sbin"
idb=$(mariadb_install_db) || die "apt-get finished but mariadb-install-db is missing"
log "PostgreSQL ready in $pg ($("$pg/postgres" --version))"
log "MariaDB ready: $srv ($("$srv" --version 2>/dev/null | head -n1)), $idb"

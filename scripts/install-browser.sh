#!/usr/bin/env bash
# Installs the headless browser the console's end-to-end tests drive
# (tests/e2e, github.com/chromedp/chromedp): Debian's chromium. Idempotent:
# nothing is installed when a chromium is already on PATH.
#
#   scripts/install-browser.sh        install what is missing (needs root)
#
# The tests look for chromium (or chromium-browser, google-chrome) on PATH,
# or the executable named by OUTPOST_CHROMIUM.
set -euo pipefail

log() { echo "install-browser: $*"; }
die() { echo "install-browser: $*" >&2; exit 1; }

if [[ -n "${OUTPOST_CHROMIUM:-}" && -x "$OUTPOST_CHROMIUM" ]]; then
	log "using $OUTPOST_CHROMIUM"
	exit 0
fi
for b in chromium chromium-browser google-chrome; do
	if command -v "$b" >/dev/null 2>&1; then
		log "$(command -v "$b") is installed"
		exit 0
	fi
done

command -v apt-get >/dev/null 2>&1 || die "chromium is missing and apt-get is not available: install chromium and set OUTPOST_CHROMIUM"
[[ $(id -u) -eq 0 ]] || die "chromium is missing: run as root (apt-get install chromium) or set OUTPOST_CHROMIUM"

log "installing chromium from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null 2>&1 || die "chromium was not installed"
log "$(chromium --version 2>/dev/null || echo chromium) installed"

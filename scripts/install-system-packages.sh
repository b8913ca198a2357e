#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real, when they are missing:
# redis-server, prometheus and prometheus-alertmanager (used by tests/e2e), bubblewrap
# (bwrap: tests/test_dockerfile.py runs the demo with a read-only root), plus any
# package named as an argument whose command has the same name (`make bench` adds wrk).
#
# Idempotent: does nothing when every binary is already on PATH. Acts only where apt-get
# exists and we are root; elsewhere it says what to install and exits 0, so the tests
# themselves report what is missing. Services are never started by the install: a
# temporary /usr/sbin/policy-rc.d answers 101 ("action forbidden") to every invoke-rc.d,
# so the packages' postinst scripts cannot take ports 6379, 9090, 9093 or 9100.
set -euo pipefail

log() { printf 'install-system-packages: %s\n' "$*"; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1; then
    missing+=(prometheus-alertmanager)
fi

for extra in "$@"; do
    command -v "$extra" >/dev/null 2>&1 || missing+=("$extra")
done

if [ "${#missing[@]}" -eq 0 ]; then
    log "redis-server, prometheus, alertmanager, bwrap $* are installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "missing: ${missing[*]}; no apt-get here, install them with your package manager"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "missing: ${missing[*]}; not root, run: sudo bash $0"
    exit 0
fi

policy=/usr/sbin/policy-rc.d
backup=""
restore_policy() {
    if [ -n "$backup" ]; then
        mv -f "$backup" "$policy"
    else
        rm -f "$policy"
    fi
}
if [ -e "$policy" ]; then
    backup="$(mktemp "${policy}.saved.XXXXXX")"
    cp -p "$policy" "$backup"
fi
trap restore_policy EXIT
printf '#!/bin/sh\n# Written by install-system-packages.sh: start no service.\nexit 101\n' >"$policy"
chmod 755 "$policy"

log "missing: ${missing[*]}; running apt-get update"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
log "installing: ${missing[*]}"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
log "installed: ${missing[*]}"

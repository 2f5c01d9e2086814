#!/usr/bin/env bash
# Install the Go toolchain and golang.org/x/mod (source) from Debian packages, for the
# offline interop tests in tests/interop/. Idempotent: does nothing when both are present.
#
#   bash scripts/install_go.sh
#
# Packages: golang-go (Go toolchain), golang-golang-x-mod-dev (x/mod source under
# /usr/share/gocode/src/golang.org/x/mod, built in GOPATH mode, no module proxy needed).
set -euo pipefail

XMOD_DIR="/usr/share/gocode/src/golang.org/x/mod/sumdb/note"
PKGS=(golang-go golang-golang-x-mod-dev)

have_go() { command -v go >/dev/null 2>&1; }
have_xmod() { [ -f "$XMOD_DIR/note.go" ] && [ -f "/usr/share/gocode/src/golang.org/x/mod/sumdb/tlog/tlog.go" ]; }

if have_go && have_xmod; then
    echo "install_go.sh: go ($(go version)) and golang.org/x/mod already present"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_go.sh: ERROR: apt-get not found; install Go and golang.org/x/mod source" \
         "(Debian: ${PKGS[*]}) by hand" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install_go.sh: ERROR: need root (or sudo) to apt-get install ${PKGS[*]}" >&2
        exit 1
    fi
fi

echo "install_go.sh: installing ${PKGS[*]} via apt-get"
if ! $SUDO apt-get update; then
    echo "install_go.sh: ERROR: apt-get update failed" >&2
    exit 1
fi
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${PKGS[@]}"; then
    echo "install_go.sh: ERROR: apt-get install ${PKGS[*]} failed" >&2
    exit 1
fi

hash -r
if ! have_go; then
    echo "install_go.sh: ERROR: 'go' still not on PATH after installing golang-go" >&2
    exit 1
fi
if ! have_xmod; then
    echo "install_go.sh: ERROR: golang.org/x/mod source missing under /usr/share/gocode/src" \
         "after installing golang-golang-x-mod-dev" >&2
    exit 1
fi
echo "install_go.sh: OK: $(go version); x/mod $(dpkg-query -W -f='${Version}' golang-golang-x-mod-dev 2>/dev/null || echo '?')"

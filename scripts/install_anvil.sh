#!/usr/bin/env bash
# Installs a pinned anvil (Foundry's local Ethereum node) into .tools/anvil via npm.
# Idempotent: does nothing when the pinned version is already installed.
# The chain tests (tests/chain) and benchmarks find the binary at the path printed last.
set -euo pipefail

ANVIL_VERSION="1.5.1"
PKG="@foundry-rs/anvil-linux-amd64"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/.tools/anvil"
bin="$prefix/node_modules/$PKG/bin/anvil"
manifest="$prefix/node_modules/$PKG/package.json"

installed=""
if [[ -f "$manifest" ]]; then
  installed="$(node -p "require('$manifest').version" 2>/dev/null || true)"
fi

if [[ "$installed" != "$ANVIL_VERSION" || ! -x "$bin" ]]; then
  mkdir -p "$prefix"
  npm install --prefix "$prefix" --no-save --no-audit --no-fund "$PKG@$ANVIL_VERSION" >&2
fi

if [[ ! -x "$bin" ]]; then
  # Locate the binary if the package layout ever changes.
  found="$(find "$prefix/node_modules/$PKG" -type f -name anvil -perm -u+x 2>/dev/null | head -n1)"
  if [[ -z "$found" ]]; then
    echo "install_anvil.sh: anvil binary not found under $prefix" >&2
    exit 1
  fi
  bin="$found"
fi

"$bin" --version >&2
echo "$bin"

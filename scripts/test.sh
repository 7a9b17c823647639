#!/usr/bin/env bash
# Installs what the tests need, then runs the whole test suite.
# Usage: scripts/test.sh        (as root on Debian; CI calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
command -v xsltproc >/dev/null 2>&1 || need_apt+=(xsltproc)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${need_apt[@]}"
  else
    echo "missing: ${need_apt[*]} (run as root, or install them with apt-get)" >&2
    exit 1
  fi
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The suite builds in release mode: the crash, back-pressure and flow tests drive real
# traffic, and an optimised gateway keeps the run short.
cargo test --release --locked -- --test-threads=2

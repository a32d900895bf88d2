#!/usr/bin/env bash
# Wharf on S3 with two replicas, against a real S3 server (SeaweedFS from PyPI, on loopback):
#   1. the S3 storage tests: the driver suite (src/storage/testsuite.rs) and tests/s3.rs (replicas
#      over one bucket, a replica killed mid-upload, tag races, GC on the bucket, 5 GiB under 128 MiB);
#   2. two Wharf replicas on one bucket prefix behind a round-robin proxy (examples/rrproxy.rs):
#      the conformance suite, then the real clients (tests/e2e/clients.sh), through the proxy.
#
#   bash tests/s3/run.sh        (after tests/e2e/install.sh and cargo build; run by tests/all.sh)
# Env: WHARF_BIN (default target/debug/wharf), S3_SKIP_BIG=1 skips the 5 GiB test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
WHARF=${WHARF_BIN:-$ROOT/target/debug/wharf}
# shellcheck disable=SC1091  # (shellcheck -x follows it)
. "$ROOT/tests/s3/seaweedfs.sh"
WORK=$(mktemp -d /tmp/wharf-s3-run.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  seaweed_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== SeaweedFS"
seaweed_start wharf-ci
export S3_ENDPOINT S3_BUCKET AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION

echo "== S3 storage tests (driver suite and tests/s3.rs against $S3_ENDPOINT)"
# The S3 tests are #[ignore]d (a plain cargo test has no S3 server): run them here.
cargo test --locked --lib storage::testsuite -- --include-ignored
skip=()
[ "${S3_SKIP_BIG:-0}" = 1 ] && skip=(--skip 5_gib)
cargo test --locked --test s3 -- --include-ignored --nocapture "${skip[@]}"

echo "== two replicas on one bucket behind a round-robin proxy"
cargo build --locked --example rrproxy
PREFIX=conformance-$(date +%s)
backends=()
for i in 1 2; do
  port=$(free_port)
  env WHARF_HTTP_ADDR="127.0.0.1:$port" REGISTRY_STORAGE_S3_BUCKET="$S3_BUCKET" \
    REGISTRY_STORAGE_S3_REGIONENDPOINT="$S3_ENDPOINT" REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true \
    REGISTRY_STORAGE_S3_ROOTDIRECTORY="$PREFIX" REGISTRY_STORAGE_DELETE_ENABLED=true \
    REGISTRY_STORAGE_REDIRECT_DISABLE="${S3_REDIRECT_DISABLE:-false}" \
    "$WHARF" serve >> "$WORK/replica$i.log" 2>&1 &
  PIDS+=($!)
  backends+=("http://127.0.0.1:$port")
done
PPORT=$(free_port)
"$ROOT/target/debug/examples/rrproxy" "127.0.0.1:$PPORT" "${backends[@]}" > "$WORK/proxy.log" 2>&1 &
PIDS+=($!)
for b in "${backends[@]}" "http://127.0.0.1:$PPORT"; do
  for _ in $(seq 100); do curl -sf "$b/v2/" >/dev/null && break; sleep 0.1; done
  curl -sf "$b/v2/" >/dev/null || { echo "$b did not start"; tail -20 "$WORK"/*.log; exit 1; }
done
echo "replicas ${backends[*]} behind http://127.0.0.1:$PPORT (bucket $S3_BUCKET, prefix $PREFIX)"

echo "== conformance suite through the proxy"
if ! cargo test --locked --test conformance -- --url "http://127.0.0.1:$PPORT" --name wharf-s3-2-replicas \
    --junit target/conformance-wharf-s3.xml; then
  for i in 1 2; do echo "-- replica $i log (tail)"; tail -30 "$WORK/replica$i.log"; done
  exit 1
fi
for i in 1 2; do
  n=$(grep -c 'wharf::access' "$WORK/replica$i.log" || true)
  echo "replica $i served $n requests"
  [ "$n" -gt 0 ] || { echo "replica $i served nothing: the round-robin is broken"; exit 1; }
done

echo "== real clients through the proxy"
if ! bash "$ROOT/tests/e2e/clients.sh" "127.0.0.1:$PPORT"; then
  for i in 1 2; do echo "-- replica $i log (tail)"; tail -30 "$WORK/replica$i.log"; done
  exit 1
fi

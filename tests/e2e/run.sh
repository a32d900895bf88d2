#!/usr/bin/env bash
# End-to-end: start Wharf (deletes enabled, temporary storage, a free loopback port), run the real
# clients against it (clients.sh), then garbage collection as users run it: two images pushed,
# one deleted by digest with curl, GC with --dry-run then for real while the server is read-only,
# the other image pulled with podman and its digest compared; then auth.sh (htpasswd and token
# auth over TLS with podman and skopeo), then proxy.sh (podman through a pull-through cache of a
# Wharf that requires bearer tokens). Then a real Docker engine: tests/e2e/docker.sh (docker
# build/push/pull/manifest/login, Wharf's image built, pushed, pulled and run) and
# tests/e2e/seeds.sh (a course's registry:2 labs against that image). Every port is a free one,
# and every script runs in one private mount namespace (tests/e2e/lib.sh) and cleans up on exit.
#
#   bash tests/e2e/run.sh            (after tests/e2e/install.sh; WHARF_BIN defaults to target/debug/wharf)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WHARF=${WHARF_BIN:-$ROOT/target/debug/wharf}
[ -x "$WHARF" ] || { echo "no wharf binary at $WHARF (cargo build first)" >&2; exit 1; }
# shellcheck source=tests/e2e/lib.sh
. "$ROOT/tests/e2e/lib.sh"
# every script below runs in this private mount namespace (tests/e2e/lib.sh)
private_blob_info_cache "$0" "$@"
WORK=$(mktemp -d /tmp/wharf-e2e-run.XXXXXX)
DATA=$WORK/data
LOG=$WORK/wharf.log
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
R=127.0.0.1:$PORT
PID=

start_wharf() { # extra VAR=value pairs for the server's environment
  env WHARF_HTTP_ADDR="$R" WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$DATA" WHARF_STORAGE_DELETE_ENABLED=true \
    "$@" "$WHARF" serve >> "$LOG" 2>&1 &
  PID=$!
  echo "$PID" > "$WORK/pid"
  for _ in $(seq 100); do
    curl -sf "http://$R/v2/" >/dev/null && return 0
    sleep 0.1
  done
  echo "wharf did not start"; tail -20 "$LOG"; return 1
}
stop_wharf() { stop_pid "$WORK/pid"; }   # works from subshells too (tests/e2e/lib.sh)
trap 'stop_wharf; rm -rf "$WORK"' EXIT

start_wharf || exit 1
echo "== real clients against Wharf at $R"
WHARF_LOG=$LOG bash "$ROOT/tests/e2e/clients.sh" "$R"
status=$?
if [ $status -ne 0 ]; then
  echo "== server log (tail)"; tail -40 "$LOG"
  exit $status
fi

echo "== garbage collection with real clients"
gc_flow() {
  set -e
  private_containers_config
  local c keep drop blobs_before blobs_after
  for name in keep drop; do
    c=$(buildah from scratch)
    head -c 3000000 /dev/urandom > "$WORK/$name.bin"
    buildah copy "$c" "$WORK/$name.bin" /payload >/dev/null
    buildah commit -q "$c" "localhost/gc/$name" >/dev/null
    podman push -q --tls-verify=false "localhost/gc/$name" "$R/gc/$name:v1"
  done
  keep=$(curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$R/v2/gc/keep/manifests/v1" | tr -d '\r' | sed -n 's/^docker-content-digest: //Ip')
  drop=$(curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$R/v2/gc/drop/manifests/v1" | tr -d '\r' | sed -n 's/^docker-content-digest: //Ip')
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://$R/v2/gc/drop/manifests/$drop")" = 202 ]
  blobs_before=$(find "$DATA/docker/registry/v2/blobs" -name data | wc -l)
  # GC refuses beside a writing server ...
  if WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$DATA" "$WHARF" garbage-collect --dry-run > "$WORK/gc.out" 2>&1; then
    echo "garbage-collect ran beside a read-write server"; return 1
  fi
  # ... and runs beside a read-only one
  stop_wharf
  start_wharf REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}'
  WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$DATA" "$WHARF" garbage-collect --dry-run > "$WORK/dry.out"
  cat "$WORK/dry.out"
  # the API delete removed the manifest; GC removes its bytes, config and layer
  grep -q "blob $drop (" "$WORK/dry.out"
  [ "$(find "$DATA/docker/registry/v2/blobs" -name data | wc -l)" = "$blobs_before" ]
  WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$DATA" "$WHARF" garbage-collect > "$WORK/real.out"
  # the dry run predicted exactly what the real run removed
  diff <(grep -v ' marked, ' "$WORK/dry.out" | sed 's/ eligible for deletion$//' | sort) \
       <(grep -v ' marked, ' "$WORK/real.out" | sed 's/ deleted$//' | sort)
  blobs_after=$(find "$DATA/docker/registry/v2/blobs" -name data | wc -l)
  echo "blobs: $blobs_before before, $blobs_after after"
  [ "$blobs_after" -lt "$blobs_before" ]
  # the kept image still pulls, with the same digest
  podman rmi -a -f >/dev/null 2>&1
  podman pull -q --tls-verify=false "$R/gc/keep:v1" >/dev/null
  [ "$(podman image inspect "$R/gc/keep:v1" --format '{{.Digest}}')" = "$keep" ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$R/v2/gc/drop/manifests/$drop")" = 404 ]
  podman rmi -a -f >/dev/null 2>&1; buildah rm --all >/dev/null 2>&1
  grep -o "${WORK}/storage[^ ]*" /proc/mounts | sort -r | xargs -r umount 2>/dev/null || true
}
step "garbage-collect: delete by digest, dry run, real run, pull the other" gc_flow
grep -E 'blobs:|marked' "$WORK/step.log" | sed 's/^/     /'
summary
stop_wharf

echo "== authentication and TLS with real clients (tests/e2e/auth.sh)"
bash "$ROOT/tests/e2e/auth.sh" || exit 1
echo "== pull-through cache with podman, the upstream requiring tokens (tests/e2e/proxy.sh)"
WHARF_BIN=$WHARF bash "$ROOT/tests/e2e/proxy.sh" || exit 1

# A real Docker engine (issue 8): its flows and the image build check against this Wharf, then
# the course's registry:2 labs against the image it built and pulled back.
# shellcheck disable=SC1091 # checked on its own
source "$ROOT/tests/e2e/dockerd.sh"
trap 'dockerd_stop; stop_wharf; rm -rf "$WORK"' EXIT
stop_wharf
start_wharf || exit 1   # read-write again (the GC flow left it read-only)
echo "== a real Docker engine"
dockerd_start || exit 1
WHARF_BIN=$WHARF WHARF_IMAGE_FILE=$WORK/image bash "$ROOT/tests/e2e/docker.sh" "$R" || exit 1
echo "== the course's registry:2 labs, against Wharf's image"
WHARF_BIN=$WHARF WHARF_IMAGE=$(cat "$WORK/image") bash "$ROOT/tests/e2e/seeds.sh" || exit 1
echo "== Wharf's metrics after the run"
curl -sf "http://$R/metrics" | grep -E '^wharf_(pushes|pulls)_total' | tee "$WORK/metrics.txt"
for kind in blob manifest; do
  grep -Eq "^wharf_pushes_total\{kind=\"$kind\"\} [1-9]" "$WORK/metrics.txt" || { echo "no $kind pushes counted"; exit 1; }
  grep -Eq "^wharf_pulls_total\{kind=\"$kind\"\} [1-9]" "$WORK/metrics.txt" || { echo "no $kind pulls counted"; exit 1; }
done

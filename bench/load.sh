#!/usr/bin/env bash
# Load test (not in CI): Wharf (release build) holding 10,000 concurrent connections with pulls in
# flight on every one of them, while pushes run beside them, for 60 s. Reports requests, errors,
# latency (p50, p99) and the server's peak RSS, and fails if any request failed.
#
#   bash bench/load.sh                 as root on Debian (installs wrk if missing; raises limits)
#
# Env: LOAD_CONNECTIONS (10000), LOAD_SECONDS (60), LOAD_PUSHERS (16 concurrent pushes),
# LOAD_WHARF (default target/release/wharf, built here), LOAD_LOADGEN (target/release/examples/loadgen).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CONNS=${LOAD_CONNECTIONS:-10000}
SECS=${LOAD_SECONDS:-60}
PUSHERS=${LOAD_PUSHERS:-16}

if ! command -v wrk >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
if [ -z "${LOAD_WHARF:-}" ] || [ -z "${LOAD_LOADGEN:-}" ]; then
  echo "== building (release)"
  cargo build --release --locked --bins --examples 2>&1 | tail -1
fi
WHARF=${LOAD_WHARF:-$ROOT/target/release/wharf}
LOADGEN=${LOAD_LOADGEN:-$ROOT/target/release/examples/loadgen}

# Each side needs a descriptor per connection, and the accept queue must take the first burst.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS + 1000)) ]; then
  echo "ulimit -n is $(ulimit -n); $((CONNS + 1000)) are needed (raise the hard limit)" >&2
  exit 1
fi
sysctl -q -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 2>/dev/null || true

WORK=$(mktemp -d /tmp/wharf-load.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=5077
R=http://127.0.0.1:$PORT
WHARF_HTTP_ADDR=127.0.0.1:$PORT WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY=$WORK/data \
  WHARF_LOG_ACCESSLOG_DISABLED=true WHARF_LOG_LEVEL=warn "$WHARF" serve 2>"$WORK/wharf.log" &
PID=$!
for _ in $(seq 100); do curl -sf "$R/v2/" >/dev/null && break; sleep 0.1; done

# An image to pull: a 64 KiB layer, its config and manifest.
head -c 65536 /dev/urandom >"$WORK/layer"
echo '{"architecture":"amd64","os":"linux"}' >"$WORK/config"
push() {
  local d
  d=sha256:$(sha256sum "$1" | cut -d' ' -f1)
  curl -sf -X POST --data-binary @"$1" "$R/v2/load/app/blobs/uploads/?digest=$d" >/dev/null
  echo "$d"
}
LAYER=$(push "$WORK/layer")
CONFIG=$(push "$WORK/config")
cat >"$WORK/manifest" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$CONFIG","size":$(stat -c %s "$WORK/config")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$LAYER","size":65536}]}
EOF
curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/manifest" \
  "$R/v2/load/app/manifests/latest" >/dev/null

# wrk: every connection alternates a manifest GET by tag and a layer GET, back to back.
cat >"$WORK/pull.lua" <<EOF
local paths = {"/v2/load/app/manifests/latest", "/v2/load/app/blobs/$LAYER"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % 2) + 1], {Accept = "application/vnd.oci.image.manifest.v1+json"})
end
EOF

echo "== $CONNS connections pulling, $PUSHERS pushers, ${SECS}s"
wrk -t 2 -c "$CONNS" -d "${SECS}s" --timeout 30s --latency -s "$WORK/pull.lua" "$R" >"$WORK/wrk.txt" 2>&1 &
WRK=$!
# Halfway through, count the connections the server holds open.
(sleep $((SECS / 2)); ss -Htn state established "( sport = :$PORT )" | wc -l >"$WORK/held") &
# Pushes beside the pulls, for the same time: batches of 64 KiB blobs, 16 at a time.
PUSHED=0
PUSH_ERRORS=0
END=$((SECONDS + SECS))
while [ $SECONDS -lt $END ]; do
  if "$LOADGEN" small-blobs "$R" load/pushes 50 65536 "$PUSHERS" >>"$WORK/push.txt" 2>&1; then
    PUSHED=$((PUSHED + 50))
  else
    PUSH_ERRORS=$((PUSH_ERRORS + 1))
  fi
done
wait "$WRK"
HELD=$(cat "$WORK/held" 2>/dev/null || echo "?")
RSS=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$PID/status")
cat "$WORK/wrk.txt"
echo
echo "== results"
REQS=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
SOCKERR=$(awk '/Socket errors/ {print}' "$WORK/wrk.txt")
NON2XX=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")
P99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk.txt")
P50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk.txt")
echo "connections            $CONNS (held open by the server halfway through: $HELD)"
echo "duration               ${SECS}s"
echo "pull requests          $REQS (p50 $P50, p99 $P99)"
echo "pull errors            ${SOCKERR:-none}; non-2xx: ${NON2XX:-0}"
echo "blobs pushed           $PUSHED (batches that failed: $PUSH_ERRORS)"
echo "push rate              $((PUSHED / SECS)) blobs/s"
echo "server peak RSS        $RSS"
if grep -q . "$WORK/wharf.log"; then
  echo "== server log (warnings and errors)"
  head -20 "$WORK/wharf.log"
fi
[ -z "$SOCKERR" ] && [ -z "$NON2XX" ] && [ "$PUSH_ERRORS" = 0 ]

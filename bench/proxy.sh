#!/usr/bin/env bash
# Pull-through cache timings: podman pulls a ~100 MB image (4 layers of 25 MB of random data,
# built here with buildah) from an upstream Wharf that requires bearer tokens, directly and
# through a cache Wharf: cold (empty cache), warm (cached, upstream up) and warm with the
# upstream stopped. Each pull goes into an emptied podman store; the same fetched with curl
# (manifest and blobs, no client work) shows the registry's part. Prints the medians of ROUNDS.
#
#   bash bench/proxy.sh [ROUNDS]     default 3; WHARF_BIN defaults to target/release/wharf
#
# Needs root on Debian with podman, buildah, openssl, apache2-utils (tests/e2e/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
WHARF=${WHARF_BIN:-target/release/wharf}
[ -x "$WHARF" ] || cargo build --release --locked --bin wharf
WORK=$(mktemp -d /tmp/wharf-bench-proxy.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=127.0.0.1:$(free_port)
C=127.0.0.1:$(free_port)
export CONTAINERS_STORAGE_CONF=$WORK/storage.conf
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$WORK/storage" "$WORK/run" > "$CONTAINERS_STORAGE_CONF"
MIRROR_PW=bench-mirror-pw

start() { # NAME ADDR [VAR=value...]
  local name=$1 addr=$2
  shift 2
  env WHARF_HTTP_ADDR="$addr" WHARF_LOG_LEVEL=warn "$@" "$WHARF" serve >> "$WORK/$name.log" 2>&1 &
  echo $! > "$WORK/$name.pid"
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://$addr/v2/" && return 0
    sleep 0.1
  done
  echo "wharf $name did not start" >&2; tail -20 "$WORK/$name.log" >&2; return 1
}
# stop_pid and clean_work
# shellcheck source=tests/e2e/lib.sh
. tests/e2e/lib.sh
stop() { stop_pid "$WORK/$1.pid"; } # NAME
cleanup() {
  stop upstream; stop cache
  clean_work
}
trap cleanup EXIT

# the image: each layer on top of the previous image, so there are four
img=scratch
for i in 1 2 3 4; do
  head -c 25000000 /dev/urandom > "$WORK/layer$i"
  c=$(buildah from "$img")
  buildah copy -q "$c" "$WORK/layer$i" "/layer$i" >/dev/null
  buildah commit -q "$c" "localhost/bench/img:$i" >/dev/null
  buildah rm "$c" >/dev/null
  img=localhost/bench/img:$i
done

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/token.key" 2>/dev/null
{ htpasswd -Bbn mirror "$MIRROR_PW"; htpasswd -Bbn pusher pusher-pw; } > "$WORK/htpasswd" 2>/dev/null
start upstream "$UP" WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$WORK/upstream-data" REGISTRY_AUTH=token \
  REGISTRY_AUTH_TOKEN_SERVICE=bench REGISTRY_AUTH_TOKEN_ISSUER=bench-issuer \
  WHARF_AUTH_TOKEN_SIGNINGKEY="$WORK/token.key" WHARF_AUTH_TOKEN_HTPASSWD="$WORK/htpasswd"
podman push -q --tls-verify=false --creds pusher:pusher-pw localhost/bench/img:4 "$UP/bench/img:v1"
size=$(du -sb "$WORK/upstream-data/docker/registry/v2/blobs" | cut -f1)
echo "image: 4 layers, $((size / 1000000)) MB stored upstream; wharf: $WHARF"

# seconds of one podman pull into an empty store
pull() { # REF [--creds U:P]
  podman rmi -a -f >/dev/null 2>&1 || true
  rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
  local t0 t1
  t0=$(date +%s.%N)
  podman pull -q --tls-verify=false "${@:2}" "$1" >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
start_cache() {
  start cache "$C" WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$WORK/cache-data-$1" REGISTRY_PROXY_REMOTEURL="http://$UP" \
    REGISTRY_PROXY_USERNAME=mirror REGISTRY_PROXY_PASSWORD="$MIRROR_PW" WHARF_PROXY_TTL=1h
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# seconds to GET the manifest and every blob with curl (the registry alone, no client work)
fetch() { # HOST [curl options]
  local t0 t1 m
  t0=$(date +%s.%N)
  m=$(curl -sf "${@:2}" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$1/v2/bench/img/manifests/v1")
  for d in $(echo "$m" | jq -r '.config.digest, .layers[].digest'); do
    curl -sf "${@:2}" -o /dev/null "http://$1/v2/bench/img/blobs/$d"
  done
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
token=$(curl -sf -u pusher:pusher-pw "http://$UP/token?service=bench&scope=repository:bench/img:pull" | jq -r .token)

rows=(direct cold warm down)
declare -A podman_t curl_t
for r in $(seq "$ROUNDS"); do
  podman_t[direct]+="$(pull "$UP/bench/img:v1" --creds pusher:pusher-pw) "
  curl_t[direct]+="$(fetch "$UP" -H "Authorization: Bearer $token") "
  start_cache "$r-podman"
  podman_t[cold]+="$(pull "$C/bench/img:v1") "
  podman_t[warm]+="$(pull "$C/bench/img:v1") "
  stop cache
  start_cache "$r-curl"
  curl_t[cold]+="$(fetch "$C") "
  curl_t[warm]+="$(fetch "$C") "
  stop upstream
  curl_t[down]+="$(fetch "$C") "
  podman_t[down]+="$(pull "$C/bench/img:v1") "
  stop cache
  start upstream "$UP" WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$WORK/upstream-data" REGISTRY_AUTH=token \
    REGISTRY_AUTH_TOKEN_SERVICE=bench REGISTRY_AUTH_TOKEN_ISSUER=bench-issuer \
    WHARF_AUTH_TOKEN_SIGNINGKEY="$WORK/token.key" WHARF_AUTH_TOKEN_HTPASSWD="$WORK/htpasswd"
  echo "round $r done"
done
label() {
  case $1 in
    direct) echo "directly from the upstream (token auth)" ;;
    cold) echo "through the cache, cold" ;;
    warm) echo "through the cache, warm" ;;
    down) echo "through the cache, warm, upstream stopped" ;;
  esac
}
printf '\n| ~100 MB image, median of %s rounds | podman pull (s) | curl manifest + blobs (s) |\n|---|---:|---:|\n' "$ROUNDS"
for row in "${rows[@]}"; do
  # shellcheck disable=SC2086 # the lists are space-separated numbers
  printf '| %s | %.2f | %.2f |\n' "$(label "$row")" \
    "$(printf '%s\n' ${podman_t[$row]} | median)" "$(printf '%s\n' ${curl_t[$row]} | median)"
done

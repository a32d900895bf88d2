#!/usr/bin/env bash
# Pull-through cache with real clients: an upstream Wharf that requires bearer tokens from its
# built-in token server (anonymous pulls refused), and a cache Wharf in front of it configured
# as registry:2 is (REGISTRY_PROXY_REMOTEURL/USERNAME/PASSWORD), then by prefix from a TOML file.
# podman pushes an image to the upstream, pulls it through the cache anonymously (same image
# id), is refused a push into the cache, and pulls again with the upstream stopped.
#
#   bash tests/e2e/proxy.sh          (after tests/e2e/install.sh; WHARF_BIN defaults to target/debug/wharf)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WHARF=${WHARF_BIN:-$ROOT/target/debug/wharf}
[ -x "$WHARF" ] || { echo "no wharf binary at $WHARF (cargo build first)" >&2; exit 1; }
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
private_blob_info_cache "$0" "$@"
WORK=$(mktemp -d /tmp/wharf-e2e-proxy.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=127.0.0.1:$(free_port)       # the upstream
C=127.0.0.1:$(free_port)        # the cache (every repository)
P=127.0.0.1:$(free_port)        # the cache by prefix (hub/ -> the upstream)
private_containers_config
export REGISTRY_AUTH_FILE=$WORK/auth.json
echo "{}" > "$REGISTRY_AUTH_FILE"
MIRROR_PW=mirror-e2e-pw-41d2
PUSH_PW=pusher-e2e-pw-9b07
IMG=localhost/e2e-proxy/img:latest
echo "upstream Wharf on $UP, caches on $C (every repository) and $P (by prefix): free loopback ports"

start() { # NAME ADDR [VAR=value...]: a Wharf on ADDR with its own store and log
  local name=$1 addr=$2
  shift 2
  env WHARF_HTTP_ADDR="$addr" WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$WORK/$name-data" "$@" \
    "$WHARF" serve >> "$WORK/$name.log" 2>&1 &
  echo $! > "$WORK/$name.pid"
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://$addr/v2/" && return 0
    sleep 0.1
  done
  echo "wharf $name did not start"; tail -20 "$WORK/$name.log"; return 1
}
stop() { stop_pid "$WORK/$1.pid"; } # NAME
cleanup() {
  for n in upstream cache prefix; do stop "$n"; done
  clean_work
}
trap cleanup EXIT

on_failure() {
  for n in upstream cache prefix; do
    [ -f "$WORK/$n.log" ] || continue
    echo "     | $n log (tail):"; tail -n 12 "$WORK/$n.log" | sed 's/^/     | /'
  done
}

setup() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/token.key"
  { htpasswd -Bbn mirror "$MIRROR_PW"; htpasswd -Bbn pusher "$PUSH_PW"; } > "$WORK/htpasswd"
  local c
  c=$(buildah from scratch)
  buildah copy "$c" /bin/busybox /bin/busybox
  head -c 4000000 /dev/urandom > "$WORK/payload"
  buildah copy "$c" "$WORK/payload" /payload
  buildah commit -q "$c" "$IMG"
  start upstream "$UP" REGISTRY_AUTH=token REGISTRY_AUTH_TOKEN_SERVICE=wharf-upstream \
    REGISTRY_AUTH_TOKEN_ISSUER=wharf-upstream-issuer WHARF_AUTH_TOKEN_SIGNINGKEY="$WORK/token.key" \
    WHARF_AUTH_TOKEN_HTPASSWD="$WORK/htpasswd"
  podman push -q --tls-verify=false --creds "pusher:$PUSH_PW" "$IMG" "$UP/e2e/img:v1"
  # the upstream wants a token: anonymous pulls are refused
  curl -s -D - -o /dev/null "http://$UP/v2/e2e/img/manifests/v1" | grep -qi '^www-authenticate: Bearer realm='
  if podman pull -q --tls-verify=false "$UP/e2e/img:v1" 2> "$WORK/anon.err"; then
    echo "the upstream served an anonymous pull"; return 1
  fi
  start cache "$C" REGISTRY_PROXY_REMOTEURL="http://$UP" REGISTRY_PROXY_USERNAME=mirror \
    REGISTRY_PROXY_PASSWORD="$MIRROR_PW"
  printf '[proxy]\nttl = "1s"\n[[proxy.upstream]]\nprefix = "hub/"\nurl = "http://%s"\nusername = "mirror"\npassword = "%s"\n' \
    "$UP" "$MIRROR_PW" > "$WORK/prefix.toml"
  start prefix "$P" WHARF_CONFIG="$WORK/prefix.toml" WHARF_STORAGE_DELETE_ENABLED=true
}

image_id() { podman image inspect "$1" --format '{{.Id}}'; }

pull_through() {
  local want
  want=$(image_id "$IMG")
  podman pull -q --tls-verify=false "$C/e2e/img:v1" >/dev/null
  [ "$(image_id "$C/e2e/img:v1")" = "$want" ] || { echo "image id changed"; return 1; }
  # the cache fetched with a token issued to the mirror's user, and stored the layers
  grep -q 'token issued user="mirror"' "$WORK/upstream.log"
  grep -q 'blob cached' "$WORK/cache.log"
  curl -sf "http://$C/v2/e2e/img/tags/list" | jq -e '.tags == ["v1"]'
  curl -sf "http://$C/v2/_catalog" | jq -e '.repositories == ["e2e/img"]'
}

pull_by_prefix() {
  local want
  want=$(image_id "$IMG")
  podman pull -q --tls-verify=false "$P/hub/e2e/img:v1" >/dev/null
  [ "$(image_id "$P/hub/e2e/img:v1")" = "$want" ] || { echo "image id changed"; return 1; }
  # beside the cached prefix, an ordinary repository takes pushes
  podman push -q --tls-verify=false "$IMG" "$P/local/img:v1"
  if podman push -q --tls-verify=false "$IMG" "$P/hub/e2e/mine:v1" 2> "$WORK/push.err"; then
    echo "a push under the cached prefix succeeded"; return 1
  fi
}

upstream_down() {
  local want
  want=$(image_id "$IMG")
  stop upstream
  podman rmi -f "$C/e2e/img:v1" "$P/hub/e2e/img:v1" >/dev/null
  podman pull -q --tls-verify=false "$C/e2e/img:v1" >/dev/null
  [ "$(image_id "$C/e2e/img:v1")" = "$want" ] || { echo "image id changed"; return 1; }
  # past its 1 s TTL the prefix cache serves the tag with a staleness warning
  sleep 1.2
  curl -s -D - -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$P/v2/hub/e2e/img/manifests/v1" | tr -d '\r' | grep -q '^warning: 299 - ".*stale"$'
  podman pull -q --tls-verify=false "$P/hub/e2e/img:v1" >/dev/null
  [ "$(image_id "$P/hub/e2e/img:v1")" = "$want" ]
}

push_refused() {
  if podman push -q --tls-verify=false "$IMG" "$C/e2e/other:v1" 2> "$WORK/push.err"; then
    echo "a push into the cache succeeded"; return 1
  fi
  cat "$WORK/push.err"
  grep -qiE 'unsupported|405|not allowed|pull-through' "$WORK/push.err"
  ! grep -q "$MIRROR_PW" "$WORK/cache.log" "$WORK/prefix.log" "$WORK/upstream.log"
}

step "upstream Wharf with tokens, image pushed; caches started" setup
step "podman pulls through the cache (registry:2 variables), same id" pull_through
step "podman pulls through a prefix cache; pushes beside it only" pull_by_prefix
step "podman push into the cache refused; no password logged" push_refused
step "upstream stopped: podman pulls from the caches, stale warning" upstream_down
summary
[ "$failed" = 0 ]

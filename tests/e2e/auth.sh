#!/usr/bin/env bash
# Real clients against Wharf with authentication over TLS, in two flavours:
#   1. htpasswd (Basic): the registry:2 variables REGISTRY_AUTH=htpasswd, REGISTRY_HTTP_TLS_*;
#   2. bearer tokens from Wharf's built-in token server (REGISTRY_AUTH=token + a signing key).
# Each: curl sees the challenge; podman login + push + pull; skopeo copy with --creds; a push
# with wrong credentials is refused and the image is not there afterwards; no password or
# token in the server log. The CA and certificates are made here with openssl; clients trust
# the CA through --cert-dir (never --tls-verify=false).
#
#   bash tests/e2e/auth.sh           (after tests/e2e/install.sh; WHARF_BIN defaults to target/debug/wharf)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WHARF=${WHARF_BIN:-$ROOT/target/debug/wharf}
[ -x "$WHARF" ] || { echo "no wharf binary at $WHARF (cargo build first)" >&2; exit 1; }
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
private_blob_info_cache "$0" "$@"
WORK=$(mktemp -d /tmp/wharf-e2e-auth.XXXXXX)
LOG=$WORK/wharf.log
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
R=127.0.0.1:$PORT
CERTS=$WORK/certs              # --cert-dir: holds ca.crt
private_containers_config
export REGISTRY_AUTH_FILE=$WORK/auth.json
echo "{}" > "$REGISTRY_AUTH_FILE"
PASS=alice-e2e-pw-7c1f
BAD=not-alices-pw-93ab
echo "Wharf with TLS and auth on $R (a free loopback port)"

start_wharf() { # VAR=value pairs for the server's environment
  : > "$LOG"
  # The wrong-password steps fail alice's logins on purpose; a higher lockout threshold keeps the
  # right-password checks after them meaningful (a 429 would make "the image is absent" pass).
  env WHARF_HTTP_ADDR="$R" WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$WORK/data" WHARF_STORAGE_DELETE_ENABLED=true \
    WHARF_AUTH_LOGIN_MAXFAILURES=100 WHARF_AUTH_LOGIN_MAXADDRESSFAILURES=100 \
    REGISTRY_HTTP_TLS_CERTIFICATE="$WORK/server.crt" REGISTRY_HTTP_TLS_KEY="$WORK/server.key" \
    "$@" "$WHARF" serve >> "$LOG" 2>&1 &
  echo $! > "$WORK/pid"
  for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$CERTS/ca.crt" "https://$R/v2/" && return 0
    sleep 0.1
  done
  echo "wharf did not start"; tail -20 "$LOG"; return 1
}
stop_wharf() { stop_pid "$WORK/pid"; }
cleanup() {
  stop_wharf
  clean_work
}
trap cleanup EXIT

on_failure() {
  echo "     | server log (tail):"; tail -n 15 "$LOG" | sed 's/^/     | /'
}

make_pki_and_image() {
  mkdir -p "$CERTS"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=wharf-e2e-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$WORK/ca.key" -out "$CERTS/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' > "$WORK/ext"
  openssl x509 -req -in "$WORK/server.csr" -CA "$CERTS/ca.crt" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 \
    -extfile "$WORK/ext" -out "$WORK/server.crt" 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/token.key"
  htpasswd -Bbn alice "$PASS" > "$WORK/htpasswd"
  grep -q '^alice:[$]2y[$]' "$WORK/htpasswd"
  local c
  c=$(buildah from scratch)
  buildah copy "$c" /bin/busybox /bin/busybox
  head -c 3000000 /dev/urandom > "$WORK/payload"
  buildah copy "$c" "$WORK/payload" /payload
  buildah commit -q "$c" localhost/e2e-auth/img:latest
}

# $1: repository prefix (per flavour), $2: the challenge scheme curl must see
challenge_seen() {
  local h
  h=$(curl -s -D - -o /dev/null --cacert "$CERTS/ca.crt" "https://$R/v2/")
  echo "$h" | grep -q '^HTTP/1.1 401'
  echo "$h" | grep -qi "^www-authenticate: $2"
  # without the CA, clients refuse the certificate
  if skopeo inspect --creds "alice:$PASS" "docker://$R/none/such:v1" 2> "$WORK/untrusted.err"; then
    echo "an untrusted certificate was accepted"; return 1
  fi
  grep -qi 'certificate' "$WORK/untrusted.err"
}

podman_login_push_pull() {
  local repo=$1 id
  if podman login --cert-dir "$CERTS" -u alice -p "$BAD" "$R" 2> "$WORK/login.err"; then
    echo "login with a wrong password succeeded"; return 1
  fi
  podman login --cert-dir "$CERTS" -u alice -p "$PASS" "$R" | grep -q 'Login Succeeded'
  id=$(podman image inspect localhost/e2e-auth/img:latest --format '{{.Id}}')
  podman push -q --cert-dir "$CERTS" localhost/e2e-auth/img:latest "$R/$repo/img:v1"
  podman rmi -f "$R/$repo/img:v1" >/dev/null 2>&1 || true
  podman pull -q --cert-dir "$CERTS" "$R/$repo/img:v1" >/dev/null
  [ "$(podman image inspect "$R/$repo/img:v1" --format '{{.Id}}')" = "$id" ] || { echo "image id changed"; return 1; }
  podman logout "$R"
  # logged out: a pull without credentials is refused
  if podman pull -q --cert-dir "$CERTS" "$R/$repo/img:v1" 2> "$WORK/anon.err"; then
    echo "pulled without credentials"; return 1
  fi
  grep -qiE 'unauthorized|authentication required' "$WORK/anon.err"
}

skopeo_creds() {
  local repo=$1
  skopeo copy -q --dest-creds "alice:$PASS" --dest-cert-dir "$CERTS" \
    containers-storage:localhost/e2e-auth/img:latest "docker://$R/$repo/skopeo:v1"
  skopeo inspect --creds "alice:$PASS" --cert-dir "$CERTS" "docker://$R/$repo/skopeo:v1" | jq -e '.Layers | length == 1'
  skopeo copy -q --src-creds "alice:$PASS" --src-cert-dir "$CERTS" "docker://$R/$repo/skopeo:v1" "dir:$WORK/$repo-dir"
  skopeo list-tags --creds "alice:$PASS" --cert-dir "$CERTS" "docker://$R/$repo/skopeo" | jq -e '.Tags == ["v1"]'
}

refused_push() {
  local repo=$1
  if podman push -q --cert-dir "$CERTS" --creds "alice:$BAD" localhost/e2e-auth/img:latest "$R/$repo/refused:v1" 2> "$WORK/push.err"; then
    echo "a push with a wrong password succeeded"; return 1
  fi
  grep -qiE 'unauthorized|authentication required|invalid username/password' "$WORK/push.err"
  if skopeo copy -q --dest-creds "alice:$BAD" --dest-cert-dir "$CERTS" \
    containers-storage:localhost/e2e-auth/img:latest "docker://$R/$repo/refused:v1" 2>/dev/null; then
    echo "a skopeo copy with a wrong password succeeded"; return 1
  fi
  # the image is not there (asked with the right credentials)
  if skopeo inspect --creds "alice:$PASS" --cert-dir "$CERTS" "docker://$R/$repo/refused:v1" 2>/dev/null; then
    echo "$repo/refused:v1 exists after refused pushes"; return 1
  fi
  ! find "$WORK/data/docker/registry/v2/repositories" -path "*$repo/refused*" | grep -q .
}

no_secrets_logged() {
  if grep -qE "$PASS|$BAD" "$LOG"; then echo "a password reached the log"; return 1; fi
  if grep -qE 'eyJ[A-Za-z0-9_-]{20,}\.' "$LOG"; then echo "a token reached the log"; return 1; fi
  grep -q 'failed login' "$LOG"
}

tokens_were_used() {
  # the clients went through the token server, and the registry saw bearer requests
  grep -q 'token issued user="alice"' "$LOG"
  [ "$(grep -c 'method=GET path=/token ' "$LOG")" -ge 3 ]
  no_secrets_logged
}

token_challenge() {
  local h
  h=$(curl -s -D - -o /dev/null --cacert "$CERTS/ca.crt" "https://$R/v2/tok/img/tags/list")
  echo "$h" | grep -qi "^www-authenticate: Bearer realm=\"https://$R/token\",service=\"wharf-e2e\",scope=\"repository:tok/img:pull\""
  local t
  t=$(curl -sf --cacert "$CERTS/ca.crt" -u "alice:$PASS" "https://$R/token?service=wharf-e2e&scope=repository:tok/img:pull" | jq -r .token)
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CERTS/ca.crt" -H "Authorization: Bearer $t" "https://$R/v2/")" = 200 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CERTS/ca.crt" -u "alice:$BAD" "https://$R/token?service=wharf-e2e")" = 401 ]
}

step "make a CA, server certificate, token key, htpasswd, image" make_pki_and_image

echo "== htpasswd over TLS (registry:2 variables)"
start_wharf REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_REALM=wharf-e2e REGISTRY_AUTH_HTPASSWD_PATH="$WORK/htpasswd" || exit 1
step "curl: 401 with a Basic challenge; untrusted cert refused" challenge_seen basic 'Basic realm="wharf-e2e"'
step "podman: login (wrong, right), push, pull, logout" podman_login_push_pull basic
step "skopeo: copy, inspect, list-tags with --creds" skopeo_creds basic
step "push with wrong credentials refused, image absent" refused_push basic
step "no password in the server log" no_secrets_logged
stop_wharf

echo "== bearer tokens over TLS (built-in token server)"
start_wharf REGISTRY_AUTH=token REGISTRY_AUTH_TOKEN_SERVICE=wharf-e2e REGISTRY_AUTH_TOKEN_ISSUER=wharf-e2e-issuer \
  WHARF_AUTH_TOKEN_SIGNINGKEY="$WORK/token.key" WHARF_AUTH_TOKEN_HTPASSWD="$WORK/htpasswd" || exit 1
step "curl: Bearer challenge, token endpoint, wrong password" token_challenge
step "podman: login (wrong, right), push, pull, logout" podman_login_push_pull tok
step "skopeo: copy, inspect, list-tags with --creds" skopeo_creds tok
step "push with wrong credentials refused, image absent" refused_push tok
step "clients used the token server; no password or token logged" tokens_were_used
summary

#!/usr/bin/env bash
# The conformance suite against Wharf with authentication on: once with htpasswd (Basic, set with
# registry:2's variables), once with bearer tokens from Wharf's built-in token server. The suite
# sends Basic credentials and answers Bearer challenges from the realm they name; every check must
# pass (0 failures, 0 skips). Needs htpasswd (apache2-utils) and openssl; tests/e2e/install.sh
# installs them.
#
#   bash tests/conformance/auth.sh        (WHARF_BIN defaults to target/debug/wharf)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WHARF=${WHARF_BIN:-$ROOT/target/debug/wharf}
[ -x "$WHARF" ] || { echo "no wharf binary at $WHARF (cargo build first)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/wharf-conformance-auth.XXXXXX)
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT
PASS=conf-$RANDOM-$RANDOM
htpasswd -Bbn conformance "$PASS" > "$WORK/htpasswd"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/token.key" 2>/dev/null

run() { # name, then VAR=value pairs for the server
  local name=$1 port
  shift
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  rm -rf "$WORK/data"
  env WHARF_HTTP_ADDR="127.0.0.1:$port" WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$WORK/data" \
    WHARF_STORAGE_DELETE_ENABLED=true WHARF_LOG_LEVEL=warn "$@" "$WHARF" serve > "$WORK/$name.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" = 401 ] && break
    sleep 0.1
  done
  echo "== conformance with $name"
  (cd "$ROOT" && CONFORMANCE_USER=conformance CONFORMANCE_PASSWORD=$PASS \
    cargo test --locked --test conformance -- --url "http://127.0.0.1:$port" --name "wharf-$name" \
      --no-skips --junit "target/conformance-wharf-$name.xml" | grep -v '^  pass  ')
  # without credentials the registry refuses
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/_catalog")" = 401 ]
  stop
}

run htpasswd REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_REALM=conformance REGISTRY_AUTH_HTPASSWD_PATH="$WORK/htpasswd"
run token REGISTRY_AUTH=token REGISTRY_AUTH_TOKEN_SERVICE=conformance REGISTRY_AUTH_TOKEN_ISSUER=conformance-issuer \
  WHARF_AUTH_TOKEN_SIGNINGKEY="$WORK/token.key" WHARF_AUTH_TOKEN_HTPASSWD="$WORK/htpasswd"

#!/usr/bin/env bash
# The registry:2 labs of a container-registry course (its "Running a Private Registry" to
# "Multi-Architecture Images" parts, and module 3's podman lab; the course text is not in this
# repository), replayed against Wharf's image: each command as the course writes it, with
# `registry:2` replaced by the Wharf image, and these changes forced by the machine (each marked
# "replay:" below):
# - `-p 5000:5000` becomes `--network host` (dockerd runs with --bridge=none here), and port
#   5000 a free port (so a registry already on :5000 does not stop the run);
# - images the course pulls from Docker Hub (alpine, nginx:alpine) are built locally FROM scratch
#   under the same names; `docker run httpd:2 htpasswd` is the host's htpasswd;
# - ~/lab is a temporary directory;
# - Wharf runs as uid 65532, not root: the TLS key openssl writes (mode 0600) is made readable
#   to that group;
# - garbage-collect on a running read-write Wharf is refused (GC would race the pushes; the
#   course itself warns about this): the replay checks the refusal, restarts the registry
#   read-only and runs the course's GC commands in it.
# The TLS and htpasswd labs run when the build supports them (`wharf check-config` accepts their
# REGISTRY_* variables) and are skipped, saying so, otherwise.
#
#   bash tests/e2e/seeds.sh
#
# Env: WHARF_IMAGE (the image to run; default: built here from WHARF_BIN with
# contrib/image/build.sh), WHARF_BIN (default target/debug/wharf), SEEDS_PORT (default: a free
# port; SEEDS_PORT=5000 is the course's own), DOCKER_HOST (else a private dockerd is started).
# Prints "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WHARF=${WHARF_BIN:-$ROOT/target/debug/wharf}
# shellcheck source=tests/e2e/lib.sh
. "$HERE/lib.sh"
private_blob_info_cache "$0" "$@"
# replay: a free port (on every address: the registry listens on all of them), unless SEEDS_PORT
P=${SEEDS_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])')}
WORK=$(mktemp -d /tmp/wharf-e2e-seeds.XXXXXX)
LAB=$WORK/lab   # the course's ~/lab
private_containers_config
export DOCKER_BUILDKIT=0
# shellcheck disable=SC1091 # checked on its own
source "$HERE/dockerd.sh"
OWN_DOCKERD=0
cleanup() {
  [ -d "$WORK" ] || return 0
  docker container rm -f registry secure-registry auth-registry gc-registry mirror >/dev/null 2>&1
  docker volume rm registry-data gc-test >/dev/null 2>&1
  podman rmi -a -f >/dev/null 2>&1
  [ "$OWN_DOCKERD" = 1 ] && dockerd_stop
  grep -o "${WORK}[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r umount 2>/dev/null
  rm -rf "$WORK"
}

on_failure() {
  for c in registry secure-registry auth-registry gc-registry mirror; do
    docker logs "$c" 2>&1 | tail -5 | sed "s/^/     | $c: /"
  done
  cleanup
}
trap cleanup EXIT
if [ -z "${DOCKER_HOST:-}" ]; then
  dockerd_start || exit 1
  OWN_DOCKERD=1
fi
export DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG" "$LAB"
echo '{"auths":{}}' > "$DOCKER_CONFIG/config.json"
export REGISTRY_AUTH_FILE=$WORK/auth.json   # podman login's file
echo '{"auths":{}}' > "$REGISTRY_AUTH_FILE"
STEP_DIR=$LAB

if [ -z "${WHARF_IMAGE:-}" ]; then
  WHARF_IMAGE=wharf:seeds
  bash "$ROOT/contrib/image/build.sh" --binary "$WHARF" --tag "$WHARF_IMAGE" >/dev/null || exit 1
fi
IMAGE=$WHARF_IMAGE
# replay: the course's port is 5000; the registry listens on $P instead unless that is 5000
PORT_ENV=()
[ "$P" = 5000 ] || PORT_ENV=(-e "REGISTRY_HTTP_ADDR=:$P")
if curl -s -o /dev/null "http://localhost:$P/"; then
  echo "port $P is in use on this machine: set SEEDS_PORT to a free port (or leave it unset)" >&2
  exit 1
fi


# `docker container run -d -p 5000:5000 ...` of the course, on this machine.
run_registry() { docker container run -d --network host "${PORT_ENV[@]}" "$@"; }

wait_up() { # [SCHEME]
  local _ scheme=${1:-http}
  for _ in $(seq 100); do
    curl -sk -o /dev/null "$scheme://localhost:$P/v2/" && return 0
    sleep 0.1
  done
  echo "the registry did not come up"; return 1
}

expect() { # WANT CMD...: the command's output equals WANT
  local want=$1 got
  shift
  got=$("$@")
  [ "$got" = "$want" ] || { echo "expected $want, got $got"; return 1; }
}

# replay: the Docker Hub images of the labs, built locally under their names
local_images() {
  local name
  for name in alpine:latest nginx:alpine nginx:stable; do
    mkdir -p "$WORK/img-$name"
    cp /bin/busybox "$WORK/img-$name/busybox"
    head -c 300000 /dev/urandom > "$WORK/img-$name/payload"
    printf 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY payload /payload\nCMD ["/bin/busybox", "sh"]\n' > "$WORK/img-$name/Dockerfile"
    docker build -q -t "$name" "$WORK/img-$name"
  done
  # podman's copy of docker.io/library/alpine:latest, for module 3's podman lab
  skopeo copy -q --src-daemon-host "$DOCKER_HOST" \
    "docker-daemon:alpine:latest" "containers-storage:docker.io/library/alpine:latest"
}

# Module 3 "Push to a Local Registry" (podman) and Image Management Part 8 "Running a Private
# Registry" (docker): one registry container for both.
private_registry() {
  run_registry --name registry "$IMAGE"   # replay: podman run ... docker.io/library/registry:2
  wait_up
  expect '{"repositories":[]}' curl -s "http://localhost:$P/v2/_catalog"
  # module 3 (podman)
  podman tag docker.io/library/alpine:latest "localhost:$P/alpine:course"
  podman push --tls-verify=false "localhost:$P/alpine:course"
  podman rmi docker.io/library/alpine:latest
  podman rmi "localhost:$P/alpine:course"
  podman pull --tls-verify=false "localhost:$P/alpine:course"
  podman images --digests | grep alpine
  # part 8 (docker)
  docker image tag alpine "localhost:$P/myalpine:1.0"
  docker image push "localhost:$P/myalpine:1.0"
  expect '{"repositories":["alpine","myalpine"]}' curl -s "http://localhost:$P/v2/_catalog"
  expect '{"name":"myalpine","tags":["1.0"]}' curl -s "http://localhost:$P/v2/myalpine/tags/list"
  docker image rm "localhost:$P/myalpine:1.0"
  docker image pull "localhost:$P/myalpine:1.0"
  # skopeo (the course's "inspect remote image metadata" and "get image digest")
  skopeo inspect --tls-verify=false "docker://localhost:$P/myalpine:1.0" | jq -r '.Digest'
  expect "$(docker image inspect "localhost:$P/myalpine:1.0" --format '{{index .RepoDigests 0}}' | cut -d@ -f2)" \
    sh -c "skopeo inspect --tls-verify=false docker://localhost:$P/myalpine:1.0 | jq -r .Digest"
  # the acceptance check: the metrics count the pushes and pulls
  curl -s "localhost:$P/metrics" | grep -E '^wharf_(pushes|pulls)_total' | tee "$WORK/metrics.txt"
  grep -Eq '^wharf_pushes_total\{kind="manifest"\} [1-9]' "$WORK/metrics.txt"
  grep -Eq '^wharf_pushes_total\{kind="blob"\} [1-9]' "$WORK/metrics.txt"
  grep -Eq '^wharf_pulls_total\{kind="manifest"\} [1-9]' "$WORK/metrics.txt"
  grep -Eq '^wharf_pulls_total\{kind="blob"\} [1-9]' "$WORK/metrics.txt"
  docker container rm -f registry
}

# Part 9 "Registry with Persistent Storage"
persistent_storage() {
  docker volume create registry-data
  run_registry \
    --name registry \
    -v registry-data:/var/lib/registry \
    "$IMAGE"
  wait_up
  docker image tag nginx:alpine "localhost:$P/nginx:alpine"
  docker image push "localhost:$P/nginx:alpine"
  docker container rm -f registry   # "Simulate a Crash" (SIGKILL)
  run_registry \
    --name registry \
    -v registry-data:/var/lib/registry \
    "$IMAGE"
  wait_up
  curl -s "http://localhost:$P/v2/_catalog" | tee /dev/stderr | jq -e '.repositories == ["nginx"]'
  # Part 7 "Working with Image Digests": pull by digest
  local ref
  ref=$(docker image inspect "localhost:$P/nginx:alpine" --format '{{index .RepoDigests 0}}')
  docker image rm "localhost:$P/nginx:alpine"
  docker image pull "$ref"
  docker image inspect "$ref" --format '{{.Id}}'
  docker container rm -f registry
  docker volume rm registry-data
}

# Part 10 "Securing Your Registry with TLS"
tls() {
  mkdir -p "$LAB/certs" && cd "$LAB/certs"
  openssl req -newkey rsa:4096 -nodes -sha256 \
    -keyout domain.key -x509 -days 365 \
    -out domain.crt \
    -subj "/CN=localhost" \
    -addext "subjectAltName = DNS:localhost,IP:127.0.0.1"
  chgrp 65532 domain.key && chmod 0640 domain.key   # replay: readable by the image's user
  run_registry \
    --name secure-registry \
    -v "$LAB/certs:/certs" \
    -e REGISTRY_HTTP_TLS_CERTIFICATE=/certs/domain.crt \
    -e REGISTRY_HTTP_TLS_KEY=/certs/domain.key \
    "$IMAGE"
  wait_up https
  expect '{"repositories":[]}' curl -k "https://localhost:$P/v2/_catalog"
  # trusting the certificate instead of -k (docker skips verification on loopback, so the
  # trust check is made with curl and skopeo)
  curl -sf --cacert domain.crt "https://localhost:$P/v2/" >/dev/null
  if curl -sf "https://localhost:$P/v2/" >/dev/null 2>&1; then echo "an untrusted certificate was accepted"; return 1; fi
  mkdir -p "$WORK/certs.d" && cp domain.crt "$WORK/certs.d/ca.crt"
  skopeo copy -q --src-daemon-host "$DOCKER_HOST" --dest-cert-dir "$WORK/certs.d" \
    "docker-daemon:alpine:latest" "docker://localhost:$P/alpine:tls"
  docker image tag alpine "localhost:$P/alpine:docker"
  docker image push "localhost:$P/alpine:docker"
  curl -s --cacert domain.crt "https://localhost:$P/v2/alpine/tags/list" | jq -e '.tags == ["docker", "tls"]'
  docker container rm -f secure-registry
  rm -rf "$LAB/certs"
}

# Part 11 "Registry with Authentication", and module 3's podman login
htpasswd_auth() {
  mkdir -p "$LAB/auth" && cd "$LAB/auth"
  # shellcheck disable=SC2094 # the command htpasswd does not read the file htpasswd
  htpasswd -Bbn admin secretpassword > htpasswd   # replay: the course runs this in httpd:2
  cat htpasswd
  run_registry \
    --name auth-registry \
    -v "$LAB/auth:/auth" \
    -e REGISTRY_AUTH=htpasswd \
    -e REGISTRY_AUTH_HTPASSWD_REALM="Registry Realm" \
    -e REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd \
    "$IMAGE"
  wait_up
  curl "http://localhost:$P/v2/_catalog" | tee /dev/stderr | grep -q '"code":"UNAUTHORIZED"'
  docker image tag alpine "localhost:$P/alpine:nologin"
  if docker image push "localhost:$P/alpine:nologin" > "$WORK/noauth.out" 2>&1; then
    echo "docker pushed without logging in"; return 1
  fi
  grep -qi 'no basic auth credentials\|unauthorized' "$WORK/noauth.out"
  echo secretpassword | docker login "localhost:$P" --username admin --password-stdin
  docker image tag alpine "localhost:$P/alpine:latest"
  docker image push "localhost:$P/alpine:latest"
  curl -u admin:secretpassword "http://localhost:$P/v2/_catalog" | jq -e '.repositories == ["alpine"]'
  docker logout "localhost:$P"   # the course's cleanup; before podman, which would use docker's login too
  # podman login <registry> / podman logout <registry> (module 3)
  skopeo copy -q --src-daemon-host "$DOCKER_HOST" \
    "docker-daemon:alpine:latest" "containers-storage:docker.io/library/alpine:latest"
  if podman push --tls-verify=false docker.io/library/alpine:latest "localhost:$P/alpine:podman" 2> "$WORK/noauth.err"; then
    echo "podman pushed without logging in"; return 1
  fi
  cat "$WORK/noauth.err"
  grep -qi 'unauthorized\|authentication required' "$WORK/noauth.err"
  echo secretpassword | podman login --tls-verify=false --username admin --password-stdin "localhost:$P"
  podman push --tls-verify=false docker.io/library/alpine:latest "localhost:$P/alpine:podman"
  podman rmi -a -f >/dev/null
  podman pull --tls-verify=false "localhost:$P/alpine:podman"
  podman logout "localhost:$P"
  podman rmi -a -f >/dev/null
  if podman pull --tls-verify=false "localhost:$P/alpine:podman" 2>/dev/null; then
    echo "podman pulled after logout"; return 1
  fi
  docker container rm -f auth-registry
  rm -rf "$LAB/auth"
}

# Part 12 "Registry Garbage Collection"
garbage_collection() {
  docker volume create gc-test
  run_registry \
    --name gc-registry \
    -v gc-test:/var/lib/registry \
    -e REGISTRY_STORAGE_DELETE_ENABLED=true \
    "$IMAGE"
  wait_up
  docker image tag alpine "localhost:$P/test:1"
  docker image push "localhost:$P/test:1"
  local layer
  layer=$(curl -s -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
    "http://localhost:$P/v2/test/manifests/1" | jq -r '.layers[-1].digest')
  # Delete the tag via API
  curl -X DELETE "http://localhost:$P/v2/test/manifests/$(
    curl -sI -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
      "http://localhost:$P/v2/test/manifests/1" | grep -i Docker-Content-Digest | awk '{print $2}' | tr -d '\r'
  )"
  expect 404 curl -s -o /dev/null -w '%{http_code}' "http://localhost:$P/v2/test/manifests/1"
  # replay: beside a read-write server Wharf refuses (registry:2 would race the pushes) ...
  if docker container exec gc-registry bin/registry garbage-collect /etc/docker/registry/config.yml > "$WORK/gc.out" 2>&1; then
    echo "garbage-collect ran beside a read-write registry"; return 1
  fi
  grep -q 'wharf.lock' "$WORK/gc.out"
  # ... so the registry is restarted read-only on the same volume, and the course's commands run
  docker container rm -f gc-registry
  run_registry \
    --name gc-registry \
    -v gc-test:/var/lib/registry \
    -e REGISTRY_STORAGE_DELETE_ENABLED=true \
    -e REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true \
    "$IMAGE"
  wait_up
  docker container exec gc-registry bin/registry garbage-collect --dry-run /etc/docker/registry/config.yml | tee "$WORK/dry.out"
  grep -q "blob $layer" "$WORK/dry.out"
  expect 200 curl -s -o /dev/null -w '%{http_code}' "http://localhost:$P/v2/test/blobs/$layer"
  docker container exec gc-registry bin/registry garbage-collect /etc/docker/registry/config.yml | tee "$WORK/real.out"
  grep -q "blob $layer .* deleted" "$WORK/real.out"
  expect 404 curl -s -o /dev/null -w '%{http_code}' "http://localhost:$P/v2/test/blobs/$layer"
  curl -s "localhost:$P/metrics" | grep -E '^wharf_gc_runs_total 1$'
  docker container rm -f gc-registry
  docker volume rm gc-test
}

# Part 13 "Registry Mirroring": REGISTRY_PROXY_REMOTEURL makes Wharf a pull-through cache of
# Docker Hub, as registry:2 (this machine cannot reach Docker Hub: tests/e2e/proxy.sh pulls
# through a cache of another Wharf). The upstream is named at start-up; pushes answer 405.
mirror() {
  run_registry \
    --name mirror \
    -e REGISTRY_PROXY_REMOTEURL=https://registry-1.docker.io \
    "$IMAGE"
  wait_up
  docker logs mirror 2>&1 | grep 'listening' | grep -q 'proxy="https://registry-1.docker.io"'
  curl -s "http://localhost:$P/v2/_catalog" | jq -e '.repositories == []'
  expect 405 curl -s -o /dev/null -w '%{http_code}' -X POST "http://localhost:$P/v2/library/alpine/blobs/uploads/"
  docker container rm -f mirror
}

# Part 14 "Multi-Architecture Images": no buildx here; the same index made with the legacy
# builder's --platform and docker manifest
multi_arch() {
  run_registry --name registry "$IMAGE"
  wait_up
  mkdir -p "$LAB/multiarch" && cd "$LAB/multiarch"
  cp /bin/busybox .
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "uname", "-m"]\n' > Dockerfile
  local arch
  for arch in amd64 arm64; do
    docker build -q --no-cache --platform "linux/$arch" -t "localhost:$P/multiarch:1.0-$arch" .
    docker push "localhost:$P/multiarch:1.0-$arch"
  done
  docker manifest create --insecure "localhost:$P/multiarch:1.0" "localhost:$P/multiarch:1.0-amd64" "localhost:$P/multiarch:1.0-arm64"
  docker manifest push --insecure "localhost:$P/multiarch:1.0"
  docker manifest inspect --insecure "localhost:$P/multiarch:1.0"
  docker manifest inspect --insecure --verbose "localhost:$P/multiarch:1.0" | jq '.[].Descriptor.platform'
  docker manifest inspect --insecure "localhost:$P/multiarch:1.0" |
    jq -e '[.manifests[].platform.architecture] | sort == ["amd64", "arm64"]'
  docker image rm "localhost:$P/multiarch:1.0-amd64" "localhost:$P/multiarch:1.0-arm64"
  docker pull --platform linux/arm64 "localhost:$P/multiarch:1.0"
  expect arm64 docker image inspect "localhost:$P/multiarch:1.0" --format '{{.Architecture}}'
  podman pull --tls-verify=false --arch arm64 "localhost:$P/multiarch:1.0"
  docker container rm -f registry
  rm -rf "$LAB/multiarch"
}

auth_supported() {
  env REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_REALM=r REGISTRY_AUTH_HTPASSWD_PATH=/dev/null \
    "$WHARF" check-config >/dev/null 2>&1
}
tls_supported() {
  env REGISTRY_HTTP_TLS_CERTIFICATE=/dev/null REGISTRY_HTTP_TLS_KEY=/dev/null "$WHARF" check-config >/dev/null 2>&1
}

echo "== the course's registry:2 labs against $IMAGE on localhost:$P (SEEDS_PORT=${SEEDS_PORT:-unset: a free port})"
step "local stand-ins for alpine, nginx:alpine, nginx:stable" local_images
step "private registry: podman and docker push/pull, catalog, tags, metrics" private_registry
step "persistent storage across a crash; pull by digest" persistent_storage
if tls_supported; then
  step "TLS with a self-signed certificate" tls
else
  skip "TLS with a self-signed certificate" "this build has no TLS: wharf check-config refuses REGISTRY_HTTP_TLS_*"
fi
if auth_supported; then
  step "htpasswd auth: docker login, podman login/logout" htpasswd_auth
else
  skip "htpasswd auth: docker login, podman login/logout" "this build has no htpasswd auth: wharf check-config refuses REGISTRY_AUTH=htpasswd"
fi
step "garbage collection: delete by digest, --dry-run, then for real" garbage_collection
step "mirror: REGISTRY_PROXY_REMOTEURL makes a pull-through cache that refuses pushes" mirror
step "multi-architecture index: build, manifest push/inspect, pull" multi_arch
cleanup
summary

#!/usr/bin/env bash
# A real Docker engine (Debian's dockerd 20.10, started by hand: tests/e2e/dockerd.sh) against
# Wharf, and the image build check:
#
#   bash tests/e2e/docker.sh HOST:PORT      (a Wharf on plain HTTP with deletes enabled)
#
# - docker build (legacy builder, FROM scratch), push, rmi, pull: same digest and image ID;
#   pull by digest; --platform builds, `docker manifest create/inspect/push` of a list and
#   `docker pull --platform` from it and from an OCI index;
# - docker login/logout against a Wharf with htpasswd, when this build has htpasswd auth
#   (`wharf check-config` with REGISTRY_AUTH=htpasswd exits 0); skipped, saying so, otherwise;
# - the image: contrib/image/build.sh builds Wharf's image FROM scratch from WHARF_BIN, it is
#   pushed to the Wharf above, pulled back (digest and image ID compared), then run as the seeds
#   run registry:2 (docker run -d --network host -v <volume>:/var/lib/registry -e REGISTRY_...)
#   and images are pushed to and pulled from the containerised Wharf.
#
# Env: WHARF_BIN (default target/debug/wharf); DOCKER_HOST (an engine to use; else one is
# started and stopped here). Writes the pulled image's name to $WHARF_IMAGE_FILE if set.
# Prints "N passed, N failed" last; stops at the first failure.
set -uo pipefail
R=${1:?usage: docker.sh HOST:PORT}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WHARF=${WHARF_BIN:-$ROOT/target/debug/wharf}
# shellcheck source=tests/e2e/lib.sh
. "$HERE/lib.sh"
private_blob_info_cache "$0" "$@"
WORK=$(mktemp -d /tmp/wharf-e2e-docker.XXXXXX)
private_containers_config   # podman's temporary directory (its store is given by --root below)
export DOCKER_BUILDKIT=0
# shellcheck disable=SC1091 # checked on its own
source "$HERE/dockerd.sh"
OWN_DOCKERD=0
if [ -z "${DOCKER_HOST:-}" ]; then
  dockerd_start || exit 1
  OWN_DOCKERD=1
fi
export DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG"
echo '{"auths":{}}' > "$DOCKER_CONFIG/config.json"   # podman reads it too, and wants it to exist
PIDS=()

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cleanup() {
  [ -d "$WORK" ] || return 0
  docker rm -f wharf-ci >/dev/null 2>&1
  docker volume rm wharf-ci-data >/dev/null 2>&1
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  [ "$OWN_DOCKERD" = 1 ] && dockerd_stop
  grep -o "${WORK}[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r umount 2>/dev/null
  rm -rf "$WORK"
}

on_failure() { cleanup; }
trap cleanup EXIT


# The digest `docker push` reports ("v1: digest: sha256:... size: N").
push_digest() { docker push "$1" | tee /dev/stderr | sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' | tail -1; }

# The legacy builder's cache ignores the platform (a step cached for arm64 is reused for
# amd64), hence --no-cache.
build_scratch() { # DIR TAG [PLATFORM] : a busybox image with a unique layer
  mkdir -p "$1"
  cp /bin/busybox "$1/busybox"
  head -c 100000 /dev/urandom > "$1/payload"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY payload /payload\nCMD ["/bin/busybox", "sh"]\n' > "$1/Dockerfile"
  docker build -q --no-cache ${3:+--platform "$3"} -t "$2" "$1"
}

build_push_pull() {
  local id digest
  id=$(build_scratch "$WORK/hello" "$R/docker/hello:v1")
  digest=$(push_digest "$R/docker/hello:v1")
  [ -n "$digest" ]
  echo "$digest" > "$WORK/hello.digest"
  docker rmi "$R/docker/hello:v1"
  if docker image inspect "$id" >/dev/null 2>&1; then echo "the image is still there"; return 1; fi
  docker pull "$R/docker/hello:v1"
  [ "$(docker image inspect "$R/docker/hello:v1" --format '{{.Id}}')" = "$id" ]
  docker image inspect "$R/docker/hello:v1" --format '{{join .RepoDigests " "}}' | grep -q "$digest"
  # the registry serves the manifest docker pushed, byte for byte
  [ "sha256:$(curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/docker/hello/manifests/v1" | sha256sum | cut -d' ' -f1)" = "$digest" ]
}

pull_by_digest() {
  local digest
  digest=$(cat "$WORK/hello.digest")
  docker rmi -f "$R/docker/hello:v1" >/dev/null
  docker pull "$R/docker/hello@$digest"
  docker image inspect "$R/docker/hello@$digest" --format '{{.Id}}'
  # a retag pushed to another repository mounts the layers from the first
  docker tag "$R/docker/hello@$digest" "$R/docker/hello-copy:v1"
  docker push "$R/docker/hello-copy:v1" | tee "$WORK/mount.out"
  grep -q 'Mounted from docker/hello' "$WORK/mount.out"
}

platforms_and_manifest_lists() {
  local arch
  for arch in amd64 arm64; do
    build_scratch "$WORK/multi-$arch" "$R/docker/multi:$arch" "linux/$arch" >/dev/null
    docker push -q "$R/docker/multi:$arch"
  done
  docker manifest create --insecure "$R/docker/multi:v1" "$R/docker/multi:amd64" "$R/docker/multi:arm64"
  docker manifest annotate "$R/docker/multi:v1" "$R/docker/multi:arm64" --variant v8
  docker manifest push --insecure --purge "$R/docker/multi:v1"
  docker manifest inspect --insecure "$R/docker/multi:v1" > "$WORK/list.json"
  jq -e '.mediaType == "application/vnd.docker.distribution.manifest.list.v2+json"' "$WORK/list.json"
  jq -e '[.manifests[].platform.architecture] | sort == ["amd64", "arm64"]' "$WORK/list.json"
  jq -e '.manifests[] | select(.platform.architecture == "arm64") | .platform.variant == "v8"' "$WORK/list.json"
  docker manifest inspect --insecure --verbose "$R/docker/multi:v1" | jq -e 'length == 2'
  docker rmi -f "$R/docker/multi:amd64" "$R/docker/multi:arm64" >/dev/null
  docker pull --platform linux/arm64 "$R/docker/multi:v1"
  [ "$(docker image inspect "$R/docker/multi:v1" --format '{{.Architecture}}')" = arm64 ]
  docker rmi "$R/docker/multi:v1" >/dev/null
  docker pull --platform linux/amd64 "$R/docker/multi:v1"
  [ "$(docker image inspect "$R/docker/multi:v1" --format '{{.Architecture}}')" = amd64 ]
}

pull_oci_index() {
  # the same two images as an OCI index (skopeo converts and pushes the children too)
  skopeo copy -q --all --format oci --src-tls-verify=false --dest-tls-verify=false \
    "docker://$R/docker/multi:v1" "docker://$R/docker/oci-index:v1"
  curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$R/v2/docker/oci-index/manifests/v1" |
    jq -e '.mediaType == "application/vnd.oci.image.index.v1+json" and (.manifests | length) == 2'
  docker pull --platform linux/arm64 "$R/docker/oci-index:v1"
  [ "$(docker image inspect "$R/docker/oci-index:v1" --format '{{.Architecture}}')" = arm64 ]
}

login_logout() {
  local port dir
  port=$(free_port)
  dir=$WORK/auth
  mkdir -p "$dir"
  htpasswd -Bbn admin secretpassword > "$dir/htpasswd"
  env WHARF_HTTP_ADDR="127.0.0.1:$port" WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$dir/data" \
    REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_REALM="Registry Realm" REGISTRY_AUTH_HTPASSWD_PATH="$dir/htpasswd" \
    "$WHARF" serve > "$dir/wharf.log" 2>&1 &
  echo $! > "$WORK/auth.pid"
  local _
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" = 401 ]
  docker tag "$R/docker/hello@$(cat "$WORK/hello.digest")" "127.0.0.1:$port/private/hello:v1"
  if docker push "127.0.0.1:$port/private/hello:v1" > "$WORK/noauth.out" 2>&1; then
    echo "pushed without credentials"; return 1
  fi
  grep -qi 'no basic auth credentials\|unauthorized' "$WORK/noauth.out"
  if echo wrong | docker login -u admin --password-stdin "127.0.0.1:$port" 2>/dev/null; then
    echo "logged in with a wrong password"; return 1
  fi
  echo secretpassword | docker login -u admin --password-stdin "127.0.0.1:$port"
  docker push "127.0.0.1:$port/private/hello:v1"
  docker rmi "127.0.0.1:$port/private/hello:v1" >/dev/null
  docker pull "127.0.0.1:$port/private/hello:v1"
  docker logout "127.0.0.1:$port"
  docker rmi "127.0.0.1:$port/private/hello:v1" >/dev/null
  if docker pull "127.0.0.1:$port/private/hello:v1" > /dev/null 2>&1; then
    echo "pulled after logout"; return 1
  fi
  kill "$(cat "$WORK/auth.pid")"
}

image_build_push_pull() {
  local id digest
  id=$(bash "$ROOT/contrib/image/build.sh" --binary "$WHARF" --tool docker --tag wharf-ci:local)
  [ -n "$id" ]
  docker image inspect wharf-ci:local --format '{{json .Config}}' > "$WORK/config.json"
  jq -e '.User == "65532:65532"' "$WORK/config.json"
  jq -e '.ExposedPorts | has("5000/tcp")' "$WORK/config.json"
  jq -e '.Volumes | has("/var/lib/registry")' "$WORK/config.json"
  jq -e '.Entrypoint == ["wharf"] and .Cmd == ["serve"]' "$WORK/config.json"
  jq -e '.Healthcheck.Test == ["CMD", "wharf", "healthcheck"]' "$WORK/config.json"
  jq -e '.Labels["org.opencontainers.image.title"] == "wharf" and (.Labels["org.opencontainers.image.revision"] | length) > 0' "$WORK/config.json"
  docker tag wharf-ci:local "$R/wharf/wharf:ci"
  digest=$(push_digest "$R/wharf/wharf:ci")
  [ -n "$digest" ]
  docker rmi wharf-ci:local "$R/wharf/wharf:ci" >/dev/null
  if docker image inspect "$id" >/dev/null 2>&1; then echo "the image is still there"; return 1; fi
  docker pull "$R/wharf/wharf:ci"
  [ "$(docker image inspect "$R/wharf/wharf:ci" --format '{{.Id}}')" = "$id" ]
  docker image inspect "$R/wharf/wharf:ci" --format '{{join .RepoDigests " "}}' | grep -q "$digest"
  [ "$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$R/wharf/wharf:ci")" = "$digest" ]
  echo "wharf image $id pushed and pulled back as $R/wharf/wharf@$digest"
}

image_runs_like_registry2() {
  local port image=$R/wharf/wharf:ci
  port=$(free_port)
  docker volume create wharf-ci-data
  # as the seeds run registry:2 (their -p 5000:5000 becomes --network host: no bridge here)
  docker run -d --name wharf-ci --network host -v wharf-ci-data:/var/lib/registry \
    -e REGISTRY_HTTP_ADDR="127.0.0.1:$port" -e REGISTRY_STORAGE_DELETE_ENABLED=true "$image"
  local _
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/readyz" | jq -e '.status == "ready"'
  docker exec wharf-ci wharf healthcheck
  docker tag "$R/docker/hello@$(cat "$WORK/hello.digest")" "127.0.0.1:$port/through/container:v1"
  docker push "127.0.0.1:$port/through/container:v1"
  docker rmi "127.0.0.1:$port/through/container:v1" >/dev/null
  docker pull "127.0.0.1:$port/through/container:v1"
  curl -sf "http://127.0.0.1:$port/v2/_catalog" | jq -e '.repositories == ["through/container"]'
  # podman pulls every blob (docker already had them)
  podman pull -q --tls-verify=false --root "$WORK/podman/root" --runroot "$WORK/podman/run" \
    "127.0.0.1:$port/through/container:v1"
  local metrics
  metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
  echo "$metrics" | grep -E '^wharf_(pushes|pulls)_total'
  echo "$metrics" | grep -Eq '^wharf_pushes_total\{kind="manifest"\} [1-9]'
  echo "$metrics" | grep -Eq '^wharf_pulls_total\{kind="blob"\} [1-9]'
  # the data is in the volume, owned by the image's unprivileged user
  docker run --rm --network none -v wharf-ci-data:/var/lib/registry --entrypoint wharf "$image" \
    check-config >/dev/null
  [ "$(stat -c %u "$(docker volume inspect wharf-ci-data --format '{{.Mountpoint}}')/docker")" = 65532 ]
  # SIGTERM (docker stop) drains and exits 0
  docker stop -t 20 wharf-ci
  [ "$(docker inspect wharf-ci --format '{{.State.ExitCode}}')" = 0 ]
  docker logs wharf-ci 2>&1 | grep -q 'stopped'
  podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" rmi -a -f >/dev/null 2>&1 || true
  [ -z "${WHARF_IMAGE_FILE:-}" ] || echo "$image" > "$WHARF_IMAGE_FILE"
}

step "docker build FROM scratch, push, rmi, pull: same digest and ID" build_push_pull
step "docker pull by digest; push to another repository mounts" pull_by_digest
step "docker build --platform; manifest create/annotate/push/inspect" platforms_and_manifest_lists
step "docker pull --platform from an OCI index" pull_oci_index
if "$WHARF" check-config >/dev/null 2>&1 < /dev/null \
  && env REGISTRY_AUTH=htpasswd REGISTRY_AUTH_HTPASSWD_REALM=r REGISTRY_AUTH_HTPASSWD_PATH=/dev/null \
    "$WHARF" check-config >/dev/null 2>&1; then
  step "docker login (wrong password refused), push, pull, logout" login_logout
else
  skip "docker login/logout" "this build has no htpasswd auth: wharf check-config refuses REGISTRY_AUTH=htpasswd"
fi
step "image: build FROM scratch, push, pull back, same digest and ID" image_build_push_pull
step "image: docker run as registry:2, push/pull through it, stop" image_runs_like_registry2
cleanup
summary

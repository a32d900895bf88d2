#!/usr/bin/env bash
# Real clients against a registry on plain HTTP: skopeo, podman, buildah, umoci and ORAS.
#
#   bash tests/e2e/clients.sh HOST:PORT
#
# The registry must have deletes enabled. Every image is built here (no network beyond the
# registry). Stops at the first failing step; prints "N passed, N failed" last.
# Env: WHARF_LOG=<server log file> adds checks of what the server logged (mounts);
#      E2E_SKIP_REFERRERS=1 for registries without the referrers API (Distribution 2.8.2).
set -uo pipefail
R=${1:?usage: clients.sh HOST:PORT}
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${E2E_VENV:-/opt/wharf-e2e-venv}
# shellcheck source=tests/e2e/lib.sh
. "$HERE/lib.sh"
private_blob_info_cache "$0" "$@"   # c/image's blob-info cache: start from none, host's untouched
WORK=$(mktemp -d /tmp/wharf-e2e.XXXXXX)
trap clean_work EXIT
private_containers_config
T=--tls-verify=false
ST=(--src-tls-verify=false --dest-tls-verify=false)

cleanup() { clean_work; }

on_failure() { cleanup; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

build_images() {
  # one layer: a static busybox
  local c
  c=$(buildah from scratch)
  buildah copy "$c" /bin/busybox /bin/busybox
  buildah config --cmd '["/bin/busybox","sh"]' "$c"
  buildah commit -q "$c" localhost/e2e/small:latest
  # three layers, ~50 MB of random data
  c=$(buildah from scratch)
  for i in 1 2 3; do
    head -c 17000000 /dev/urandom > "$WORK/layer$i"
    buildah copy "$c" "$WORK/layer$i" "/data/layer$i"
    buildah commit -q "$c" localhost/e2e/big:latest
    c=$(buildah from localhost/e2e/big:latest)
  done
  # two platforms (nothing runs, so no emulation is needed)
  for arch in amd64 arm64; do
    c=$(buildah from --arch "$arch" scratch)
    head -c 200000 /dev/urandom > "$WORK/$arch.bin"
    buildah copy "$c" "$WORK/$arch.bin" /payload
    buildah commit -q "$c" "localhost/e2e/multi:$arch"
  done
  podman manifest create localhost/e2e/multi:list
  podman manifest add localhost/e2e/multi:list containers-storage:localhost/e2e/multi:amd64
  podman manifest add localhost/e2e/multi:list containers-storage:localhost/e2e/multi:arm64
  # an OCI layout of the big image, as a build pipeline would produce
  skopeo copy -q containers-storage:localhost/e2e/big:latest "oci:$WORK/layout:big"
  [ "$(buildah images -q | wc -l)" -ge 4 ]
}

skopeo_layout_roundtrip() {
  skopeo copy -q "${ST[@]}" "oci:$WORK/layout:big" "docker://$R/e2e/big:v1"
  # the manifest digest is preserved byte for byte
  local want got
  want=$(jq -r '.manifests[0].digest' "$WORK/layout/index.json")
  got=sha256:$(skopeo inspect $T --raw "docker://$R/e2e/big:v1" | sha256sum | cut -d' ' -f1)
  [ "$want" = "$got" ] || { echo "manifest digest $got, expected $want"; return 1; }
  skopeo copy -q --src-tls-verify=false "docker://$R/e2e/big:v1" "dir:$WORK/big-dir"
  local n=0 f
  for f in "$WORK"/big-dir/*; do
    case $(basename "$f") in manifest.json | version) continue ;; esac
    [ "$(sha "$f")" = "$(basename "$f")" ] || { echo "blob $f does not match its digest"; return 1; }
    n=$((n + 1))
  done
  [ "$n" -eq 4 ] || { echo "expected 4 blobs (config + 3 layers), got $n"; return 1; }
}

skopeo_inspect_and_tags() {
  skopeo inspect $T "docker://$R/e2e/big:v1" | jq -e '.Layers | length == 3'
  skopeo copy -q "${ST[@]}" "docker://$R/e2e/big:v1" "docker://$R/e2e/big:v2"
  skopeo list-tags $T "docker://$R/e2e/big" | jq -e '.Tags == ["v1","v2"]'
}

podman_push_pull() {
  local id
  id=$(podman image inspect localhost/e2e/small:latest --format '{{.Id}}')
  podman push -q $T localhost/e2e/small:latest "$R/e2e/small:v1"
  podman push -q $T --format v2s2 localhost/e2e/small:latest "$R/e2e/small:v2s2"
  podman rmi -f localhost/e2e/small:latest "$R/e2e/small:v1" >/dev/null 2>&1 || true
  podman pull -q $T "$R/e2e/small:v1"
  [ "$(podman image inspect "$R/e2e/small:v1" --format '{{.Id}}')" = "$id" ] || { echo "image id changed"; return 1; }
  curl -sf -I -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/e2e/small/manifests/v2s2" | grep -qi 'content-type: application/vnd.docker.distribution.manifest.v2+json'
}

podman_manifest_push_all() {
  podman manifest push -q --all $T localhost/e2e/multi:list "docker://$R/e2e/multi:v1"
  local raw digests d
  raw=$(skopeo inspect $T --raw "docker://$R/e2e/multi:v1")
  echo "$raw" | jq -e '.manifests | length == 2'
  digests=$(echo "$raw" | jq -r '.manifests[].digest')
  for d in $digests; do
    skopeo copy -q --src-tls-verify=false "docker://$R/e2e/multi@$d" "dir:$WORK/multi-${d#sha256:}"
  done
  podman pull -q $T --arch arm64 "$R/e2e/multi:v1"
  [ "$(podman image inspect "$R/e2e/multi:v1" --format '{{.Architecture}}')" = arm64 ]
}

skopeo_cross_repo_mount() {
  local before=0
  [ -n "${WHARF_LOG:-}" ] && before=$(wc -l < "$WHARF_LOG")
  skopeo copy --debug --all "${ST[@]}" "docker://$R/e2e/big:v1" "docker://$R/e2e/copied/big:v1" > "$WORK/mount.log" 2>&1
  local tries ok
  tries=$(grep -c 'Trying to mount' "$WORK/mount.log" || true)
  ok=$(grep -c 'mount OK' "$WORK/mount.log" || true)
  echo "mount attempts $tries, mounted $ok"
  # the three 17 MB layers are mounted (c/image uploads the small config as usual)
  if [ "$tries" -lt 3 ] || [ "$tries" != "$ok" ]; then
    grep -i mount "$WORK/mount.log"
    return 1
  fi
  if [ -n "${WHARF_LOG:-}" ]; then
    local new uploaded
    new=$(tail -n +"$((before + 1))" "$WHARF_LOG")
    [ "$(echo "$new" | grep -c 'blob mounted')" -ge 3 ] || { echo "server log shows no mounts"; return 1; }
    uploaded=$(echo "$new" | grep -E 'method=(PATCH|PUT) path=/v2/e2e/copied/big/blobs/uploads/' |
      sed -n 's/.*bytes_in=\([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}')
    echo "bytes uploaded to the destination: $uploaded"
    [ "$uploaded" -lt 1000000 ] || { echo "layer bytes were uploaded instead of mounted"; return 1; }
  fi
  skopeo inspect $T "docker://$R/e2e/copied/big:v1" | jq -e '.Layers | length == 3'
}

buildah_push() {
  buildah push -q $T localhost/e2e/big:latest "docker://$R/e2e/buildah:v1"
  skopeo inspect $T "docker://$R/e2e/buildah:v1" | jq -e '.Layers | length == 3'
}

umoci_no_media_type() {
  # umoci writes manifests without a mediaType field: the registry must take them by Content-Type
  umoci init --layout "$WORK/umoci"
  umoci new --image "$WORK/umoci:v1"
  mkdir -p "$WORK/umoci-bundle"
  umoci unpack --rootless --image "$WORK/umoci:v1" "$WORK/umoci-bundle"
  echo hello > "$WORK/umoci-bundle/rootfs/hello"
  umoci repack --image "$WORK/umoci:v1" "$WORK/umoci-bundle"
  skopeo copy -q "${ST[@]}" "oci:$WORK/umoci:v1" "docker://$R/e2e/umoci:v1"
  skopeo inspect $T "docker://$R/e2e/umoci:v1" | jq -e '.Layers | length == 1'
}

oras_artifacts() {
  skopeo copy -q "${ST[@]}" "docker://$R/e2e/small:v1" "docker://$R/e2e/artifacts:image"
  TMPDIR=$WORK "$VENV/bin/python" "$HERE/oras_flow.py" "$R" e2e/artifacts image
}

skopeo_delete() {
  skopeo delete $T "docker://$R/e2e/big:v2"
  # deleting by digest removes every tag pointing at it (v1 and v2 were the same manifest)
  if skopeo inspect $T --raw "docker://$R/e2e/big:v1" >/dev/null 2>&1; then
    echo "e2e/big:v1 still resolves after its manifest was deleted"; return 1
  fi
  skopeo list-tags $T "docker://$R/e2e/big" | jq -e '.Tags == []'
  curl -sf "http://$R/v2/_catalog" | jq -e '.repositories | index("e2e/small") != null'
}

step "build images locally (1 layer, 3 layers ~50 MB, 2 platforms)" build_images
step "skopeo: oci layout -> registry -> dir, digests verified" skopeo_layout_roundtrip
step "skopeo: inspect, copy to a second tag, list-tags" skopeo_inspect_and_tags
step "podman: push (OCI, v2s2), rmi, pull, same image id" podman_push_pull
step "podman: manifest push --all, pull each platform" podman_manifest_push_all
step "skopeo: copy --all across repositories mounts layers" skopeo_cross_repo_mount
step "buildah: push" buildah_push
step "umoci: layout without mediaType, pushed by skopeo" umoci_no_media_type
step "oras: artifactType, subject, referrers, pull, chunked" oras_artifacts
step "skopeo: delete (every tag of the manifest goes)" skopeo_delete
cleanup
summary

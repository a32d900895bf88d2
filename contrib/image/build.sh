#!/usr/bin/env bash
# Build the Wharf image from a binary built on this machine, with no base image and no network
# (the FROM scratch path; ../../Containerfile is the same image built from source):
#
#   cargo build --release --locked
#   bash contrib/image/build.sh [--binary target/release/wharf] [--tool docker|buildah] [--tag wharf:latest]
#
# docker uses its legacy builder (DOCKER_BUILDKIT=0: Debian has no buildx); buildah writes the
# Docker image format, which keeps the HEALTHCHECK. Prints the image ID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=$ROOT/target/release/wharf
TOOL=docker
TAG=wharf:latest
while [ $# -gt 0 ]; do
  case $1 in
    --binary) BIN=$2; shift 2 ;;
    --tool) TOOL=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    *) echo "usage: build.sh [--binary PATH] [--tool docker|buildah] [--tag TAG]" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release --locked first)" >&2; exit 1; }

# One image, two recipes: their metadata must not drift apart.
meta() { sed -n '/^ARG VERSION/,$p' "$1"; }
if ! diff <(meta "$ROOT/Containerfile") <(meta "$HERE/Containerfile.scratch") >&2; then
  echo "the metadata of Containerfile and contrib/image/Containerfile.scratch differ" >&2
  exit 1
fi

CTX=$(mktemp -d /tmp/wharf-image.XXXXXX)
trap 'rm -rf "$CTX"' EXIT
bash "$HERE/rootfs.sh" "$BIN" "$CTX" >&2
cp "$HERE/Containerfile.scratch" "$CTX/Containerfile"
args=(
  --build-arg "VERSION=$("$BIN" --version | awk '{print $2}')"
  --build-arg "REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  -t "$TAG" -f "$CTX/Containerfile"
)
case $TOOL in
  docker) DOCKER_BUILDKIT=0 docker build -q "${args[@]}" "$CTX" 2> >(grep -v -e DEPRECATED -e BuildKit -e 'environment-variable' >&2) ;;
  buildah) buildah bud --format docker -q "${args[@]}" "$CTX" ;;
  *) echo "--tool must be docker or buildah" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Install the real clients the end-to-end tests drive, on a fresh Debian 12 machine, as root.
# Idempotent: re-running only checks.
set -euo pipefail
VENV=${E2E_VENV:-/opt/wharf-e2e-venv}
pkgs=(skopeo podman buildah umoci jq busybox-static curl ca-certificates python3-venv docker-registry bc
  docker.io apache2-utils openssl)   # a real Docker engine (dockerd 20.10), htpasswd, certificates
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -f /etc/containers/policy.json ] || {
  mkdir -p /etc/containers
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' > /etc/containers/policy.json
}
if ! "$VENV/bin/python" -c 'import oras' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q oras==0.2.43
fi
echo "e2e clients ready: $(skopeo --version), $(podman --version), buildah $(buildah --version | awk '{print $3}'), oras-py 0.2.43, dockerd $(dockerd --version | awk '{print $3}' | tr -d ,)"

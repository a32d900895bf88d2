# shellcheck shell=bash
# A private Docker engine for the end-to-end scripts (source this file). Debian's docker.io
# (dockerd 20.10) starts by hand as root on these machines (no systemd) with iptables and the
# default bridge off (../shared/CLIENTS.md): containers then run with --network host or none.
# Its data, exec root and socket live in one temporary directory, so it never touches another
# engine on the machine and leaves nothing behind.
#
#   dockerd_start     sets DOCKERD_DIR and exports DOCKER_HOST
#   dockerd_stop      stops it (by its pid) and removes its directory

DOCKERD_DIR=
DOCKERD_PID=

dockerd_start() {
  DOCKERD_DIR=$(mktemp -d /tmp/wharf-dockerd.XXXXXX)
  dockerd --iptables=false --ip6tables=false --bridge=none \
    --data-root "$DOCKERD_DIR/data" --exec-root "$DOCKERD_DIR/exec" \
    --pidfile "$DOCKERD_DIR/dockerd.pid" -H "unix://$DOCKERD_DIR/docker.sock" \
    > "$DOCKERD_DIR/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  export DOCKER_HOST="unix://$DOCKERD_DIR/docker.sock"
  local _
  for _ in $(seq 150); do
    if docker version >/dev/null 2>&1; then
      echo "dockerd $(docker version --format '{{.Server.Version}}') at $DOCKER_HOST (pid $DOCKERD_PID)"
      return 0
    fi
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "dockerd did not start:"; tail -20 "$DOCKERD_DIR/dockerd.log"
  return 1
}

dockerd_stop() {
  [ -n "$DOCKERD_PID" ] || return 0
  # containers first, so their mounts go with them
  docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1
  kill "$DOCKERD_PID" 2>/dev/null
  local _
  for _ in $(seq 150); do
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill -9 "$DOCKERD_PID" 2>/dev/null
  grep -o "${DOCKERD_DIR}[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r umount -l 2>/dev/null
  rm -rf "$DOCKERD_DIR"
  DOCKERD_PID=
  return 0
}

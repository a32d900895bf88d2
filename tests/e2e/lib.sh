# shellcheck shell=bash
# Shared by the e2e scripts: the step runner and its counters, and the private state of the
# container tools. Source it first; the step and cleanup functions need WORK set.
#
#   private_blob_info_cache SCRIPT [ARGS...]
#                             first thing a script does: run SCRIPT again in a private mount
#                             namespace whose /var/lib/containers/cache is an empty tmpfs (below)
#   private_containers_config point podman, buildah and skopeo at storage and state under $WORK
#
#   step NAME CMD [ARGS...]   run CMD in a subshell with errexit on (in $STEP_DIR when set), its
#                             output kept in $WORK/step.log; print "ok NAME Ns", or on failure
#                             print "FAIL NAME", the log's tail, whatever the script's on_failure
#                             function prints (server logs, cleanup), the counts, and exit 1
#   skip NAME WHY             print a skipped step and why
#   summary                   print "N passed, N failed" (the last line of every script)
passed=0
failed=0

step() {
  local name=$1
  shift
  local t0=$SECONDS
  # Not `if ( set -e; ... )`: bash ignores errexit inside an if condition. A background subshell
  # keeps it, and `wait` returns its status.
  ( set -e; cd "${STEP_DIR:-.}"; "$@" ) > "$WORK/step.log" 2>&1 &
  if wait $!; then
    passed=$((passed + 1))
    printf 'ok   %-62s %3ss\n' "$name" $((SECONDS - t0))
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$name"
    tail -n 40 "$WORK/step.log" | sed 's/^/     | /'
    if declare -F on_failure >/dev/null; then
      on_failure
    fi
    summary
    exit 1
  fi
}

skip() { printf 'skip %-62s (%s)\n' "$1" "$2"; }

summary() { echo "$passed passed, $failed failed"; }

# stop_pid FILE: kill the process whose id FILE holds (it need not be our child: this works from
# subshells too), wait until it is gone, remove FILE. Nothing to do when FILE is missing.
stop_pid() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$1"
}

# clean_work: forget podman's images and buildah's containers, unmount whatever is mounted
# under $WORK (overlay stores), and remove $WORK.
clean_work() {
  [ -d "$WORK" ] || return 0   # done already (podman without its storage.conf would use the host's)
  podman rmi -a -f >/dev/null 2>&1 || true
  buildah rm --all >/dev/null 2>&1 || true
  grep -o "${WORK}[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r umount >/dev/null 2>&1 || true
  rm -rf "$WORK"
}

# c/image keeps root's blob-info cache in /var/lib/containers/cache (skopeo always uses it;
# podman and buildah use their storage root's): it decides HEADs and mounts from what earlier
# runs saw, so a test must start from none, and must neither read nor delete the host's. The
# script therefore runs in a mount namespace of its own with an empty tmpfs over that directory,
# which goes away with the namespace (a directory created as the mount point is removed after).
# Scripts started from inside it share it, and empty the cache instead.
BLOB_INFO_CACHE=/var/lib/containers/cache
private_blob_info_cache() {
  if [ "${WHARF_E2E_PRIVATE_CACHE:-}" = 1 ] &&
    grep -q " $BLOB_INFO_CACHE .* - tmpfs wharf-e2e-cache " /proc/self/mountinfo; then
    rm -f "$BLOB_INFO_CACHE"/blob-info-cache-*
    return 0
  fi
  local script d created=() rc=0 i
  script=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
  shift
  d=$BLOB_INFO_CACHE
  while [ ! -d "$d" ]; do created+=("$d"); d=$(dirname "$d"); done
  mkdir -p "$BLOB_INFO_CACHE"
  # shellcheck disable=SC2016 # expanded by the inner shell
  WHARF_E2E_PRIVATE_CACHE=1 unshare --mount --propagation private -- bash -c \
    'mount -t tmpfs -o mode=0700,size=64m wharf-e2e-cache "$1" && shift && exec bash "$@"' \
    _ "$BLOB_INFO_CACHE" "$script" "$@" || rc=$?
  for i in "${created[@]}"; do rmdir "$i" 2>/dev/null; done
  exit "$rc"
}

# Storage (overlay), podman's temporary directory (default /run/libpod) and its events log
# under $WORK, so nothing of the run is written to the host's container state.
private_containers_config() {
  export CONTAINERS_STORAGE_CONF=$WORK/storage.conf CONTAINERS_CONF=$WORK/containers.conf
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' \
    "$WORK/storage" "$WORK/run" > "$CONTAINERS_STORAGE_CONF"
  printf '[engine]\ntmp_dir = "%s"\nevents_logger = "file"\nevents_logfile_path = "%s"\n' \
    "$WORK/libpod" "$WORK/libpod/events.log" > "$CONTAINERS_CONF"
}

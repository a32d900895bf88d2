# shellcheck shell=bash
# Shared by the e2e scripts (source it once WORK is set): the step runner and its counters.
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
  podman rmi -a -f >/dev/null 2>&1 || true
  buildah rm --all >/dev/null 2>&1 || true
  grep -o "${WORK}[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r umount >/dev/null 2>&1 || true
  rm -rf "$WORK"
}

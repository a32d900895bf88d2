#!/usr/bin/env bash
# Garbage collection, Wharf vs Distribution 2.8.2 (Debian's docker-registry), on byte-identical
# copies of one generated store (Distribution's layout, which Wharf uses too).
#
#   bash bench/gc.sh [REPOS] [RUNS]      defaults: 1000 repositories (10,000 manifests,
#                                        110,000 blobs; 20% of the manifests deleted), 3 runs
#
# Needs: python3, docker-registry (apt-get install docker-registry), a release build of wharf
# (built if missing). Prints each run's seconds, the medians and the ratio Distribution/Wharf.
set -euo pipefail
cd "$(dirname "$0")/.."
REPOS=${1:-1000}
RUNS=${2:-3}
WHARF=${WHARF_BIN:-target/release/wharf}
DIST=${DIST_BIN:-/usr/bin/docker-registry}
[ -x "$DIST" ] || { echo "needs Distribution: apt-get install docker-registry" >&2; exit 1; }
[ -x "$WHARF" ] || cargo build --release --locked
WORK=$(mktemp -d /tmp/wharf-bench-gc.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

python3 bench/make_store.py "$WORK/base" --repos "$REPOS"
count_blobs() { find "$1/docker/registry/v2/blobs" -name data | wc -l; }
echo "blobs before: $(count_blobs "$WORK/base")"

cat > "$WORK/dist.yml" <<YML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $WORK/run}
YML

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
w_times=(); d_times=()
for i in $(seq "$RUNS"); do
  for who in wharf dist; do   # alternate A/B so drift on a noisy machine hits both
    rm -rf "$WORK/run"; cp -a "$WORK/base" "$WORK/run"; sync
    start=$(date +%s.%N)
    if [ "$who" = wharf ]; then
      WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$WORK/run" "$WHARF" garbage-collect > "$WORK/$who.out"
    else
      "$DIST" garbage-collect "$WORK/dist.yml" > "$WORK/$who.out" 2>&1
    fi
    t=$(echo "$(date +%s.%N) - $start" | bc)
    left=$(count_blobs "$WORK/run")
    echo "run $i $who: ${t}s, blobs left $left"
    if [ "$who" = wharf ]; then w_times+=("$t"); w_left=$left; else d_times+=("$t"); d_left=$left; fi
  done
done
[ "$w_left" = "$d_left" ] || echo "WARNING: Wharf left $w_left blobs, Distribution $d_left"
w=$(printf '%s\n' "${w_times[@]}" | median); d=$(printf '%s\n' "${d_times[@]}" | median)
echo
printf 'GC of %s repositories: Wharf median %.2fs, Distribution 2.8.2 median %.2fs, Distribution/Wharf = %.1fx\n' \
  "$REPOS" "$w" "$d" "$(echo "$d / $w" | bc -l)"

#!/usr/bin/env bash
# Side-by-side benchmark: Wharf (release build) and Distribution 2.8.2 (Debian's docker-registry) on
# loopback with the same storage settings (filesystem, fsync on, access logs off), with nginx serving
# the same bytes as the ceiling for downloads and dd (fdatasync) of the same bytes as the ceiling for
# pushes. Runs every workload on each registry in alternating rounds (wharf, dist, wharf, dist, ...),
# then prints the medians and ratios and writes them to bench/RESULTS.md.
#
#   bash bench/run.sh [ROUNDS]         default 3 rounds; as root on Debian (installs what it needs)
#
# Env: BENCH_SIZE_MIB (default 1024) for the big blob; BENCH_SECONDS (default 10) per wrk load and
# for the push flood. BENCH_ONLY=writes runs only the metadata writes (tag PUTs, the 1,000-layer
# manifest PUT, pushes under a pull flood) and the thread count after them, in a few minutes, and
# prints its table without writing bench/RESULTS.md (a partial table is not the results).
#
# The metadata writes: 2,000 tag PUTs of one manifest by 16 clients; PUTs of a manifest of 1,000
# tiny layers (median of 5, each new content, then one re-PUT of the first); pushes of 4 KiB images
# (layer POST + PUT, manifest PUT) by 4 clients while 64 connections GET a manifest. The thread
# count is the largest of /proc/PID/status Threads: read right after each heavy load.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${1:-3}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
SECS=${BENCH_SECONDS:-10}
ONLY=${BENCH_ONLY:-}
case $ONLY in '' | writes) ;; *) echo "BENCH_ONLY=$ONLY: unknown (known: writes)" >&2; exit 2 ;; esac
RANGE="bytes=$((SIZE_MIB << 18))-$(((SIZE_MIB << 19) - 1))"   # the second quarter of the blob

need=()
for p in nginx-light wrk docker-registry skopeo curl python3 bc; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -f /etc/containers/policy.json ] || {
  mkdir -p /etc/containers
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' > /etc/containers/policy.json
}
echo "== building (release)"
cargo build --release --locked --bins --examples 2>&1 | tail -1
WHARF=$ROOT/target/release/wharf
LOADGEN=$ROOT/target/release/examples/loadgen
h() { python3 "$ROOT/bench/helpers.py" "$@"; }

WORK=$(mktemp -d /tmp/wharf-bench.XXXXXX)
RESULTS=$WORK/results.txt
PID=
NGINX_PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
record() { echo "$1 $2 $3" >> "$RESULTS"; printf '  %-6s %-18s %s\n' "$1" "$2" "$3"; }
status_field() { awk "/^$2:/ {print \$2}" "/proc/$1/status"; }   # PID FIELD, from /proc/PID/status

if [ "$ONLY" != writes ]; then   # (the metadata writes need neither the files nor nginx)
  echo "== data: 3 x $SIZE_MIB MiB random files, a 50 MB 4-layer OCI image"
  for f in mono chunked pull; do head -c "$((SIZE_MIB << 20))" /dev/urandom > "$WORK/$f.bin"; done
  PULL_DIGEST=sha256:$(sha256sum "$WORK/pull.bin" | cut -d' ' -f1)
  h oci-image "$WORK/image" 50 4

  echo "== nginx (the ceiling for downloads)"
  NPORT=$(free_port)
  mkdir -p "$WORK/www" "$WORK/nginx"
  chmod 755 "$WORK"   # nginx's workers run as www-data
  ln "$WORK/pull.bin" "$WORK/www/pull.bin"
  cat > "$WORK/nginx/nginx.conf" <<CONF
daemon off; worker_processes 2; pid $WORK/nginx/pid; error_log stderr error;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy; fastcgi_temp_path $WORK/nginx/fcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  server { listen 127.0.0.1:$NPORT; root $WORK/www; } }
CONF
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
  NGINX_PID=$!
  sleep 0.5
  for _ in $(seq "$ROUNDS"); do
    s=$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$NPORT/pull.bin")
    record nginx pull "$(echo "$s / 1000000" | bc -l)"
    s=$(curl -s -o /dev/null -H "Range: $RANGE" -w '%{speed_download}' "http://127.0.0.1:$NPORT/pull.bin")
    record nginx pull_range "$(echo "$s / 1000000" | bc -l)"
  done
  kill "$NGINX_PID"; NGINX_PID=
fi

start() { # who port
  local who=$1 port=$2 out
  if [ "$who" = wharf ]; then
    out=$(WHARF_HTTP_ADDR="127.0.0.1:$port" WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$WORK/data-wharf" \
      WHARF_LOG_LEVEL=warn h startup "http://127.0.0.1:$port/v2/" -- "$WHARF" serve)
  else
    cat > "$WORK/dist.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $WORK/data-dist}
  delete: {enabled: true}
http: {addr: "127.0.0.1:$port"}
YML
    out=$(h startup "http://127.0.0.1:$port/v2/" -- docker-registry serve "$WORK/dist.yml")
  fi
  PID=$(echo "$out" | tail -1)
  record "$who" startup_ms "$(echo "$out" | awk '/^startup_ms/ {print $2}')"
  sleep 1
  record "$who" idle_rss_mib "$(echo "$(status_field "$PID" VmRSS) / 1024" | bc -l)"
}

# Make a push file's bytes new to the registry (its first 16 bytes name the registry and round):
# a registry that holds the blob already has only the upload to delete (unlinking 1 GiB costs
# ~0.3 s here), which is not what a push figure is meant to measure.
fresh() { printf '%-16s' "$1" | dd of="$2" conv=notrunc bs=16 count=1 status=none; }

# The disk's own speed for the same bytes: a buffered copy with fdatasync at the end; prints MB/s
disk_write() { # file
  local t0 t1
  t0=$(date +%s.%N)
  dd if="$1" of="$WORK/dd.out" bs=16M conv=fdatasync status=none
  t1=$(date +%s.%N)
  echo "$(stat -c %s "$1") / ($t1 - $t0) / 1000000" | bc -l
  rm -f "$WORK/dd.out"
}

# push a file monolithically: POST, then PUT the body streamed from disk; prints MB/s
mono_push() { # base repo file
  local loc d code s
  d=sha256:$(sha256sum "$3" | cut -d' ' -f1)
  loc=$(curl -si -X POST -H 'Content-Length: 0' "$1/v2/$2/blobs/uploads/" | tr -d '\r' | sed -n 's/^location: //Ip')
  case $loc in http*) ;; *) loc=$1$loc ;; esac
  case $loc in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  read -r code s < <(curl -s -o /dev/null -w '%{http_code} %{speed_upload}\n' -X PUT -H 'Content-Type: application/octet-stream' -T "$3" "$loc")
  [ "$code" = 201 ] || { echo "monolithic PUT answered $code" >&2; return 1; }
  echo "$s / 1000000" | bc -l
}


# The server's thread count right after a heavy load: THREADS keeps the largest of a round's readings
note_threads() {
  local n
  n=$(status_field "$PID" Threads)
  if [ "$n" -gt "$THREADS" ]; then THREADS=$n; fi
}

# The parts of a round; they run inside round() and use its who, i, port and base.
pushes_and_reads() {
  local s
  fresh "$who$i" "$WORK/mono.bin"; fresh "$who$i" "$WORK/chunked.bin"
  s=$(disk_write "$WORK/mono.bin"); record disk push_mono "$s"; record disk push_chunked "$s"
  record "$who" push_mono "$(mono_push "$base" "bench/mono$i" "$WORK/mono.bin")"
  record "$who" push_chunked "$("$LOADGEN" chunked "$base" "bench/chunked$i" "$WORK/chunked.bin" 16 | awk '{print $2}')"
  note_threads
  if [ "$i" = 1 ]; then mono_push "$base" bench/pull "$WORK/pull.bin" >/dev/null; fi
  # Steady state, as for nginx above: one unmeasured GET first, so the stored blob is in the page
  # cache (this VM's proactive reclaim evicts idle pages within minutes) for both registries.
  curl -s -o /dev/null "$base/v2/bench/pull/blobs/$PULL_DIGEST"
  s=$(curl -s -o /dev/null -w '%{speed_download}' "$base/v2/bench/pull/blobs/$PULL_DIGEST")
  record "$who" pull "$(echo "$s / 1000000" | bc -l)"
  s=$(curl -s -o /dev/null -H "Range: $RANGE" -w '%{speed_download}' "$base/v2/bench/pull/blobs/$PULL_DIGEST")
  record "$who" pull_range "$(echo "$s / 1000000" | bc -l)"
  record "$who" small_blobs "$("$LOADGEN" small-blobs "$base" "bench/small$i" 1000 4096 16 | awk '{print $2}')"
  note_threads
  if [ "$i" = 1 ]; then
    "$LOADGEN" seed-tags "$base" bench/tags 10000 16 >/dev/null
    "$LOADGEN" seed-repos "$base" bench/repos 1000 16
  fi
  wrk -t2 -c64 -d"${SECS}s" --latency -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$base/v2/bench/tags/manifests/t00042" > "$WORK/wrk.out"
  note_threads
  h wrk "$WORK/wrk.out" manifest_get | while read -r k v _; do record "$who" "$k" "$v"; done
  # wrk cannot drive HEAD (it waits for the body Content-Length announces): our own client does
  "$LOADGEN" load HEAD "$base/v2/bench/pull/blobs/$PULL_DIGEST" 64 "$SECS" > "$WORK/load.out"
  note_threads
  while read -r k v _; do record "$who" "blob_head_$k" "$v"; done < "$WORK/load.out"
}

# One loadgen workload (its arguments after the URL) whose every printed figure is recorded
loadgen_figures() { # workload args...
  "$LOADGEN" "$1" "$base" "${@:2}" > "$WORK/load.out"
  note_threads
  while read -r k v _; do record "$who" "$k" "$v"; done < "$WORK/load.out"
}

# Metadata writes (BENCH_ONLY=writes runs only these)
metadata_writes() {
  loadgen_figures tag-puts "bench/tagput$i" 2000 16
  loadgen_figures big-manifest "bench/big$i" 1000 5 16
  loadgen_figures push-flood "bench/flood$i" 64 4 "$SECS"
}

listings_and_skopeo() {
  local t0
  # an unmeasured pass first (directory caches warm, as for a registry in use), then the measured one
  "$LOADGEN" pages "$base" /v2/bench/tags/tags/list 100 > /dev/null
  "$LOADGEN" pages "$base" /v2/bench/tags/tags/list 100 > "$WORK/pages.out"
  record "$who" tags_page_ms "$(awk '/^ms_per_page/ {print $2}' "$WORK/pages.out")"
  record "$who" tags_all_ms "$(awk '/^ms_all_pages/ {print $2}' "$WORK/pages.out")"
  record "$who" tags_pages "$(awk '/^pages/ {print $2}' "$WORK/pages.out")"
  "$LOADGEN" pages "$base" /v2/_catalog 100 > /dev/null
  "$LOADGEN" pages "$base" /v2/_catalog 100 > "$WORK/pages.out"
  record "$who" catalog_page_ms "$(awk '/^ms_per_page/ {print $2}' "$WORK/pages.out")"
  record "$who" catalog_all_ms "$(awk '/^ms_all_pages/ {print $2}' "$WORK/pages.out")"
  record "$who" catalog_pages "$(awk '/^pages/ {print $2}' "$WORK/pages.out")"
  t0=$(date +%s.%N)
  skopeo copy -q --dest-tls-verify=false "oci:$WORK/image:bench" "docker://127.0.0.1:$port/bench/skopeo$i:v1"
  record "$who" skopeo_push_s "$(echo "$(date +%s.%N) - $t0" | bc -l)"
  rm -rf "$WORK/pulled"; t0=$(date +%s.%N)
  skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$port/bench/skopeo$i:v1" "dir:$WORK/pulled"
  record "$who" skopeo_pull_s "$(echo "$(date +%s.%N) - $t0" | bc -l)"
}

round() { # who round
  local who=$1 i=$2 port base
  port=$(free_port); base=http://127.0.0.1:$port
  echo "== round $i: $who"
  start "$who" "$port"
  THREADS=0
  if [ "$ONLY" != writes ]; then pushes_and_reads; fi
  metadata_writes
  record "$who" threads "$THREADS"
  if [ "$ONLY" != writes ]; then listings_and_skopeo; fi
  record "$who" peak_rss_mib "$(echo "$(status_field "$PID" VmHWM) / 1024" | bc -l)"
  kill "$PID"; while kill -0 "$PID" 2>/dev/null; do sleep 0.05; done; PID=
}

for i in $(seq "$ROUNDS"); do
  round wharf "$i"
  round dist "$i"
done

MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, $(uname -sr)"
echo
if [ "$ONLY" = writes ]; then OUT=-; else OUT=bench/RESULTS.md; fi
h table "$RESULTS" "$OUT" "$MACHINE"

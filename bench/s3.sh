#!/usr/bin/env bash
# Push/pull throughput and manifest GET rate: Wharf on S3 vs Wharf on the filesystem, and vs
# Distribution 2.8.2 (Debian's docker-registry) on the same S3 server (SeaweedFS on loopback,
# started here as in tests/s3/seaweedfs.sh). Blobs are pushed as docker does (POST, one streamed
# PATCH, closing PUT ?digest=), pulled with GET, and one manifest is fetched repeatedly over one
# keep-alive connection. Blob GETs go through the registry (storage.redirect disabled on both).
# Then one manifest is PUT under TAG_PUTS new tags by 16 parallel clients (bench/loadgen.rs tag-puts).
#
#   bash bench/s3.sh [RUNS] [BLOB_MIB] [BLOBS] [MANIFEST_GETS] [TAG_PUTS]
#                    defaults: 3 runs, 3 blobs of 64 MiB, 500 manifest GETs, 1,000 tag PUTs
# Needs: curl, python3, docker-registry (apt-get install docker-registry), a release build of wharf
# and of the loadgen example (built if missing; WHARF_BIN and LOADGEN_BIN override). Prints every
# run, then medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
MIB=${2:-64}
BLOBS=${3:-3}
GETS=${4:-500}
TAGS=${5:-1000}
WHARF=${WHARF_BIN:-target/release/wharf}
LOADGEN=${LOADGEN_BIN:-target/release/examples/loadgen}
DIST=${DIST_BIN:-/usr/bin/docker-registry}
[ -x "$DIST" ] || { echo "needs Distribution: apt-get install docker-registry" >&2; exit 1; }
if [ ! -x "$WHARF" ] || [ ! -x "$LOADGEN" ]; then cargo build --release --locked --bins --examples; fi
export SEAWEED_PORT_BASE=${SEAWEED_PORT_BASE:-5700}
# shellcheck disable=SC1091  # (shellcheck -x follows it)
. tests/s3/seaweedfs.sh
WORK=$(mktemp -d /tmp/wharf-bench-s3.XXXXXX)
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=; }
trap 'stop; seaweed_stop; rm -rf "$WORK"' EXIT
seaweed_start wharf-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

for i in $(seq "$BLOBS"); do head -c "$((MIB << 20))" /dev/urandom > "$WORK/blob$i"; done
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/config"

start() { # start <who> <run>: wharf-fs | wharf-s3 | dist-s3, on a fresh store
  local who=$1 run=$2 port
  port=$(free_port)
  R=http://127.0.0.1:$port
  case $who in
    wharf-fs)
      WHARF_HTTP_ADDR=127.0.0.1:$port WHARF_LOG_LEVEL=warn \
        WHARF_STORAGE_FILESYSTEM_ROOTDIRECTORY="$WORK/fs-$run" "$WHARF" serve > "$WORK/$who.log" 2>&1 & ;;
    wharf-s3)
      WHARF_HTTP_ADDR=127.0.0.1:$port WHARF_LOG_LEVEL=warn REGISTRY_STORAGE_S3_BUCKET="$S3_BUCKET" \
        REGISTRY_STORAGE_S3_REGIONENDPOINT="$S3_ENDPOINT" REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true \
        REGISTRY_STORAGE_S3_ROOTDIRECTORY="wharf-$run" REGISTRY_STORAGE_REDIRECT_DISABLE=true \
        "$WHARF" serve > "$WORK/$who.log" 2>&1 & ;;
    dist-s3)
      cat > "$WORK/dist.yml" <<YML
version: 0.1
log: {level: error}
http: {addr: 127.0.0.1:$port}
storage:
  redirect: {disable: true}
  s3:
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    region: $AWS_REGION
    regionendpoint: $S3_ENDPOINT
    bucket: $S3_BUCKET
    rootdirectory: /dist-$run
    secure: false
    v4auth: true
YML
      # (its AWS SDK refuses to start when AWS_CA_BUNDLE is set, and the endpoint is plain http)
      env -u AWS_CA_BUNDLE "$DIST" serve "$WORK/dist.yml" > "$WORK/$who.log" 2>&1 & ;;
  esac
  PID=$!
  for _ in $(seq 200); do curl -sf "$R/v2/" >/dev/null && return 0; sleep 0.05; done
  echo "$who did not start"; tail -20 "$WORK/$who.log"; exit 1
}

push_blob() { # push_blob <file>: POST, one PATCH with the whole file, PUT ?digest=
  local f=$1 d loc
  d=sha256:$(sha256sum "$f" | cut -d' ' -f1)
  loc=$(curl -s -D - -o /dev/null -X POST "$R/v2/bench/blobs/uploads/" | tr -d '\r' | sed -n 's/^location: //Ip')
  [ -n "$loc" ] || { echo "POST failed ($R); log:" >&2; tail -5 "$WORK"/*.log >&2; exit 1; }
  case $loc in http*) ;; *) loc=$R$loc ;; esac
  loc=$(curl -sf -D - -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' --data-binary "@$f" "$loc" \
    | tr -d '\r' | sed -n 's/^location: //Ip')
  case $loc in http*) ;; *) loc=$R$loc ;; esac
  case $loc in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$loc")" = 201 ] || { echo "push failed ($R)"; exit 1; }
  echo "$d"
}

declare -A push pull mget tput
for run in $(seq "$RUNS"); do
  for who in wharf-fs wharf-s3 dist-s3; do   # interleaved so drift on a noisy machine hits all
    start "$who" "$run"
    t=$(now); digests=()
    for i in $(seq "$BLOBS"); do digests+=("$(push_blob "$WORK/blob$i")"); done
    p=$(echo "$BLOBS * $MIB / ($(now) - $t)" | bc -l)
    t=$(now)
    for d in "${digests[@]}"; do curl -sf -o /dev/null "$R/v2/bench/blobs/$d"; done
    g=$(echo "$BLOBS * $MIB / ($(now) - $t)" | bc -l)
    cd_=$(push_blob "$WORK/config")
    printf '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":%s,"digest":"%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":%s,"digest":"%s"}]}' \
      "$(stat -c %s "$WORK/config")" "$cd_" "$((MIB << 20))" "${digests[0]}" > "$WORK/manifest"
    curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' \
      --data-binary "@$WORK/manifest" "$R/v2/bench/manifests/v1"
    : > "$WORK/urls"
    for _ in $(seq "$GETS"); do echo "url = \"$R/v2/bench/manifests/v1\"" >> "$WORK/urls"; echo "output = /dev/null" >> "$WORK/urls"; done
    t=$(now)
    curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' -K "$WORK/urls"
    m=$(echo "$GETS / ($(now) - $t)" | bc -l)
    tp=$("$LOADGEN" tag-puts "$R" bench/tags "$TAGS" 16 | awk '/^tag_puts_per_s/ {print $2}')
    stop
    printf 'run %s %-8s push %7.1f MiB/s  pull %7.1f MiB/s  manifest GET %7.0f/s  tag PUT %6.0f/s\n' \
      "$run" "$who" "$p" "$g" "$m" "$tp"
    push[$who]+="$p "; pull[$who]+="$g "; mget[$who]+="$m "; tput[$who]+="$tp "
  done
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
echo
echo "medians over $RUNS runs ($BLOBS blobs of $MIB MiB, $GETS manifest GETs, $TAGS tag PUTs by 16 clients):"
for who in wharf-fs wharf-s3 dist-s3; do
  printf '  %-8s push %7.1f MiB/s  pull %7.1f MiB/s  manifest GET %7.0f/s  tag PUT %6.0f/s\n' "$who" \
    "$(med "${push[$who]}")" "$(med "${pull[$who]}")" "$(med "${mget[$who]}")" "$(med "${tput[$who]}")"
done
ratio() { echo "$(med "$1") / $(med "$2")" | bc -l; }
printf 'Wharf S3 / Wharf filesystem:  push %.2fx  pull %.2fx  manifest GET %.2fx  tag PUT %.2fx\n' \
  "$(ratio "${push[wharf-s3]}" "${push[wharf-fs]}")" "$(ratio "${pull[wharf-s3]}" "${pull[wharf-fs]}")" \
  "$(ratio "${mget[wharf-s3]}" "${mget[wharf-fs]}")" "$(ratio "${tput[wharf-s3]}" "${tput[wharf-fs]}")"
printf 'Wharf S3 / Distribution S3:   push %.2fx  pull %.2fx  manifest GET %.2fx  tag PUT %.2fx\n' \
  "$(ratio "${push[wharf-s3]}" "${push[dist-s3]}")" "$(ratio "${pull[wharf-s3]}" "${pull[dist-s3]}")" \
  "$(ratio "${mget[wharf-s3]}" "${mget[dist-s3]}")" "$(ratio "${tput[wharf-s3]}" "${tput[dist-s3]}")"

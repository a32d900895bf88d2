#!/usr/bin/env bash
# Lay out the Wharf image's root filesystem from a built binary, for a FROM scratch image:
#
#   bash contrib/image/rootfs.sh BINARY OUT
#
# OUT/rootfs   /usr/local/bin/wharf (debug info stripped), /bin/registry -> wharf (so
#              `docker exec <c> bin/registry garbage-collect ...` works as with registry:2),
#              the shared libraries `ldd` names (a glibc binary runs without a base image),
#              /etc/wharf/config.toml, /etc/docker/registry/config.yml, /etc/passwd with the
#              unprivileged user wharf (65532), CA certificates when the host has them
# OUT/data     an empty directory, copied to /var/lib/registry owned by 65532
set -euo pipefail
BIN=${1:?usage: rootfs.sh BINARY OUT}
OUT=${2:?usage: rootfs.sh BINARY OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
R=$OUT/rootfs
rm -rf "$OUT"
mkdir -p "$R/usr/local/bin" "$R/bin" "$R/etc/wharf" "$R/etc/docker/registry" "$R/tmp" "$OUT/data"
chmod 1777 "$R/tmp"
cp "$BIN" "$R/usr/local/bin/wharf"
strip --strip-debug "$R/usr/local/bin/wharf" 2>/dev/null || true
chmod 0755 "$R/usr/local/bin/wharf"
ln -s /usr/local/bin/wharf "$R/bin/registry"

# The dynamic loader and every library the binary links, at the paths ldd resolves them to.
libs=$(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
[ -n "$libs" ] || { echo "ldd found no libraries in $BIN (a static binary needs none; ok)"; }
for lib in $libs; do
  mkdir -p "$R$(dirname "$lib")"
  cp -L "$lib" "$R$lib"
done

install -m 0644 "$HERE/config.toml" "$R/etc/wharf/config.toml"
install -m 0644 "$HERE/config.yml" "$R/etc/docker/registry/config.yml"
printf 'root:x:0:0:root:/root:/sbin/nologin\nwharf:x:65532:65532:wharf:/var/lib/registry:/sbin/nologin\n' > "$R/etc/passwd"
printf 'root:x:0:\nwharf:x:65532:\n' > "$R/etc/group"
printf 'hosts: files dns\n' > "$R/etc/nsswitch.conf"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$R/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/"
fi
echo "rootfs: $(du -sh "$R" | cut -f1) in $R ($(echo "$libs" | wc -w) shared libraries)"

#!/bin/sh
# Makes debian:bookworm-slim from Debian's archive when the Docker daemon has no such image
# and no registry can be pulled from. Elsewhere `docker build` pulls the real one and this
# script does nothing. Needs debootstrap and root.
set -eu

IMAGE=debian:bookworm-slim
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The CA bundle the images' apt and pip trust: this machine's, so that they reach the
# archive and PyPI through whatever this machine's own connections go through.
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
	exit 0
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT

echo "base-image: $IMAGE not found; making it with debootstrap from $MIRROR" >&2
debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/dev/null

# The same sources as the published image, security updates included.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# Trusted before and after the images install the ca-certificates package: its
# update-ca-certificates rebuilds the bundle from /usr/local/share/ca-certificates too.
mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
cp "$CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/local-bundle.crt"

# Slim, like the published image: no package lists, no downloaded packages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb

tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "base-image: made $IMAGE" >&2

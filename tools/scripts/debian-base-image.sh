#!/usr/bin/env bash
# Builds a Debian 12 base image from Debian's own mirror, for machines that reach the apt mirrors
# but not Docker Hub (the Dockerfile's FROM debian:12-slim cannot be pulled there).
# usage (root): tools/scripts/debian-base-image.sh [TAG]     (default TAG: debian:12-slim)
# debootstrap --variant=minbase bookworm, then trimmed as the official slim image is (no docs,
# man pages or locales; apt caches cleaned), and imported with docker import.  Needs debootstrap.
set -eu
tag=${1:-debian:12-slim}
mirror=${MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
cat >"$root/etc/apt/sources.list" <<EOT
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOT
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/locale/*' \
    'path-include /usr/share/locale/locale.alias' >"$root/etc/dpkg/dpkg.cfg.d/docker"
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOT
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -type d -empty -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/usr/share/groff/* \
    "$root"/usr/share/lintian/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/lib/apt/lists/* "$root"/var/log/*
tar -C "$root" -c . | docker import - "$tag" >/dev/null
echo "imported $tag ($(docker image inspect "$tag" --format '{{.Size}}') bytes)"

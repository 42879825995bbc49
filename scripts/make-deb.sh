#!/usr/bin/env bash
# make-deb.sh — builds the Debian package of the node with dpkg-deb (`make deb`).
#   scripts/make-deb.sh [BUILD_DIR] [OUT_DIR]     (defaults: build, dist)
# The package (p2pcore_<version>_<arch>.deb) holds /usr/bin/p2p (stripped), the systemd
# unit /lib/systemd/system/p2p@.service, example configs /etc/p2p/{coordinator,worker}.yaml
# (conffiles), the service-author headers and the docs. Its Depends come from the
# binary's libraries (dpkg-shlibdeps). The version is the project's (CMakeLists.txt).
# Nothing is created on the target at install time but the files themselves: the unit
# runs as a dynamic user with its state in /var/lib/p2p/<instance> (StateDirectory).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
out=${2:-$repo/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(sed -n 's/^project(p2pcore VERSION \([0-9][0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
[[ -n "$version" ]] || { echo "make-deb: no version in CMakeLists.txt" >&2; exit 1; }
arch=$(dpkg --print-architecture)
pkg=p2pcore
[[ -x "$build/p2p" ]] || { echo "make-deb: $build/p2p is not built (make build)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"

# the files, as `make install` lays them out, under /usr
DESTDIR="$root" cmake --install "$build" --prefix /usr --strip >/dev/null
docdir=/usr/share/doc/$pkg
install -d "$root$docdir" "$root/lib/systemd/system" "$root/etc/p2p"
for d in README.md docs/deploy.md docs/security.md docs/cluster.md docs/configuration.md docs/services.md docs/vault.md; do
  [[ -f "$repo/$d" ]] && install -m 0644 "$repo/$d" "$root$docdir/"
done
sed -e "s|@BINDIR@|/usr/bin|g" -e "s|@DOCDIR@|$docdir|g" "$repo/packaging/systemd/p2p@.service.in" \
  > "$root/lib/systemd/system/p2p@.service"
chmod 0644 "$root/lib/systemd/system/p2p@.service"
install -m 0644 "$repo/packaging/examples/coordinator.yaml" "$repo/packaging/examples/worker.yaml" "$root/etc/p2p/"
cat > "$root$docdir/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: p2pcore
Comment: built from the p2pcore source tree by scripts/make-deb.sh
COPY
gzip -9n -c > "$root$docdir/changelog.Debian.gz" <<CHANGES
$pkg ($version) unstable; urgency=medium

  * Built from the p2pcore source tree (scripts/make-deb.sh).

 -- p2pcore maintainers <p2pcore@localhost>  $(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(stat -c %Y "$repo/CMakeLists.txt")}")
CHANGES

# dependencies from the binary's libraries
mkdir -p "$work/shl/debian"
touch "$work/shl/debian/control"
depends=$(cd "$work/shl" && dpkg-shlibdeps -O "$root/usr/bin/p2p" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[[ -n "$depends" ]] || { echo "make-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: p2pcore maintainers <p2pcore@localhost>
Installed-Size: $size
Depends: $depends
Recommends: python3
Section: net
Priority: optional
Description: p2pcore cluster node (p2p)
 One p2p process per machine: nodes find each other by gossip (SWIM), call
 each other's services over JSON-RPC on HTTPS/HTTP2 with mutual TLS; one
 coordinator issues certificates, collects logs and serves a dashboard.
 .
 Run a node with the systemd unit: systemctl start p2p@worker reads
 /etc/p2p/worker.yaml (see /usr/share/doc/p2pcore/deploy.md).
CONTROL
printf '/etc/p2p/coordinator.yaml\n/etc/p2p/worker.yaml\n' > "$root/DEBIAN/conffiles"
install -m 0755 "$repo/packaging/debian/postinst" "$repo/packaging/debian/prerm" "$repo/packaging/debian/postrm" \
  "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
  > "$root/DEBIAN/md5sums"

deb="$out/${pkg}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"

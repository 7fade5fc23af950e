#!/usr/bin/env bash
# Builds the (native) Debian package from a `make install` tree: mkdeb.sh STAGE OUTDIR VERSION
# STAGE holds the installed files (PREFIX=/usr, DESTDIR=STAGE); this adds
# DEBIAN/ (control with computed Depends, conffiles, maintainer scripts,
# md5sums), the copyright and changelog, and runs dpkg-deb. Prints the path.
set -euo pipefail

stage=$1 outdir=$2 version=$3
here=$(cd "$(dirname "$0")" && pwd)
arch=$(dpkg --print-architecture)
stage=$(cd "$stage" && pwd)
bin=$stage/usr/bin/hypercore

# Shared-library dependencies as Debian computes them: dpkg-shlibdeps finds
# each library's package (dpkg -S) and the minimum version its symbols need.
# It wants a debian/control beside it, so it runs in a scratch directory.
shlib_depends() {
	local tmp
	tmp=$(mktemp -d)
	mkdir "$tmp/debian"
	printf 'Source: hypercore\n\nPackage: hypercore\nArchitecture: %s\n' "$arch" \
		>"$tmp/debian/control"
	(cd "$tmp" && dpkg-shlibdeps -O -e "$bin" 2>/dev/null) |
		sed -n 's/^shlibs:Depends=//p'
	rm -rf "$tmp"
}

# Without dpkg-shlibdeps (dpkg-dev): the packages that own the libraries ldd
# resolves, unversioned.
ldd_depends() {
	ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
		dpkg -S "$lib" 2>/dev/null || dpkg -S "$(realpath "$lib")" 2>/dev/null ||
			dpkg -S "/usr$lib" 2>/dev/null || true
	done | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g'
}

libs=$(shlib_depends)
[[ -n $libs ]] || libs=$(ldd_depends)
[[ -n $libs ]] || { echo "mkdeb.sh: no library dependencies found for $bin" >&2; exit 1; }
# What the agent runs rather than links: the embedded containerd and its
# runtime, the CNI plugins (ptp, host-local, firewall) and the iptables the
# firewall plugin calls.
runs="containerd, runc, containernetworking-plugins, iptables"

rm -rf "$stage/DEBIAN"
mkdir -p "$stage/DEBIAN" "$stage/usr/share/doc/hypercore"
install -m 0644 "$here/deb/copyright" "$stage/usr/share/doc/hypercore/copyright"
sed "s/@VERSION@/$version/" "$here/deb/changelog" | gzip -9n \
	>"$stage/usr/share/doc/hypercore/changelog.gz"
chmod 0644 "$stage/usr/share/doc/hypercore/changelog.gz"
for s in postinst prerm postrm; do
	install -m 0755 "$here/deb/$s" "$stage/DEBIAN/$s"
done
(cd "$stage" && find etc -type f | sed 's|^|/|') >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	-e "s/@DEPENDS@/$libs, $runs/" "$here/deb/control" >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
	sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

mkdir -p "$outdir"
out=$outdir/hypercore_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"

#!/usr/bin/env bash
# Builds dist/zkgate_<version>_<arch>.deb with Debian's own dpkg-deb from a staged tree:
#   /usr/bin/zkgate, /etc/zkgate/zkgate.yaml (a conffile), the systemd unit, the sysusers
#   file, the maintainer scripts, and the docs under /usr/share/doc/zkgate.
# VERSION (default: from git) and GOARCH (default: this machine's) may be set:
#   GOARCH=arm64 bash packaging/build-deb.sh
# Prints the path of the package it wrote on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dpkg-deb >/dev/null || { echo "build-deb: dpkg-deb missing (apt-get install dpkg)" >&2; exit 1; }

if [ -z "${VERSION:-}" ]; then
	# A tag v1.2.3 is 1.2.3; commits past it are 1.2.3+4.gabcdef; with no tag, the commit's
	# date and hash under 0.0.0 (~ sorts before any release).
	if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
		VERSION=$(echo "${d#v}" | sed -E 's/-([0-9]+)-g/+\1.g/')
	else
		VERSION="0.0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d).$(git rev-parse --short=12 HEAD)"
	fi
fi
goarch=${GOARCH:-$(go env GOARCH)}
case $goarch in
	amd64 | arm64 | riscv64 | ppc64le | s390x) arch=$goarch ;;
	386) arch=i386 ;;
	arm) arch=armhf ;;
	*) echo "build-deb: no Debian architecture for GOARCH=$goarch" >&2; exit 1 ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/DEBIAN" "$root/usr/bin" "$root/etc/zkgate" "$root/usr/lib/systemd/system" \
	"$root/usr/lib/sysusers.d" "$root/usr/share/doc/zkgate/examples"

echo "build-deb: go build (linux/$goarch, version $VERSION)" >&2
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
	-o "$root/usr/bin/zkgate" ./cmd/zkgate

install -m 0644 packaging/debian/zkgate.yaml "$root/etc/zkgate/zkgate.yaml"
install -m 0644 packaging/debian/zkgate.service "$root/usr/lib/systemd/system/zkgate.service"
install -m 0644 packaging/debian/zkgate.sysusers "$root/usr/lib/sysusers.d/zkgate.conf"
install -m 0644 README.md docs/ARCHITECTURE.md docs/OPERATIONS.md "$root/usr/share/doc/zkgate/"
install -m 0644 testdata/zkgate.yaml "$root/usr/share/doc/zkgate/examples/zkgate.yaml"
install -m 0644 deploy/prometheus/zkgate-alerts.yml "$root/usr/share/doc/zkgate/examples/zkgate-alerts.yml"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	packaging/debian/control.in >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
	sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

mkdir -p dist
out=dist/zkgate_${VERSION}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >&2
echo "$out"

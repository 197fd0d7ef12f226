#!/usr/bin/env bash
# Checks a zkgate .deb (what .ci/run runs after make package):
#   check-deb.sh dist/zkgate_<version>_<arch>.deb DIR
# DIR receives the extracted package (DIR/usr/bin/zkgate is then the packaged binary).
#  1. its contents (dpkg-deb -c) hold the binary, the conffile, the unit and the sysusers file,
#     and the conffile is declared;
#  2. the maintainer scripts parse (sh -n);
#  3. the packaged binary runs (zkgate version, with the package's version) and the packaged
#     configuration validates (zkgate serve --config ... --check);
#  4. as root, where no zkgate package is installed already: dpkg -i (the postinst makes the
#     zkgate user), systemd-analyze verify on the installed unit, the configuration checked
#     as the zkgate user (as ExecStartPre does), then dpkg --purge. systemd-analyze verify
#     needs no running systemd; the unit's sandbox itself is only exercised where systemd
#     is PID 1 (not in a container).
set -euo pipefail
deb=$1 dir=$2
say() { echo "check-deb: $*"; }

say "dpkg-deb -c $deb"
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/zkgate ./etc/zkgate/zkgate.yaml ./usr/lib/systemd/system/zkgate.service \
	./usr/lib/sysusers.d/zkgate.conf ./usr/share/doc/zkgate/OPERATIONS.md; do
	grep -q " $f\$" <<<"$contents" || { say "FAIL: $f is not in the package"; echo "$contents"; exit 1; }
done
grep -q '^-rwxr-xr-x root/root .* ./usr/bin/zkgate$' <<<"$contents" || { say "FAIL: /usr/bin/zkgate is not root-owned 0755"; exit 1; }
dpkg-deb -f "$deb" Package Version Architecture
[ "$(dpkg-deb -I "$deb" conffiles)" = /etc/zkgate/zkgate.yaml ] || { say "FAIL: conffiles is not /etc/zkgate/zkgate.yaml"; exit 1; }

dpkg-deb -R "$deb" "$dir"
for s in postinst prerm postrm; do sh -n "$dir/DEBIAN/$s"; done

version=$(dpkg-deb -f "$deb" Version)
say "$dir/usr/bin/zkgate version"
got=$("$dir/usr/bin/zkgate" version)
echo "$got"
[[ $got == "zkgate $version "* ]] || { say "FAIL: the binary says '$got', the package $version"; exit 1; }
say "zkgate serve --config etc/zkgate/zkgate.yaml --check"
"$dir/usr/bin/zkgate" serve --config "$dir/etc/zkgate/zkgate.yaml" --check

if [ "$(id -u)" != 0 ]; then
	say "not root: the install round trip and systemd-analyze verify are left out"
	exit 0
fi
if dpkg-query -W -f '${Status}' zkgate 2>/dev/null | grep -q installed; then
	say "a zkgate package is installed here already: the install round trip and systemd-analyze verify are left out"
	exit 0
fi
say "dpkg -i (then systemd-analyze verify, the check as user zkgate, dpkg --purge)"
dpkg -i "$deb"
dpkg -i "$deb" # again: the upgrade path of the maintainer scripts
trap 'dpkg --purge zkgate >/dev/null || true' EXIT
getent passwd zkgate >/dev/null || { say "FAIL: the postinst made no zkgate user"; exit 1; }
systemd-analyze verify zkgate.service
systemd-analyze security --offline=true zkgate.service --no-pager 2>/dev/null | tail -1 || true
runuser -u zkgate -- /usr/bin/zkgate serve --config /etc/zkgate/zkgate.yaml --check
dpkg --purge zkgate
trap - EXIT
[ ! -e /usr/bin/zkgate ] && [ ! -e /etc/zkgate ] || { say "FAIL: dpkg --purge left /usr/bin/zkgate or /etc/zkgate"; exit 1; }
say "ok"

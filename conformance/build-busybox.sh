#!/usr/bin/env bash
# build-busybox.sh OUT WORKDIR builds upstream busybox 1.37.0 as one static
# binary at OUT, for the conformance kit's busybox image.
#
# registry.k8s.io/e2e-test-images/busybox:1.37.0-2 is the docker library's
# busybox:1.37.0, built from busybox.net's source. Debian's busybox-static
# (what the rest of the project's tests use) reverts upstream's ash change
# that keeps environment names which are not shell identifiers ("data-1",
# "1-data-1"), and the ConfigMap and Secret environment specs print such
# names with `sh -c env`. So the kit builds upstream's source, configured
# like the docker library's image: defconfig with its changes, plus static
# (its glibc variant links dynamically and copies glibc's libraries; one
# static binary needs neither).
#
# The source is the Debian archive's copy of busybox.net's tarball
# (busybox_1.37.0.orig.tar.bz2), checked against the sha256 that Debian
# trixie's Sources index lists for it (the same as the docker library's).
# WORKDIR keeps the tarball, so a rebuild downloads nothing.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 OUT WORKDIR" >&2
	exit 2
fi
out=$1
work=$2
version=1.37.0
sha256=3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4
url=http://deb.debian.org/debian/pool/main/b/busybox/busybox_${version}.orig.tar.bz2

fail() {
	echo "build-busybox: $*" >&2
	exit 1
}

missing=()
for cmd in curl gcc make bzip2 sha256sum; do
	command -v "$cmd" >/dev/null || missing+=("$cmd")
done
# A static link needs glibc's static libraries, which libc6-dev carries.
[ -e "$(gcc -print-file-name=libc.a 2>/dev/null || true)" ] || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
	fail "missing ${missing[*]}: apt-get install -y curl gcc libc6-dev make bzip2"
fi

mkdir -p "$work"
tarball=$work/busybox_${version}.orig.tar.bz2
if ! echo "$sha256  $tarball" | sha256sum -c --status 2>/dev/null; then
	rm -f "$tarball" "$tarball.part"
	curl -fsSL --retry 3 -o "$tarball.part" "$url" ||
		fail "downloading $url failed; the Debian archive must be reachable, or put that file (sha256 $sha256) at $tarball"
	got=$(sha256sum "$tarball.part" | cut -d' ' -f1)
	if [ "$got" != "$sha256" ]; then
		rm -f "$tarball.part"
		fail "$url has sha256 $got, want $sha256 (pinned in $0 from Debian trixie's Sources); not building from it"
	fi
	mv "$tarball.part" "$tarball"
fi

src=$work/busybox-$version
rm -rf "$src"
tar -xjf "$tarball" -C "$work"
cd "$src"
# The build date busybox embeds is the source's, so rebuilds are identical.
SOURCE_DATE_EPOCH=$(stat -c %Y .)
export SOURCE_DATE_EPOCH

# The docker library's changes to defconfig (its Dockerfile.builder for
# 1.37.0): ar with archive creation, no UTF-8 substitution limit, inotifyd,
# sync without its extra options; and STATIC, ours.
set_confs="CONFIG_STATIC=y CONFIG_AR=y CONFIG_FEATURE_AR_CREATE=y CONFIG_FEATURE_AR_LONG_FILENAMES=y CONFIG_LAST_SUPPORTED_WCHAR=0 CONFIG_INOTIFYD=y"
unset_confs="CONFIG_FEATURE_SYNC_FANCY"
# tc's CBQ code needs the qdisc's definitions, gone from the kernel's
# headers since 6.8 (the docker library patches them out of tc); without
# them, leave tc out rather than patch upstream's source.
if ! grep -q TCA_CBQ_MAX /usr/include/linux/pkt_sched.h 2>/dev/null; then
	echo "build-busybox: this host's kernel headers have no CBQ definitions; building without tc" >&2
	unset_confs="$unset_confs CONFIG_TC"
fi
# 1.37.0's SHA-NI code only builds on x86 (the docker library and Debian
# patch a missing guard); elsewhere use the portable SHA code.
case "$(uname -m)" in
x86_64 | i?86) ;;
*) unset_confs="$unset_confs CONFIG_SHA1_HWACCEL CONFIG_SHA256_HWACCEL" ;;
esac

make -s defconfig >/dev/null
for conf in $unset_confs; do
	sed -i -e "s/^$conf=.*/# $conf is not set/" .config
done
for confv in $set_confs; do
	conf=${confv%%=*}
	sed -i -e "/^$conf=/d" -e "/^# $conf is not set/d" .config
	echo "$confv" >>.config
done
# oldconfig asks about nothing here; any question gets its default.
{ yes '' || true; } | make -s oldconfig >/dev/null
for conf in $unset_confs; do
	! grep -q "^$conf=" .config || fail "$conf is still set after oldconfig"
done
for confv in $set_confs; do
	grep -qx "$confv" .config || fail "$confv did not survive oldconfig"
done

# gcc 12 warns a lot about 1.37.0; the log is kept for a failed build.
echo "build-busybox: building busybox $version in $src (log $work/build.log)"
if ! make -s -j"$(nproc)" busybox >"$work/build.log" 2>&1; then
	tail -n 30 "$work/build.log" >&2
	fail "building busybox failed; the whole log is $work/build.log"
fi
if ldd ./busybox >/dev/null 2>&1; then
	fail "$src/busybox is linked dynamically; CONFIG_STATIC did not take"
fi
# What the kit builds this for: ash passes on every environment entry.
envout=$(env -i 'data-1=x' ./busybox sh -c env)
grep -qx 'data-1=x' <<<"$envout" ||
	fail "$src/busybox sh drops the environment name data-1"
mkdir -p "$(dirname "$out")"
install -m 0755 busybox "$out"
# The configuration stays beside the binary; the build tree goes.
install -m 0644 .config "$out.config"
cd "$work"
rm -rf "$src"
echo "build-busybox: $out is busybox $version, static"

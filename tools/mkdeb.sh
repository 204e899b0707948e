#!/usr/bin/env bash
# Builds the Debian package of vdens-fast: both programs, their man pages and shell completions
# (generated from the clap definitions by examples/gendoc), README.md and BENCHMARKS.md as docs,
# and the AppArmor profile (packaging/apparmor; postinst installs it where AppArmor takes it).
#
#   tools/mkdeb.sh [--prebuilt DIR [--docs GENDIR]] [OUTDIR]
#
# Without --prebuilt it runs `cargo build --release --bins --example gendoc` first; with it, the
# programs and DIR/examples/gendoc are taken from DIR as they are, and with --docs the man pages
# and completions from GENDIR, as gendoc writes them (the tests use these). Writes
# OUTDIR/vdens-fast_VERSION_ARCH.deb (OUTDIR: target/debian) and prints its path.
# Needs dpkg-deb and gzip; dpkg-shlibdeps (package dpkg-dev) when present computes Depends.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

bindir=
gendir=
if [ "${1:-}" = --prebuilt ]; then
    bindir=$(realpath "${2:?mkdeb.sh: --prebuilt needs a directory}")
    shift 2
    if [ "${1:-}" = --docs ]; then
        gendir=$(realpath "${2:?mkdeb.sh: --docs needs a directory}")
        shift 2
    fi
fi
outdir=${1:-target/debian}
if [ -z "$bindir" ]; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    cargo build --release --bins --example gendoc
    bindir=$src/target/release
fi
needed="vdens-fast vdeplug-fast"
[ -n "$gendir" ] || needed="$needed examples/gendoc"
for f in $needed; do
    [ -x "$bindir/$f" ] || { echo "mkdeb.sh: $bindir/$f is missing (build it: cargo build --release --bins --example gendoc)" >&2; exit 1; }
done

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
mkdir -p "$outdir"
outdir=$(realpath "$outdir")
work=$(mktemp -d "${TMPDIR:-/tmp}/mkdeb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" \
    "$root/usr/share/doc/vdens-fast" "$root/usr/share/vdens-fast/apparmor" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d"
for b in vdens-fast vdeplug-fast; do
    install -m 0755 "$bindir/$b" "$root/usr/bin/$b"
    strip --strip-unneeded "$root/usr/bin/$b" 2>/dev/null || true
done

if [ -z "$gendir" ]; then
    gendir=$work/gen
    "$bindir/examples/gendoc" "$gendir"
fi
for b in vdens-fast vdeplug-fast; do
    gzip -9n <"$gendir/man/$b.1" >"$root/usr/share/man/man1/$b.1.gz"
    install -m 0644 "$gendir/completions/bash/$b" "$root/usr/share/bash-completion/completions/$b"
    install -m 0644 "$gendir/completions/zsh/_$b" "$root/usr/share/zsh/vendor-completions/_$b"
    install -m 0644 "$gendir/completions/fish/$b.fish" "$root/usr/share/fish/vendor_completions.d/$b.fish"
done
install -m 0644 README.md BENCHMARKS.md packaging/deb/copyright "$root/usr/share/doc/vdens-fast/"
install -m 0644 packaging/apparmor/vdens-fast "$root/usr/share/vdens-fast/apparmor/vdens-fast"
install -m 0755 packaging/deb/postinst packaging/deb/postrm "$root/DEBIAN/"

depends="libc6, libgcc-s1"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
    mkdir -p "$work/shl/debian" && : >"$work/shl/debian/control"
    d=$(cd "$work/shl" && dpkg-shlibdeps -O "$root/usr/bin/vdens-fast" "$root/usr/bin/vdeplug-fast" 2>/dev/null |
        sed -n 's/^shlibs:Depends=//p') || true
    [ -n "$d" ] && depends=$d
fi

cat >"$root/DEBIAN/control" <<CONTROL
Package: vdens-fast
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-vdens-fast maintainers <vdens-fast@localhost>}
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Recommends: vdeplug, iproute2
Suggests: apparmor, vdens, vde2
Section: net
Priority: optional
Description: user + network namespaces on VDE networks, fast (vdens and vde_plug drop-in)
 vdens-fast starts a command in a new user and network namespace, unprivileged, with tap
 interfaces wired to VDE networks named by VNLs (vde://, ptp://, tap://, switch://, udp://,
 vxlan://, =cmd, ...): the command line of vdens, with an io_uring data plane and userspace
 TSO/GRO. vdeplug-fast is vde_plug on the same engine.
 .
 The libvdeplug plugins of package vdeplug open the schemes vdens-fast does not implement
 itself. On systems that restrict user namespaces with AppArmor, the package loads a profile
 granting them to both programs.
CONTROL

(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
deb=$outdir/vdens-fast_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"

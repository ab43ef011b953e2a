#!/usr/bin/env bash
# Builds ckptd_VERSION_ARCH.deb in the repository root (`make deb`): a release build with the Swift runtime
# linked in statically (the package needs no Swift toolchain), man pages from swift-argument-parser's
# generate-manual plugin, shell completions from the binary itself, and the systemd unit with its ExecStart
# pointing at /usr/bin/ckptd. No debhelper: the tree is staged here and packed with dpkg-deb.
set -euo pipefail
umask 022
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
here=packaging/debian
SWIFT="${SWIFT:-swift}"
# Its own scratch folder: the flags differ from `make build`/`make build-release`, which would otherwise
# rebuild from scratch after every `make deb`.
scratch="${DEB_SCRATCH:-.build-deb}"
out="${DEB_OUT:-$repo}"

# Reproducible timestamps: the date of the newest changelog entry.
epoch="$(dpkg-parsechangelog -l "$here/changelog" -S Timestamp)"
export SOURCE_DATE_EPOCH="$epoch"
day="$(date -u -d "@$epoch" +%Y-%m-%d)"

# Man pages first: the plugin builds the package in release mode without --static-swift-stdlib, so the static
# link below comes last (it only relinks).
echo "deb: man pages (swift package plugin generate-manual)"
mandir="$scratch/plugins/GenerateManual/outputs/ckptd"
rm -rf "$mandir"
"$SWIFT" package --scratch-path "$scratch" plugin generate-manual --configuration release --multi-page \
  --date "$day" --section 1 --authors "ckptd maintainers" >/dev/null
[ -f "$mandir/ckptd.1" ] || { echo "deb: generate-manual wrote no $mandir/ckptd.1" >&2; exit 1; }

echo "deb: release build (static Swift runtime)"
"$SWIFT" build -c release --static-swift-stdlib --scratch-path "$scratch" --product ckptd -Xswiftc -warnings-as-errors
bin="$("$SWIFT" build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)/ckptd"

version="$("$bin" --version)"
debversion="$(dpkg-parsechangelog -l "$here/changelog" -S Version)"
if [ "${debversion%-*}" != "$version" ]; then
  echo "deb: $here/changelog is at $debversion but ckptd --version says $version: add a changelog entry" >&2
  exit 1
fi
arch="$(dpkg --print-architecture)"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
doc="$root/usr/share/doc/ckptd"

install -D -m 0755 "$bin" "$root/usr/bin/ckptd"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/ckptd"

# The unit: the repository's copy with the packaged paths.
install -d "$root/lib/systemd/system"
sed -e 's|/usr/local/bin/ckptd|/usr/bin/ckptd|g' \
  -e 's|^# Installed by `make install` to /etc/systemd/system/ckptd.service.|# Installed by the ckptd Debian package.|' \
  -e 's|see systemd/ckptd.service.d/10-output-dirs.conf.example|see /usr/share/doc/ckptd/examples/ckptd.service.d/10-output-dirs.conf|' \
  systemd/ckptd.service >"$root/lib/systemd/system/ckptd.service"
chmod 0644 "$root/lib/systemd/system/ckptd.service"
grep -q '^ExecStart=/usr/bin/ckptd run' "$root/lib/systemd/system/ckptd.service" || {
  echo "deb: systemd/ckptd.service has no ExecStart to rewrite" >&2
  exit 1
}

install -D -m 0644 config/ckptd.toml "$root/etc/ckptd/ckptd.toml"
install -d -m 0755 "$root/etc/ckptd/watch.d"

install -D -m 0644 config/watch.d/10-example.toml "$doc/examples/watch.d/10-example.toml"
install -D -m 0644 systemd/ckptd.service.d/10-output-dirs.conf.example \
  "$doc/examples/ckptd.service.d/10-output-dirs.conf"
install -m 0644 "$here/copyright" "$doc/copyright"
gzip -9n <"$here/changelog" >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

install -d "$root/usr/share/man/man1"
for page in "$mandir"/*.1; do
  gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
chmod 0644 "$root"/usr/share/man/man1/*.gz

install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
"$bin" --generate-completion-script bash >"$root/usr/share/bash-completion/completions/ckptd"
"$bin" --generate-completion-script zsh >"$root/usr/share/zsh/vendor-completions/_ckptd"
"$bin" --generate-completion-script fish >"$root/usr/share/fish/vendor_completions.d/ckptd.fish"
chmod 0644 "$root/usr/share/bash-completion/completions/ckptd" "$root/usr/share/zsh/vendor-completions/_ckptd" \
  "$root/usr/share/fish/vendor_completions.d/ckptd.fish"

# Shared-library dependencies, as dpkg-shlibdeps computes them for a debhelper build.
mkdir -p "$stage/src/debian"
printf 'Source: ckptd\n\nPackage: ckptd\nArchitecture: any\n' >"$stage/src/debian/control"
depends="$(cd "$stage/src" && dpkg-shlibdeps -O -e"$root/usr/bin/ckptd" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[ -n "$depends" ] || { echo "deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -d -m 0755 "$root/DEBIAN"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/md5sums"
size="$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)"
sed -e "s|@VERSION@|$debversion|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" \
  "$here/control.in" >"$root/DEBIAN/control"

find "$root" -exec touch -h -d "@$epoch" {} +
deb="$out/ckptd_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "deb: wrote $deb"

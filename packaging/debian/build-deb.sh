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
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

echo "deb: release build (static Swift runtime)"
link=(-c release --static-swift-stdlib --scratch-path "$scratch" -Xlinker -z -Xlinker now)
"$SWIFT" build "${link[@]}" --product ckptd
bin="$("$SWIFT" build "${link[@]}" --show-bin-path)/ckptd"

# Man pages with swift-argument-parser's generate-manual plugin. `swift package plugin generate-manual` would
# first build the whole package again in its own configuration (a second full release build, as the static
# runtime changes every compile); asking the plugin for --help builds just its generate-manual tool, which
# then reads the binary above (`ckptd --experimental-dump-help`) exactly as the plugin would run it.
echo "deb: man pages (generate-manual)"
"$SWIFT" package --scratch-path "$scratch" plugin generate-manual --help >/dev/null
tool="$("$SWIFT" build --scratch-path "$scratch" --show-bin-path)/generate-manual-tool"
[ -x "$tool" ] || { echo "deb: the generate-manual plugin built no $tool" >&2; exit 1; }
mandir="$stage/man"
mkdir -p "$mandir"
"$tool" "$bin" --multi-page --date "$(date -u -d "@$epoch" +%Y-%m-%d)" --section 1 \
  --authors "ckptd maintainers" --output-directory "$mandir"
[ -f "$mandir/ckptd.1" ] || { echo "deb: generate-manual wrote no ckptd.1" >&2; exit 1; }

version="$("$bin" --version)"
debversion="$(dpkg-parsechangelog -l "$here/changelog" -S Version)"
if [ "${debversion%-*}" != "$version" ]; then
  echo "deb: $here/changelog is at $debversion but ckptd --version says $version: add a changelog entry" >&2
  exit 1
fi
arch="$(dpkg --print-architecture)"

root="$stage/root"
doc="$root/usr/share/doc/ckptd"

install -D -m 0755 "$bin" "$root/usr/bin/ckptd"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/ckptd"

# The unit: the repository's copy with the packaged paths.
install -d "$root/lib/systemd/system"
sed -e 's|/usr/local/bin/ckptd|/usr/bin/ckptd|g' \
  -e 's|^# Installed by `make install` to /etc/systemd/system/ckptd.service.|# Installed by the ckptd Debian package.|' \
  -e 's|see systemd/ckptd.service.d/10-output-dirs.conf.example|see /usr/share/doc/ckptd/examples/ckptd.service.d/10-output-dirs.conf|' \
  -e '/^Description=/a Documentation=man:ckptd-run(1) man:ckptd(1)' \
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

# generate-manual names a subcommand's page ckptd.convert.1 and its NAME "ckptd convert", which man-db's
# whatis cannot index; the Debian convention (git-commit.1) is ckptd-convert.1 with NAME ckptd-convert. Blank
# lines in help texts become paragraph breaks (.Pp) instead of groff warnings.
install -d "$root/usr/share/man/man1"
for page in "$mandir"/*.1; do
  base="$(basename "$page" .1)"
  title="${base//./ }"
  name="${base//./-}"
  sed -e '/^$/c\.Pp' -e '/^\.Xr ckptd\./{s/ckptd\.\([a-z]*\)\.\([a-z]*\)/ckptd-\1-\2/;s/ckptd\.\([a-z]*\)/ckptd-\1/}' \
    -e "s/^\.Dt [A-Z.]* 1$/.Dt ${name^^} 1/" -e "s/^\.Nm \"$title\"$/.Nm $name/" -e "s/^\.Nm$/.Nm \"$title\"/" \
    "$page" | gzip -9n >"$root/usr/share/man/man1/$name.1.gz"
done
chmod 0644 "$root"/usr/share/man/man1/*.gz

install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
# bash-completion sources the file: no #! line.
"$bin" --generate-completion-script bash | sed '1{/^#!/d}' >"$root/usr/share/bash-completion/completions/ckptd"
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

#!/usr/bin/env bash
# `make test-deb`: checks the Debian package built by `make deb` with the real tools, on this machine:
# lintian without errors; `apt-get install ./ckptd_*.deb`; `ckptd --version`; `man ckptd-convert`;
# `systemd-analyze verify` of the installed unit; then `apt-get purge` leaves no file behind in /usr, /etc
# and /lib. Needs root (it installs and purges the package) and a machine where no other ckptd package is
# installed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
fail() {
  echo "test-deb: FAIL: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || fail "run as root (installs and purges the package)"
debversion="$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)"
deb="$repo/ckptd_${debversion}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || fail "$deb missing: run make deb"
if dpkg-query -W -f '${Status}' ckptd 2>/dev/null | grep -q installed; then
  fail "a ckptd package is already installed; purge it first"
fi

# apt and dpkg wait for each other's lock; other jobs on the machine may hold it for a while.
apt_get() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y -q "$@"
}

echo "test-deb: lintian"
lintian_out="$(lintian --fail-on none --tag-display-limit 0 "$deb" 2>&1 || true)"
[ -z "$lintian_out" ] || printf '%s\n' "$lintian_out"
if grep -q '^E: ' <<<"$lintian_out"; then fail "lintian reports errors"; fi

echo "test-deb: contents"
contents="$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')"
for path in /usr/bin/ckptd /lib/systemd/system/ckptd.service /etc/ckptd/ckptd.toml /etc/ckptd/watch.d/ \
  /usr/share/man/man1/ckptd.1.gz /usr/share/man/man1/ckptd-convert.1.gz \
  /usr/share/bash-completion/completions/ckptd /usr/share/zsh/vendor-completions/_ckptd \
  /usr/share/fish/vendor_completions.d/ckptd.fish /usr/share/doc/ckptd/copyright \
  /usr/share/doc/ckptd/changelog.Debian.gz /usr/share/doc/ckptd/examples/watch.d/10-example.toml; do
  grep -qxF "$path" <<<"$contents" || fail "the package has no $path"
done
# `make install` owns /usr/local and /etc/systemd/system; the package must not touch either, and its conffile
# must equal what `make install` writes, so installing one after the other never asks about it.
if grep -E '^/usr/local/|^/etc/systemd/' <<<"$contents"; then fail "the package ships files where make install puts its own"; fi
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = "/etc/ckptd/ckptd.toml" ] || fail "conffiles"
cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/ckptd/ckptd.toml) config/ckptd.toml ||
  fail "the packaged ckptd.toml differs from config/ckptd.toml"

snapshot() {
  find /usr /etc /lib/ -xdev \( -path /etc/ld.so.cache -o -name __pycache__ -prune \) -o -print 2>/dev/null |
    LC_ALL=C sort
}
before="$(mktemp)"
after="$(mktemp)"
trap 'rm -f "$before" "$after"' EXIT
snapshot >"$before"

echo "test-deb: apt-get install $deb"
apt_get install "$deb" >/dev/null
dpkg-query -W -f '${Status}\n' ckptd | grep -qx 'install ok installed' || fail "ckptd is not installed"

version="$(/usr/bin/ckptd --version)"
[ "$debversion" = "$version-1" ] || fail "/usr/bin/ckptd --version says $version, the package is $debversion"
echo "test-deb: ckptd --version: $version"

# man: renders without warnings and shows the command's options.
page="$(MANWIDTH=100 man --warnings ckptd-convert 2>"$after" | col -b)"
[ ! -s "$after" ] || { cat "$after"; fail "man ckptd-convert warned"; }
grep -q -- '--max-shard-size' <<<"$page" || fail "man ckptd-convert does not show --max-shard-size"
grep -q 'ckptd convert' <<<"$page" || fail "man ckptd-convert does not name the command"
echo "test-deb: man ckptd-convert renders ($(wc -l <<<"$page") lines)"

verify="$(systemd-analyze verify /lib/systemd/system/ckptd.service 2>&1)" || true
[ -z "$verify" ] || { printf '%s\n' "$verify"; fail "systemd-analyze verify printed the above"; }
grep -q '^ExecStart=/usr/bin/ckptd run' /lib/systemd/system/ckptd.service || fail "ExecStart is not /usr/bin/ckptd"
echo "test-deb: systemd-analyze verify: clean"

# bash completion loads and completes subcommands.
bash -c 'source /usr/share/bash-completion/completions/ckptd && COMP_WORDS=(ckptd con) COMP_CWORD=1 && _ckptd &&
  printf "%s\n" "${COMPREPLY[@]}"' | grep -qx convert || fail "bash completion does not complete 'con' to convert"

echo "test-deb: apt-get purge ckptd"
apt_get purge ckptd >/dev/null
snapshot >"$after"
# Anything new that no installed package owns is a leftover (other jobs may install packages meanwhile).
leftovers=()
while IFS= read -r path; do
  dpkg -S "$path" >/dev/null 2>&1 || leftovers+=("$path")
done < <(LC_ALL=C comm -13 "$before" "$after")
[ ${#leftovers[@]} -eq 0 ] || { printf '  %s\n' "${leftovers[@]}"; fail "purge left the files above"; }
missing="$(LC_ALL=C comm -23 "$before" "$after" | head -5)"
[ -z "$missing" ] || { printf '%s\n' "$missing"; fail "purge removed files that were there before"; }
echo "test-deb: purge left nothing behind"
echo "test-deb: OK"

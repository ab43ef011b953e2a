#!/usr/bin/env bash
# Installs the Debian packages ckptd builds and tests with, only those that are missing.
set -euo pipefail
need=()
for pkg in libinotifytools0-dev inotify-tools zlib1g-dev systemd time bindfs fuse3 faketime prometheus lintian dpkg-dev fakeroot util-linux strace man-db bsdextrautils binutils; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

#!/usr/bin/env bash
# Installs qemu-system-x86 so that it matches the machine's qemu-utils; idempotent.
#
# Why not just add it to scripts/setup.sh's PKGS: the CI machine image carries qemu-utils
# 10.x from bookworm-backports, which Breaks bookworm's qemu-system-common 7.2, so a plain
# `apt-get install qemu-system-x86` fails ("held broken packages"). In that case the
# matching qemu-system-x86 comes from bookworm-backports (deb.debian.org) as well.
set -euo pipefail

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if installed qemu-system-x86; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

utils_version=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
if [[ "$utils_version" == *bpo12* ]]; then
  echo "setup-qemu: qemu-utils $utils_version is from bookworm-backports; taking qemu-system-x86 from there too"
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    $SUDO tee /etc/apt/sources.list.d/basalt-bookworm-backports.sources >/dev/null <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86
else
  echo "setup-qemu: installing qemu-system-x86"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends qemu-system-x86
fi

#!/usr/bin/env bash
# Installs what Basalt's builds and tests need, idempotently. Safe to run again.
# Everything comes from Debian packages (never a downloaded binary).
set -euo pipefail

# Debian packages the workspace needs:
#   protobuf-compiler, libprotobuf-dev  etcd-client's build script (codegen + descriptor.proto)
#   etcd-server        real etcd for the store and cluster tests
#   systemd            systemd-analyze verify for units/ tests
#   iproute2           network namespaces in cluster tests
#   mmdebstrap erofs-utils squashfs-tools cryptsetup-bin fdisk dosfstools mtools
#   qemu-utils ovmf    node image pipeline (nodeimg/) and QEMU boots (qemu/)
#   curl openssl       scripts/demo.sh reaches the demo cluster's APIs, pins its CA
#   crun docker-registry busybox-static  the agent's OCI image tasks (runtime) and
#                      their tests (a real local registry, a static busybox rootfs)
#   python3-minimal    the agent's pod and health-check tests (a loopback HTTP server task)
#   systemd-journal-remote  basalt-logs' tests write real journal files with it (journalctl reads them)
#   python3-venv       the venv for the real DC/OS CLI (scripts/dcos-cli.sh, cli/tests/dcos_cli.rs)
PKGS=(protobuf-compiler libprotobuf-dev etcd-server systemd iproute2 ca-certificates mmdebstrap erofs-utils squashfs-tools cryptsetup-bin fdisk dosfstools mtools qemu-utils ovmf curl openssl crun docker-registry busybox-static python3-minimal python3-venv systemd-journal-remote)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # --no-install-recommends keeps the set small; policy-rc.d stops Debian's
  # etcd unit from being started by the package: tests start their own etcd.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# qemu-system-x86 must match the machine's qemu-utils (see the script's header).
bash "$(dirname "$0")/../qemu/setup-qemu.sh"

# Debian enables etcd.service on install; tests run their own processes on
# their own ports, so a packaged etcd on 2379 only gets in the way.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
  # Likewise docker-registry.service (port 5000): the OCI tests start their own.
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
  # systemd-journal-remote is only a tool for the tests, never a listening service here.
  systemctl disable --now systemd-journal-remote.socket >/dev/null 2>&1 || true
fi

# The real open-source DC/OS CLI (PyPI dcoscli 0.6.1) in a cached venv, for
# cli/tests/dcos_cli.rs; a few seconds the first time, nothing after.
# CI must run every test: a failed install stops the setup here (as a failed apt or
# crates.io download would), instead of letting the test skip.
dcos_bin="$(bash "$(dirname "$0")/dcos-cli.sh")" || {
  echo "setup: the DC/OS CLI venv could not be installed (scripts/dcos-cli.sh; needs PyPI)"
  exit 1
}
echo "setup: DC/OS CLI at $dcos_bin"

command -v cargo >/dev/null || { echo "setup: cargo is required (rustup toolchain)"; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest from crates.io"
  cargo install --locked cargo-nextest
fi
echo "setup: ok"

#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, and generate the example
# cluster's signed configuration (1 master + 2 agents) from genconf/.
# Once images boot (issue: node images), this also boots the cluster in QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p basalt-installer
inst=target/release/basalt-installer
"$inst" validate --dir genconf
"$inst" genconf --dir genconf
for role in master agent agent-public; do
  "$inst" verify "genconf/serve/bundles/$role.tar" --role "$role" --dir genconf
done
echo
echo "demo: the signed bundles are in genconf/serve/; summary:"
cat genconf/serve/summary.txt

#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, check the example cluster
# configuration, then boot a demo cluster (1 master + 1 agent) from this
# repository's node images in QEMU and reach it.
#
# The cluster keeps running in the background; stop it with
#   cargo run -p basalt-qemu -- down
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked -p basalt-installer -p basaltd -p basalt-qemu -p basalt-cli
inst=target/debug/basalt-installer

# 1. the operator's view: validate, generate and verify the example cluster's bundles
"$inst" validate --dir genconf
"$inst" genconf --dir genconf
for role in master agent agent-public; do
  "$inst" verify "genconf/serve/bundles/$role.tar" --role "$role" --dir genconf
done
cat genconf/serve/summary.txt
echo

# 2. a demo cluster in QEMU (its own genconf folder under target/qemu-cluster: the
#    example config's addresses are not the QEMU segment's). Images are built once
#    and reused; under TCG the first boot takes minutes.
target/debug/basalt-qemu up --masters 1 --agents 1 --detach
echo
# 3. reach it: the Mesos master and Marathon through their forwarded ports
master=$(sed -n 's|.*Mesos master *http://\(127.0.0.1:[0-9]*\).*|\1|p' target/qemu-cluster/cluster.txt | head -n1)
marathon=$(sed -n 's|.*Marathon *http://\(127.0.0.1:[0-9]*\).*|\1|p' target/qemu-cluster/cluster.txt | head -n1)
echo "agents registered with the master at $master:"
curl -fsS "http://$master/master/slaves" | python3 -c 'import json,sys; [print("  ", s["hostname"], s["resources"]) for s in json.load(sys.stdin)["slaves"]]'
echo "Marathon at $marathon:"
curl -fsS "http://$marathon/v2/info" | python3 -c 'import json,sys; i=json.load(sys.stdin); print("  ", i.get("name"), i.get("version"), "leader", i.get("leader"))'
# 4. the operator's way in: the basalt CLI through the gateway, the CA pinned by its
#    fingerprint, logged in as the demo superuser
gw=$(sed -n 's|.*gateway *https://\(127.0.0.1:[0-9]*\).*|\1|p' target/qemu-cluster/cluster.txt | head -n1)
fp=$(openssl x509 -in target/qemu-cluster/genconf/secrets/ca.crt -noout -fingerprint -sha256 | cut -d= -f2)
export BASALT_DIR="$PWD/target/qemu-cluster/basalt-cli"
DEMO_PASSWORD=deleteme target/debug/basalt cluster setup "https://$gw" \
  --ca-fingerprint "sha256:$fp" --username bootstrapuser --password-env DEMO_PASSWORD
target/debug/basalt node list
target/debug/basalt marathon app list
echo
echo "use the CLI with: BASALT_DIR=$BASALT_DIR target/debug/basalt --help"
echo "stop the cluster with: target/debug/basalt-qemu down"

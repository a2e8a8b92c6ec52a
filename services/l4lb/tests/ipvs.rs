//! Kernel IPVS through `basalt_l4lb::datapath::Ipvs` (generic netlink). Needs a kernel
//! with `ip_vs` and `CAP_NET_ADMIN`; otherwise the test prints SKIP and returns (this CI
//! host's kernel has no IPVS; the node images' kernel has it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_l4lb::datapath::Ipvs;
use basalt_l4lb::{DataPath, Protocol, ServiceTable, VipEndpoint};
use std::collections::BTreeSet;
use std::net::SocketAddr;

#[tokio::test]
async fn ipvs_services_and_destinations_follow_the_table() {
    if let Err(e) = Ipvs::probe() {
        println!("SKIP: no kernel IPVS here: {e}");
        return;
    }
    let ipvs = Ipvs::new().unwrap();
    // A test-only service range; every IPVS service of the namespace is reconciled.
    let before = ipvs.dump().await.unwrap();
    if !before.is_empty() {
        println!("SKIP: this network namespace already has IPVS services: {before:?}");
        return;
    }
    let tcp = VipEndpoint {
        addr: "11.254.0.1:80".parse().unwrap(),
        protocol: Protocol::Tcp,
    };
    let udp = VipEndpoint {
        addr: "11.254.0.1:53".parse().unwrap(),
        protocol: Protocol::Udp,
    };
    let b = |s: &str| -> SocketAddr { s.parse().unwrap() };
    let mut table = ServiceTable::new();
    table.insert(tcp, vec![b("10.9.0.1:31000"), b("10.9.0.2:31000")]);
    table.insert(udp, vec![b("10.9.0.1:31053")]);
    ipvs.apply(&table).await.unwrap();
    let got = ipvs.dump().await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[&tcp],
        BTreeSet::from([b("10.9.0.1:31000"), b("10.9.0.2:31000")])
    );
    // One backend leaves, the UDP VIP goes.
    table.insert(tcp, vec![b("10.9.0.2:31000")]);
    table.remove(&udp);
    ipvs.apply(&table).await.unwrap();
    let got = ipvs.dump().await.unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), [&tcp]);
    assert_eq!(got[&tcp], BTreeSet::from([b("10.9.0.2:31000")]));
    ipvs.apply(&ServiceTable::new()).await.unwrap();
    assert!(ipvs.dump().await.unwrap().is_empty());
}

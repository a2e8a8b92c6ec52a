//! Typed etcd store: key layout, versioned values, transactions, watches, leases, leader election.

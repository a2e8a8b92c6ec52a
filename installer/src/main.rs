//! basalt-installer: generate the signed cluster configuration, build images, serve bootstrap.

fn main() {}

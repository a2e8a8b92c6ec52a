//! `cargo bench -p basalt-genconf --bench genconf`: wall time of genconf for a
//! 5-master config — load + validate, secrets, render, bundle (all roles) and
//! writing the serve folder — cold (new secrets: key and certificate
//! generation) and warm (secrets reused), plus the stages of a warm run and
//! verification. Prints a table; asserts nothing about time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use basalt_genconf::bundle::Role;
use basalt_genconf::config;
use basalt_genconf::generate::generate;
use basalt_genconf::render::render_bundle;
use basalt_genconf::secrets::{Leaf, Secrets, secrets_dir};
use basalt_genconf::verify::verify_bundle;

const CONFIG: &str = r#"cluster_name = "bench"
masters = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
bootstrap_url = "http://10.0.0.100:8080"
ip_detect = "ip-detect"
resolvers = ["203.0.113.53", "203.0.113.54"]
dns_search = ["corp.example"]

[agent.attributes]
rack = "r1"

[auth]
enabled = true
superuser_uid = "admin"
superuser_password_hash = "$argon2id$v=19$m=19456,t=2,p=1$YmFzYWx0LWV4YW1wbGUtc2FsdA$jvbFvsfMsnGoh+pFrjm5R5pxuPEtpTu8krgq4/g2FAQ"
"#;

fn write_genconf(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.toml"), CONFIG).unwrap();
    let ip = dir.join("ip-detect");
    std::fs::write(
        &ip,
        "#!/bin/sh\nip -4 route get 10.0.0.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'\n",
    )
    .unwrap();
    std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Stats(Vec<Duration>);

impl Stats {
    fn row(&mut self, what: &str) {
        self.0.sort();
        let n = self.0.len();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{what:<44} {n:>4}  min {:>8.2} ms  median {:>8.2} ms  max {:>8.2} ms",
            ms(self.0[0]),
            ms(self.0[n / 2]),
            ms(self.0[n - 1])
        );
    }
}

fn time(n: usize, mut f: impl FnMut()) -> Stats {
    f(); // warm caches, page in code
    Stats(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let genconf = tmp.path().join("genconf");
    write_genconf(&genconf);
    println!("basalt-genconf bench: 5 masters, 3 roles (wall time per run)");
    println!("{:<44} {:>4}", "", "runs");

    time(10, || {
        let _ = std::fs::remove_dir_all(secrets_dir(&genconf));
        generate(&genconf, &genconf.join("serve")).unwrap();
    })
    .row(&format!(
        "genconf cold (new secrets, {} ECDSA P-256 certs)",
        1 + Leaf::all_for(
            &config::load(&genconf.join("config.toml"))
                .unwrap()
                .config
                .masters
        )
        .len()
    ));

    generate(&genconf, &genconf.join("serve")).unwrap();
    time(50, || {
        generate(&genconf, &genconf.join("serve")).unwrap();
    })
    .row("genconf warm (secrets reused)");

    let loaded = config::load(&genconf.join("config.toml")).unwrap();
    time(50, || {
        config::load(&genconf.join("config.toml")).unwrap();
    })
    .row("  stage: load + validate config");
    time(50, || {
        Secrets::load_or_create(&secrets_dir(&genconf), &loaded.config).unwrap();
    })
    .row("  stage: load + check secrets");
    let secrets = Secrets::load_or_create(&secrets_dir(&genconf), &loaded.config).unwrap();
    time(50, || {
        for role in Role::ALL {
            render_bundle(&loaded, &secrets, role).unwrap();
        }
    })
    .row("  stage: render + sign 3 bundles");
    let master = render_bundle(&loaded, &secrets, Role::Master).unwrap();
    let key = secrets.public_key();
    time(200, || {
        verify_bundle(&master.bytes, &key, Some(Role::Master), None).unwrap();
    })
    .row(&format!(
        "verify master bundle ({} bytes)",
        master.bytes.len()
    ));
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The fetcher against a real HTTP server on loopback (axum) and `file://` URIs:
//! checksums, cache, extraction, `executable`, `output_file`, failures; then through
//! the master: a task with a URI runs, bad URIs give TASK_FAILED naming the URI and
//! the agent runs the next task.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as AxPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use basalt_agent::fetcher::{ArchiveKind, FetchError, Fetcher, FetcherConfig, Owner};
use basalt_master::testing::TestScheduler;
use basalt_mesos::{CommandInfo, CommandUri, TaskState, TaskStatusReason, TaskStatusSource};
use sha2::Digest;

use common::*;

#[derive(Clone, Default)]
struct Files {
    content: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

impl Files {
    fn put(&self, name: &str, data: Vec<u8>) {
        self.content.lock().unwrap().insert(name.to_string(), data);
    }
    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

async fn serve_file(State(f): State<Files>, AxPath(name): AxPath<String>) -> (StatusCode, Vec<u8>) {
    f.total.fetch_add(1, Ordering::SeqCst);
    *f.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    match f.content.lock().unwrap().get(&name) {
        Some(d) => (StatusCode::OK, d.clone()),
        None => (StatusCode::NOT_FOUND, b"no such file".to_vec()),
    }
}

/// A file server on 127.0.0.1; returns its base URL.
async fn server(files: Files) -> String {
    let app = axum::Router::new()
        .route("/files/{name}", get(serve_file))
        .with_state(files);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/files")
}

fn sha(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

fn uri(value: &str) -> CommandUri {
    CommandUri {
        value: value.to_string(),
        ..Default::default()
    }
}

fn tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let data = b"#!/bin/sh\necho from-tar\n";
    h.set_size(data.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, "app/run.sh", &data[..]).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zip_bytes() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.add_directory("conf/", opts).unwrap();
    w.start_file("conf/app.conf", opts).unwrap();
    w.write_all(b"port=8080\n").unwrap();
    w.finish().unwrap().into_inner()
}

fn fetcher(dir: &Path) -> Fetcher {
    Fetcher::new(FetcherConfig::new(dir.join("cache"))).unwrap()
}

#[tokio::test]
async fn fetch_http_and_file_with_checksums_output_file_and_executable() {
    let files = Files::default();
    files.put("hello.txt", b"hello world\n".to_vec());
    files.put("tool", b"#!/bin/sh\necho tool\n".to_vec());
    let base = server(files.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    let sandbox = dir.path().join("sandbox");

    // Plain, with the right checksum (both spellings), into output_file paths.
    let mut a = uri(&format!("{base}/hello.txt"));
    a.checksum = Some(sha(b"hello world\n"));
    let mut b = uri(&format!("{base}/hello.txt"));
    b.checksum = Some(format!("sha256:{}", sha(b"hello world\n").to_uppercase()));
    b.output_file = Some("conf/greeting".into());
    let mut c = uri(&format!("{base}/tool"));
    c.executable = Some(true);
    let local = dir.path().join("local data.txt");
    std::fs::write(&local, b"local\n").unwrap();
    let d = uri(&format!(
        "file://{}",
        local.display().to_string().replace(' ', "%20")
    ));
    let e = uri(&local.display().to_string());
    let got = f.fetch(&[a, b, c, d, e], &sandbox, None).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(
        std::fs::read(sandbox.join("hello.txt")).unwrap(),
        b"hello world\n"
    );
    assert_eq!(
        std::fs::read(sandbox.join("conf/greeting")).unwrap(),
        b"hello world\n"
    );
    let mode = std::fs::metadata(sandbox.join("tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        std::fs::read(sandbox.join("local data.txt")).unwrap(),
        b"local\n"
    );
    assert!(got.iter().all(|g| !g.cache_hit));
    assert_eq!(got[0].sha256, sha(b"hello world\n"));
}

#[tokio::test]
async fn wrong_checksum_404_refused_connection_and_bad_fields_name_the_uri() {
    let files = Files::default();
    files.put("data.bin", b"actual content".to_vec());
    let base = server(files.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    let sandbox = dir.path().join("sandbox");

    // Wrong checksum: nothing left behind, with and without the cache.
    for cache in [false, true] {
        let mut u = uri(&format!("{base}/data.bin"));
        u.checksum = Some("0".repeat(64));
        u.cache = Some(cache);
        let e = f
            .fetch(std::slice::from_ref(&u), &sandbox, None)
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Checksum { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&u.value), "{msg}");
        assert!(msg.contains(&"0".repeat(64)), "{msg}");
        assert!(msg.contains(&sha(b"actual content")), "{msg}");
        assert!(!sandbox.join("data.bin").exists(), "cache={cache}");
    }
    let cache_entries = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
    assert_eq!(cache_entries, 0, "a bad download must not be cached");

    // 404.
    let u = uri(&format!("{base}/missing.bin"));
    let msg = f
        .fetch(std::slice::from_ref(&u), &sandbox, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&u.value) && msg.contains("404"), "{msg}");

    // Connection refused: a port nobody listens on any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let u = uri(&format!("http://127.0.0.1:{port}/x.tgz"));
    let msg = f
        .fetch(std::slice::from_ref(&u), &sandbox, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&u.value), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");

    // Missing local file, bad scheme, bad output_file, bad checksum syntax.
    let u = uri("/nonexistent/basalt-fetch-test");
    let msg = f.fetch(&[u], &sandbox, None).await.unwrap_err().to_string();
    assert!(msg.contains("/nonexistent/basalt-fetch-test"), "{msg}");
    let msg = f
        .fetch(&[uri("ftp://h/x")], &sandbox, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("ftp://h/x") && msg.contains("scheme"), "{msg}");
    let mut u = uri(&format!("{base}/data.bin"));
    u.output_file = Some("../escape".into());
    let msg = f.fetch(&[u], &sandbox, None).await.unwrap_err().to_string();
    assert!(msg.contains("output_file"), "{msg}");
    assert!(!dir.path().join("escape").exists());
    let mut u = uri(&format!("{base}/data.bin"));
    u.checksum = Some("abc".into());
    let msg = f.fetch(&[u], &sandbox, None).await.unwrap_err().to_string();
    assert!(msg.contains("'checksum'"), "{msg}");
    // The bad requests above never reached the server for the invalid fields.
    assert_eq!(files.hits("data.bin"), 2);
}

#[tokio::test]
async fn archives_are_extracted_unless_told_not_to() {
    let files = Files::default();
    let tar = tar_bytes();
    files.put("app.tar", tar.clone());
    files.put("app.tgz", gzip(&tar));
    files.put("app.tar.gz", gzip(&tar));
    files.put("conf.zip", zip_bytes());
    let base = server(files.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());

    for (name, kind) in [
        ("app.tar", ArchiveKind::Tar),
        ("app.tgz", ArchiveKind::TarGz),
        ("app.tar.gz", ArchiveKind::TarGz),
    ] {
        let sandbox = dir.path().join(format!("sb-{name}"));
        let got = f
            .fetch(&[uri(&format!("{base}/{name}"))], &sandbox, None)
            .await
            .unwrap();
        assert_eq!(got[0].extracted, Some(kind), "{name}");
        let run = sandbox.join("app/run.sh");
        assert_eq!(
            std::fs::read_to_string(&run).unwrap(),
            "#!/bin/sh\necho from-tar\n",
            "{name}"
        );
        assert_eq!(
            std::fs::metadata(&run).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(sandbox.join(name).exists(), "the archive stays");
    }
    let sandbox = dir.path().join("sb-zip");
    let got = f
        .fetch(&[uri(&format!("{base}/conf.zip"))], &sandbox, None)
        .await
        .unwrap();
    assert_eq!(got[0].extracted, Some(ArchiveKind::Zip));
    assert_eq!(
        std::fs::read_to_string(sandbox.join("conf/app.conf")).unwrap(),
        "port=8080\n"
    );

    // extract: false, and executable (never extracted).
    let sandbox = dir.path().join("sb-noextract");
    let mut a = uri(&format!("{base}/app.tgz"));
    a.extract = Some(false);
    let mut b = uri(&format!("{base}/app.tar"));
    b.executable = Some(true);
    let got = f.fetch(&[a, b], &sandbox, None).await.unwrap();
    assert!(got.iter().all(|g| g.extracted.is_none()));
    assert!(sandbox.join("app.tgz").exists() && sandbox.join("app.tar").exists());
    assert!(!sandbox.join("app").exists());

    // A corrupt archive names the URI.
    files.put("broken.tgz", b"not gzip at all".to_vec());
    let u = uri(&format!("{base}/broken.tgz"));
    let msg = f
        .fetch(
            std::slice::from_ref(&u),
            &dir.path().join("sb-broken"),
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&u.value) && msg.contains("extracting"),
        "{msg}"
    );
}

#[tokio::test]
async fn the_cache_downloads_once_and_checksum_is_part_of_the_key() {
    let files = Files::default();
    let tgz = gzip(&tar_bytes());
    files.put("app.tgz", tgz.clone());
    let base = server(files.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    let mut u = uri(&format!("{base}/app.tgz"));
    u.cache = Some(true);
    u.checksum = Some(sha(&tgz));
    let first = f
        .fetch(std::slice::from_ref(&u), &dir.path().join("s1"), None)
        .await
        .unwrap();
    let second = f
        .fetch(std::slice::from_ref(&u), &dir.path().join("s2"), None)
        .await
        .unwrap();
    assert!(!first[0].cache_hit);
    assert!(second[0].cache_hit);
    assert_eq!(
        files.hits("app.tgz"),
        1,
        "the second fetch came from the cache"
    );
    for s in ["s1", "s2"] {
        assert!(dir.path().join(s).join("app/run.sh").exists(), "{s}");
    }
    // Concurrent fetches of one new key download once too.
    let mut v = uri(&format!("{base}/app.tgz"));
    v.cache = Some(true);
    let (s3, s4) = (dir.path().join("s3"), dir.path().join("s4"));
    let (a, b) = tokio::join!(
        f.fetch(std::slice::from_ref(&v), &s3, None),
        f.fetch(std::slice::from_ref(&v), &s4, None)
    );
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(files.hits("app.tgz"), 2);
    // Without cache: always downloaded.
    f.fetch(
        &[uri(&format!("{base}/app.tgz"))],
        &dir.path().join("s5"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(files.hits("app.tgz"), 3);
}

#[tokio::test]
async fn fetched_files_belong_to_the_task_user() {
    if !nix::unistd::geteuid().is_root() {
        skip("fetched_files_belong_to_the_task_user", "not root (chown)");
        return;
    }
    let files = Files::default();
    files.put("app.tgz", gzip(&tar_bytes()));
    files.put("x.txt", b"x".to_vec());
    let base = server(files).await;
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher(dir.path());
    let sandbox = dir.path().join("sb");
    let owner = Owner {
        uid: 65534,
        gid: 65534,
    };
    let mut x = uri(&format!("{base}/x.txt"));
    x.output_file = Some("deep/dir/x.txt".into());
    f.fetch(&[uri(&format!("{base}/app.tgz")), x], &sandbox, Some(owner))
        .await
        .unwrap();
    for p in [
        "app.tgz",
        "app",
        "app/run.sh",
        "deep",
        "deep/dir",
        "deep/dir/x.txt",
    ] {
        let md = std::fs::symlink_metadata(sandbox.join(p)).unwrap();
        assert_eq!((md.uid(), md.gid()), (65534, 65534), "{p}");
    }
}

// ---- through the master --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_fetches_uris_and_fails_bad_ones_naming_the_uri() {
    let test = "daemon_fetches_uris_and_fails_bad_ones_naming_the_uri";
    let Some((c, agent, work, agent_id)) = setup(test).await else {
        return;
    };
    let files = Files::default();
    let tgz = gzip(&tar_bytes());
    files.put("app.tgz", tgz.clone());
    let base = server(files.clone()).await;
    let s = TestScheduler::subscribe(c.addresses(), framework("fetch"))
        .await
        .unwrap();

    // A good fetch: the task runs the extracted script and finishes.
    let mut cmd = CommandInfo::shell("test -x app/run.sh && ./app/run.sh > out.txt");
    let mut u = uri(&format!("{base}/app.tgz"));
    u.checksum = Some(sha(&tgz));
    cmd.uris = vec![u];
    let from = launch(&s, &agent_id, task("good", &agent_id, cmd, 0.1, 32.0)).await;
    let st = wait_state(&s, "good", from, TaskState::Finished).await;
    assert_eq!(st.message.as_deref(), Some("Command exited with status 0"));
    let fw = s.framework_id().unwrap();
    let entry = agent.task(&fw, &basalt_mesos::TaskId::new("good")).unwrap();
    let out = entry.sandbox.unwrap().join("out.txt");
    assert_eq!(std::fs::read_to_string(out).unwrap(), "from-tar\n");

    // Bad inputs: each TASK_FAILED naming the URI, reason CONTAINER_LAUNCH_FAILED.
    let refused_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let unreachable = format!("http://127.0.0.1:{refused_port}/app.tgz");
    let mut wrong = uri(&format!("{base}/app.tgz"));
    wrong.checksum = Some("f".repeat(64));
    for (id, u, want) in [
        ("unreachable", uri(&unreachable), "refused"),
        ("wrong-sum", wrong, "checksum mismatch"),
        ("not-found", uri(&format!("{base}/nope.tgz")), "404"),
    ] {
        let mut cmd = CommandInfo::shell("true");
        let value = u.value.clone();
        cmd.uris = vec![u];
        let from = launch(&s, &agent_id, task(id, &agent_id, cmd, 0.1, 32.0)).await;
        let st = wait_state(&s, id, from, TaskState::Failed).await;
        let msg = st.message.clone().unwrap_or_default();
        assert!(msg.contains(&value), "{id}: {msg}");
        assert!(msg.to_lowercase().contains(want), "{id}: {msg}");
        assert!(
            msg.starts_with("Failed to launch container: Failed to fetch URIs"),
            "{msg}"
        );
        assert_eq!(
            st.reason,
            Some(TaskStatusReason::ContainerLaunchFailed),
            "{id}"
        );
        assert_eq!(st.source, Some(TaskStatusSource::Agent), "{id}");
    }

    // The agent stays up and runs the next task.
    let from = launch(
        &s,
        &agent_id,
        task("after", &agent_id, CommandInfo::shell("exit 0"), 0.1, 32.0),
    )
    .await;
    wait_state(&s, "after", from, TaskState::Finished).await;
    assert!(agent.connected());
    agent.stop().await;
    remove_roots(work.path()).await;
    c.shutdown().await;
}

//! The log API over a real journal: files written by systemd-journal-remote, read by
//! the service through the real journalctl, over loopback HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use basalt_logs::testing::{TestEntry, TestJournal};
use basalt_logs::{LogsConfig, LogsServer};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(20);

macro_rules! journal_or_skip {
    ($name:expr) => {
        match TestJournal::new() {
            Ok(j) => j,
            Err(why) => {
                println!("SKIPPED {}: {why}", $name);
                return;
            }
        }
    };
}

/// Polls `check` until it returns `Some` (panics after the deadline).
async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        // Poll, not spin: the machine may have 2 cores shared with the server.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Five entries: a, b, a, c, b (units basalt-a/b/c.service), messages m1..m5.
fn five() -> Vec<TestEntry> {
    ["a", "b", "a", "c", "b"]
        .iter()
        .enumerate()
        .map(|(i, u)| TestEntry::new(&format!("basalt-{u}.service"), &format!("m{}", i + 1)))
        .collect()
}

struct Env {
    journal: TestJournal,
    server: LogsServer,
    client: reqwest::Client,
}

impl Env {
    async fn new(mut journal: TestJournal) -> Env {
        journal.append(&five()).unwrap();
        let server = LogsServer::start(journal.config()).await.unwrap();
        Env {
            journal,
            server,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    async fn get(&self, path: &str, accept: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("Accept", accept)
            .send()
            .await
            .unwrap()
    }

    /// The JSON entries of a range.
    async fn entries(&self, path: &str) -> Vec<Value> {
        let r = self.get(path, "application/json").await;
        if r.status() == 204 {
            return Vec::new();
        }
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        r.text()
            .await
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn messages(&self, path: &str) -> Vec<String> {
        self.entries(path)
            .await
            .iter()
            .map(|e| e["fields"]["MESSAGE"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn m(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn range_positions_filters_and_formats() {
    let env = Env::new(journal_or_skip!("range_positions_filters_and_formats")).await;

    // text/plain: journalctl's short format
    let r = env.get("/v1/range/", "text/plain").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let text = r.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], "Nov 14 22:13:20 node1 basalt-a[101]: m1");
    assert_eq!(lines[4], "Nov 14 22:13:24 node1 basalt-b[105]: m5");

    // application/json: dcos-log's entry shape
    let all = env.entries("/v1/range/").await;
    assert_eq!(all.len(), 5);
    let e = &all[0];
    assert_eq!(e["fields"]["_SYSTEMD_UNIT"], "basalt-a.service");
    assert_eq!(e["fields"]["_BOOT_ID"], basalt_logs::testing::BOOT_ID);
    assert_eq!(e["realtime_timestamp"], 1_700_000_000_000_000u64);
    assert!(e["monotonic_timestamp"].is_u64());
    assert!(e["cursor"].as_str().unwrap().starts_with("s="));
    assert!(e["fields"].get("__CURSOR").is_none());

    // text/event-stream on a range: data lines, no ids
    let r = env.get("/v1/range/?limit=2", "text/event-stream").await;
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let sse = r.text().await.unwrap();
    assert_eq!(sse.matches("data: {").count(), 2, "{sse}");
    assert!(!sse.contains("id: "), "{sse}");
    assert!(sse.ends_with("}\n\n"));

    // limit, skip_prev (from the end without a cursor), skip_next
    assert_eq!(env.messages("/v1/range/?limit=2").await, m(&["m1", "m2"]));
    assert_eq!(
        env.messages("/v1/range/?skip_prev=2").await,
        m(&["m4", "m5"])
    );
    assert_eq!(
        env.messages("/v1/range/?skip_next=3").await,
        m(&["m4", "m5"])
    );
    assert_eq!(
        env.messages("/v1/range/?skip_next=1&limit=1").await,
        m(&["m2"])
    );
    let r = env
        .get("/v1/range/?skip_prev=100", "application/json")
        .await;
    assert_eq!(r.headers()["x-journal-skip-prev"], "5");
    assert_eq!(r.headers()["x-journal-skip-next"], "0");
    assert_eq!(r.text().await.unwrap().lines().count(), 5);
    let r = env
        .get("/v1/range/?skip_next=100", "application/json")
        .await;
    assert_eq!(r.status(), 204, "past the end: nothing");
    assert_eq!(r.headers()["x-journal-skip-next"], "5");

    // filters: one value; two values of one field (either); two fields (both)
    assert_eq!(
        env.messages("/v1/range/?filter=_SYSTEMD_UNIT:basalt-a.service")
            .await,
        m(&["m1", "m3"])
    );
    assert_eq!(
        env.messages(
            "/v1/range/?filter=_SYSTEMD_UNIT:basalt-a.service&filter=_SYSTEMD_UNIT:basalt-c.service"
        )
        .await,
        m(&["m1", "m3", "m4"])
    );
    assert_eq!(
        env.messages("/v1/range/?filter=syslog_identifier:basalt-b&filter=MESSAGE:m5")
            .await,
        m(&["m5"])
    );
    let r = env
        .get("/v1/range/?filter=_SYSTEMD_UNIT:nope.service", "text/plain")
        .await;
    assert_eq!(r.status(), 204);

    // cursor: the entries after it; with skip_prev=1 the cursor's own entry first
    let c2 = all[1]["cursor"].as_str().unwrap();
    let enc = |c: &str| c.replace(';', "%3B").replace('=', "%3D");
    assert_eq!(
        env.messages(&format!("/v1/range/?cursor={}", enc(c2)))
            .await,
        m(&["m3", "m4", "m5"])
    );
    assert_eq!(
        env.messages(&format!(
            "/v1/range/?cursor={}&skip_prev=1&limit=2",
            enc(c2)
        ))
        .await,
        m(&["m2", "m3"])
    );
    assert_eq!(
        env.messages(&format!("/v1/range/?cursor={}&skip_prev=9", enc(c2)))
            .await,
        m(&["m1", "m2", "m3", "m4", "m5"])
    );
    let r = env
        .get(
            &format!("/v1/range/?cursor={}&skip_next=1", enc(c2)),
            "text/plain",
        )
        .await;
    assert_eq!(r.headers()["x-journal-skip-next"], "1");
    assert_eq!(r.text().await.unwrap().lines().count(), 2);
    assert_eq!(
        env.messages(&format!(
            "/v1/range/?cursor={}&skip_next=2&skip_prev=1",
            enc(c2)
        ))
        .await,
        m(&["m4", "m5"])
    );

    // read_reverse: newest first, before the position
    assert_eq!(
        env.messages("/v1/range/?read_reverse=true&limit=2").await,
        m(&["m5", "m4"])
    );
    assert_eq!(
        env.messages(&format!("/v1/range/?read_reverse=true&cursor={}", enc(c2)))
            .await,
        m(&["m1"])
    );
}

#[tokio::test]
async fn bad_input_is_400_naming_the_parameter() {
    let env = Env::new(journal_or_skip!("bad_input_is_400_naming_the_parameter")).await;
    let real = env.entries("/v1/range/?limit=1").await;
    let real_cursor = real[0]["cursor"].as_str().unwrap().to_owned();
    // same cursor shape, another sequence number: well-formed, no such entry
    let missing = real_cursor.replace(";i=1;", ";i=99;");
    for (path, param) in [
        ("/v1/range/?limit=ten", "limit"),
        ("/v1/range/?limit=-1", "limit"),
        ("/v1/range/?skip_prev=x", "skip_prev"),
        ("/v1/range/?skip_next=1e3", "skip_next"),
        ("/v1/range/?filter=NOCOLON", "filter"),
        ("/v1/range/?filter=A:b:c", "filter"),
        ("/v1/range/?filter=bad-field:x", "filter"),
        ("/v1/range/?read_reverse=perhaps", "read_reverse"),
        ("/v1/range/?cursor=garbage", "cursor"),
        ("/v1/stream/?limit=5", "limit"),
        ("/v1/stream/?read_reverse=true", "read_reverse"),
    ] {
        let r = env.get(path, "application/json").await;
        assert_eq!(r.status(), 400, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(&format!("`{param}`")), "{path}: {body}");
    }
    // a well-formed cursor of no entry; and one that matches no filter
    let enc = |c: &str| c.replace(';', "%3B").replace('=', "%3D");
    for path in [
        format!("/v1/range/?cursor={}", enc(&missing)),
        format!(
            "/v1/range/?cursor={}&filter=_SYSTEMD_UNIT:basalt-c.service",
            enc(&real_cursor)
        ),
    ] {
        let r = env.get(&path, "text/plain").await;
        assert_eq!(r.status(), 400, "{path}");
        assert!(r.text().await.unwrap().contains("`cursor`"));
    }
    // Last-Event-ID that is no cursor
    let r = env
        .client
        .get(env.url("/v1/stream/"))
        .header("Last-Event-ID", "nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Last-Event-ID"));

    // fields: allowed ones only
    let r = env.get("/v1/fields/_SYSTEMD_UNIT", "*/*").await;
    assert_eq!(r.status(), 200);
    let v: Vec<String> = r.json().await.unwrap();
    assert_eq!(
        v,
        m(&["basalt-a.service", "basalt-b.service", "basalt-c.service"])
    );
    assert_eq!(
        env.get("/v1/fields/CONTAINER_ID", "*/*").await.status(),
        204
    );
    let r = env.get("/v1/fields/MESSAGE", "*/*").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("MESSAGE"));

    // task logs and downloads: a clear 501; unknown paths 404
    let r = env
        .get("/v1/range/framework/F1/executor/E1/container/C1", "*/*")
        .await;
    assert_eq!(r.status(), 501);
    assert!(r.text().await.unwrap().contains("sandbox"));
    assert_eq!(
        env.get("/v1/stream/framework/F1/executor/E1/container/C1", "*/*")
            .await
            .status(),
        501
    );
    assert_eq!(env.get("/v1/range/download", "*/*").await.status(), 501);
    assert_eq!(env.get("/v2/component/x", "*/*").await.status(), 404);

    let text = env.get("/metrics", "*/*").await.text().await.unwrap();
    assert!(
        text.contains("basalt_logs_requests_total{endpoint=\"range\",code=\"4xx\"}"),
        "{text}"
    );
    assert!(text.contains("basalt_logs_entries_sent_total"));
}

/// Reads SSE events from a streaming response until `n` have arrived.
async fn events(r: &mut reqwest::Response, buf: &mut String, n: usize) -> Vec<(String, Value)> {
    loop {
        let complete: Vec<&str> = buf.split_inclusive("\n\n").collect();
        let done = complete.iter().filter(|e| e.ends_with("\n\n")).count();
        if done >= n {
            let mut out = Vec::new();
            let mut consumed = 0;
            for ev in complete.iter().take(n) {
                consumed += ev.len();
                let mut id = String::new();
                let mut data = Value::Null;
                for line in ev.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).unwrap();
                    }
                }
                out.push((id, data));
            }
            buf.drain(..consumed);
            return out;
        }
        let chunk = tokio::time::timeout(DEADLINE, r.chunk())
            .await
            .expect("timed out waiting for an event")
            .unwrap()
            .expect("the stream ended");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn stream_follows_new_entries_and_resumes() {
    let mut env = Env::new(journal_or_skip!("stream_follows_new_entries_and_resumes")).await;
    let mut r = env
        .client
        .get(env.url("/v1/stream/?skip_prev=2"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-journal-skip-prev"], "2");
    let mut buf = String::new();
    let got = events(&mut r, &mut buf, 2).await;
    assert_eq!(got[0].1["fields"]["MESSAGE"], "m4");
    assert_eq!(got[1].1["fields"]["MESSAGE"], "m5");
    assert_eq!(got[0].0, got[0].1["cursor"].as_str().unwrap());
    let m4_id = got[0].0.clone();

    // a new entry, written while the stream is open, arrives on it
    env.journal
        .append(&[TestEntry::new("basalt-c.service", "m6 live")])
        .unwrap();
    let got = events(&mut r, &mut buf, 1).await;
    assert_eq!(got[0].1["fields"]["MESSAGE"], "m6 live");
    assert_eq!(env.server.metrics().streams_active(), 1);

    // the client goes away: the body (and its journalctl) is dropped
    drop(r);
    let metrics = env.server.metrics().clone();
    wait_until("the stream to be dropped", || {
        let m = metrics.clone();
        async move { (m.streams_active() == 0).then_some(()) }
    })
    .await;

    // Last-Event-ID resumes after that entry, and skip_prev is ignored then
    let mut r = env
        .client
        .get(env.url("/v1/stream/?skip_prev=100"))
        .header("Accept", "text/event-stream")
        .header("Last-Event-ID", &m4_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut buf = String::new();
    let got = events(&mut r, &mut buf, 2).await;
    let msgs: Vec<&str> = got
        .iter()
        .map(|(_, d)| d["fields"]["MESSAGE"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, ["m5", "m6 live"]);

    // a filtered text stream: only the unit's entries, old and new
    let mut t = env
        .client
        .get(env.url("/v1/stream/?filter=_SYSTEMD_UNIT:basalt-c.service"))
        .header("Accept", "text/plain")
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    env.journal
        .append(&[
            TestEntry::new("basalt-a.service", "not this"),
            TestEntry::new("basalt-c.service", "m9"),
        ])
        .unwrap();
    while text.lines().count() < 3 {
        let chunk = tokio::time::timeout(DEADLINE, t.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with("basalt-c[104]: m4"), "{text}");
    assert!(lines[1].ends_with(": m6 live"), "{text}");
    assert!(lines[2].ends_with(": m9"), "{text}");
}

#[tokio::test]
async fn journal_failures_are_500_and_bad_directories_refused() {
    let journal = journal_or_skip!("journal_failures_are_500_and_bad_directories_refused");
    let e = LogsServer::start(LogsConfig {
        directory: Some(journal.dir().join("missing")),
        ..journal.config()
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");

    let server = LogsServer::start(LogsConfig {
        journalctl: "/nonexistent/journalctl".into(),
        ..journal.config()
    })
    .await
    .unwrap();
    let r = reqwest::get(format!("http://{}/v1/range/", server.addr()))
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("/nonexistent/journalctl"));
}

#[tokio::test]
async fn stopping_the_server_ends_open_streams() {
    let env = Env::new(journal_or_skip!("stopping_the_server_ends_open_streams")).await;
    let mut r = env
        .client
        .get(env.url("/v1/stream/?skip_prev=1"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let got = events(&mut r, &mut buf, 1).await;
    assert_eq!(got[0].1["fields"]["MESSAGE"], "m5");
    let Env {
        journal: _journal,
        server,
        ..
    } = env;
    let metrics = server.metrics().clone();
    drop(server);
    // the body ends cleanly (no error), and its journalctl is gone
    let end = tokio::time::timeout(DEADLINE, r.chunk())
        .await
        .expect("the stream to end")
        .unwrap();
    assert!(end.is_none(), "{end:?}");
    wait_until("the stream's journalctl to be dropped", || {
        let m = metrics.clone();
        async move { (m.streams_active() == 0).then_some(()) }
    })
    .await;
}

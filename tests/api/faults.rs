//! Faults against the real `baton` binary: SIGKILL at random moments under a steady stream of
//! messages, a graceful SIGTERM, and a store that can no longer write (file size limit).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, StoreDb, clickhouse_url, free_port};

/// A gateway process on its own data folder, port and ClickHouse database.
struct Gateway {
    dir: PathBuf,
    port: u16,
    database: String,
    /// The PostgreSQL store, when the suite runs against one; else the SQLite file in `dir`.
    database_url: Option<String>,
    file_size_limit: Option<u64>,
    child: Option<Child>,
}

impl Gateway {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            port: free_port(),
            database: format!("baton_faults_{}", uuid::Uuid::new_v4().simple()),
            database_url: crate::helpers::postgres_store().then(crate::helpers::fresh_database_url),
            file_size_limit: None,
            child: None,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Starts the binary and waits until it answers /healthz.
    async fn start(&mut self) {
        assert!(self.child.is_none());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--clickhouse-url", &clickhouse_url()])
            .env("BATON_CLICKHOUSE_DATABASE", &self.database)
            .env("BATON_API_TOKEN", ADMIN_TOKEN)
            .env("BATON_SHIP_INTERVAL_MS", "100")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(url) = &self.database_url {
            cmd.env("BATON_DATABASE_URL", url);
        }
        if let Some(limit) = self.file_size_limit {
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(move || {
                    // Writes past `limit` fail with EFBIG instead of killing the process.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let rl = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    libc::setrlimit(libc::RLIMIT_FSIZE, &rl);
                    Ok(())
                });
            }
        }
        self.child = Some(cmd.spawn().expect("cannot start baton"));
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "baton did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then the exit status (within 30 s).
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn database(&self) -> StoreDb {
        StoreDb::open(
            self.database_url.as_deref(),
            &self.dir.join("baton.sqlite3"),
        )
        .await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Posts message `i` (every 7th asks for a person); true when acknowledged with a 2xx.
async fn send(client: &reqwest::Client, gw_url: &str, i: u64, text_len: usize) -> Option<u16> {
    let text = if i.is_multiple_of(7) {
        "I want to talk to a human".to_owned()
    } else {
        format!("message {i} {}", "x".repeat(text_len))
    };
    let r = client
        .post(format!("{gw_url}/api/v1/messages"))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(10))
        .json(
            &json!({"sender": {"external_id": format!("crash-customer-{}", i % 40)},
                      "external_id": format!("crash-{i}"), "text": text}),
        )
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

#[tokio::test]
async fn every_acknowledged_message_and_every_event_survives_sigkill_at_random_moments_exactly_once()
 {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::new(dir.path());
    gw.start().await;
    let client = reqwest::Client::new();
    let mut acked = BTreeSet::new();
    let mut next = 0u64;
    let mut rng = rand::rng();
    for _ in 0..4 {
        // A steady stream until a random moment, then SIGKILL mid-stream.
        let run_for = Duration::from_millis(rng.random_range(300..1200));
        let started = Instant::now();
        let url = gw.url("");
        let mut in_flight = Vec::new();
        while started.elapsed() < run_for {
            // Several requests in flight, so the kill lands between receipt and ack too.
            for _ in 0..8 {
                let (client, url, i) = (client.clone(), url.clone(), next);
                next += 1;
                in_flight.push((
                    i,
                    tokio::spawn(async move { send(&client, &url, i, 40).await }),
                ));
            }
            for (i, h) in in_flight.drain(..4) {
                if let Some(200..=299) = h.await.unwrap() {
                    acked.insert(i);
                }
            }
        }
        gw.kill();
        for (i, h) in in_flight {
            if let Some(200..=299) = h.await.unwrap() {
                acked.insert(i);
            }
        }
        gw.start().await;
    }
    // Platforms retry what was not acknowledged: the retries are stored once too.
    let unacked: Vec<u64> = (0..next).filter(|i| !acked.contains(i)).collect();
    for i in &unacked {
        let status = send(&client, &gw.url(""), *i, 40).await;
        assert!(
            matches!(status, Some(200..=299)),
            "retry of {i}: {status:?}"
        );
        acked.insert(*i);
    }
    assert!(
        acked.len() as u64 == next && next > 100,
        "{} of {next}",
        acked.len()
    );

    // Let the bot and the router settle, then a graceful stop that flushes the shipper.
    let pool = gw.database().await;
    crate::helpers::eventually("every message handled", || async {
        let waiting = pool
            .number(
                "SELECT count(*) AS n FROM messages
                 WHERE direction = 'in' AND needs_processing <> FALSE",
            )
            .await
            .ok()?;
        (waiting == 0).then_some(())
    })
    .await;
    pool.close().await;
    let status = gw.terminate().await;
    assert!(status.success(), "SIGTERM exit: {status:?}");

    let pool = gw.database().await;
    let rows: Vec<(String, i64)> = pool
        .fetch(
            "SELECT external_id, count(*) AS n FROM messages WHERE direction = 'in' AND external_id LIKE 'crash-%'
             GROUP BY external_id",
        )
        .await
        .unwrap();
    let stored: BTreeSet<u64> = rows
        .iter()
        .map(|(id, n)| {
            assert_eq!(*n, 1, "{id} stored {n} times");
            id.trim_start_matches("crash-").parse().unwrap()
        })
        .collect();
    assert_eq!(stored, acked, "every acknowledged message is stored");
    let outbox = pool
        .number("SELECT count(*) AS n FROM event_outbox")
        .await
        .unwrap();
    assert_eq!(outbox, 0, "the shutdown flushed the shipper");
    let handoffs = pool
        .number("SELECT count(*) AS n FROM handoffs")
        .await
        .unwrap();
    assert!(handoffs > 0);

    // ClickHouse: every handoff's request once, no event twice.
    let ch = clickhouse::Client::default()
        .with_url(clickhouse_url())
        .with_database(&gw.database)
        .with_validation(false);
    let (total, distinct, requested): (u64, u64, u64) = ch
        .query(
            "SELECT count(), uniqExact(event_id), countIf(event_type = 'requested')
             FROM handoff_events FINAL",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(total, distinct, "an event counted twice");
    assert_eq!(requested, handoffs as u64, "one 'requested' per handoff");
}

fn acked_count(answers: &[(u64, Option<u16>)]) -> usize {
    answers
        .iter()
        .filter(|(_, s)| matches!(s, Some(200..=299)))
        .count()
}

#[tokio::test]
async fn a_store_that_cannot_write_answers_503_and_never_acknowledges_what_it_did_not_store() {
    crate::sqlite_only!(
        "it limits the size of the gateway's own files; PostgreSQL's files belong to its server"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut gw = Gateway::new(dir.path());
    gw.start().await;
    let status = gw.terminate().await;
    assert!(status.success());
    // Every file may grow a little past its size now, then writes fail (EFBIG), as on a
    // full disk.
    let largest = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    // (1 MiB: room for dozens of messages whether the WAL or the checkpointed database file
    // reaches the limit first.)
    gw.file_size_limit = Some(largest + 1024 * 1024);
    gw.start().await;
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for i in 0..600u64 {
        let status = send(&client, &gw.url(""), 1 + i * 7, 8_000).await;
        answers.push((i, status));
        if status == Some(503) {
            break;
        }
    }
    let refused = answers.iter().filter(|(_, s)| *s == Some(503)).count();
    assert!(refused > 0, "the store never filled up: {answers:?}");
    assert!(
        acked_count(&answers) > 5,
        "it took messages before it filled up: {answers:?}"
    );
    let acked: BTreeSet<u64> = answers
        .iter()
        .filter(|(_, s)| matches!(s, Some(200..=299)))
        .map(|(i, _)| 1 + i * 7)
        .collect();
    gw.kill();

    // Back with room: what was acknowledged is there, what was refused is not.
    gw.file_size_limit = None;
    gw.start().await;
    let pool = gw.database().await;
    let rows: Vec<(String,)> = pool
        .fetch(
            "SELECT external_id FROM messages WHERE direction = 'in' AND external_id LIKE 'crash-%'",
        )
        .await
        .unwrap();
    let stored: BTreeSet<u64> = rows
        .iter()
        .map(|(id,)| id.trim_start_matches("crash-").parse().unwrap())
        .collect();
    assert!(
        acked.is_subset(&stored),
        "acknowledged but lost: {:?}",
        acked.difference(&stored)
    );
    let refused_ids: BTreeSet<u64> = answers
        .iter()
        .filter(|(_, s)| *s == Some(503))
        .map(|(i, _)| 1 + i * 7)
        .collect();
    assert!(
        refused_ids.is_disjoint(&stored),
        "a refused message was stored"
    );
}

/// What the proxy in front of ClickHouse does, to new and open connections alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProxyMode {
    /// Passes bytes through.
    Pass,
    /// Passes them through, each chunk from ClickHouse 300 ms late.
    Slow,
    /// Closes connections.
    Drop,
    /// Swallows what either side sends: requests get no answer.
    Hang,
}

type Mode = std::sync::Arc<std::sync::Mutex<ProxyMode>>;

/// A TCP proxy in front of a ClickHouse server whose behaviour the test switches.
struct FlakyProxy {
    port: u16,
    mode: Mode,
}

/// Copies one direction chunk by chunk, asking the mode before each chunk.
async fn forward<R, W>(mut from: R, mut to: W, mode: Mode, delay: bool)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = *mode.lock().unwrap();
        match now {
            ProxyMode::Drop => break,
            ProxyMode::Hang => continue,
            ProxyMode::Slow if delay => tokio::time::sleep(Duration::from_millis(300)).await,
            _ => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl FlakyProxy {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode: Mode = std::sync::Arc::new(std::sync::Mutex::new(ProxyMode::Pass));
        let current = mode.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if *current.lock().unwrap() == ProxyMode::Drop {
                    drop(inbound);
                    continue;
                }
                let mode = current.clone();
                tokio::spawn(async move {
                    let Ok(outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    // Either direction ending (a drop) ends the connection.
                    tokio::select! {
                        _ = forward(ri, wo, mode.clone(), false) => {}
                        _ = forward(ro, wi, mode, true) => {}
                    }
                });
            }
        });
        Self { port, mode }
    }

    fn set(&self, mode: ProxyMode) {
        *self.mode.lock().unwrap() = mode;
    }
}

#[tokio::test]
async fn a_slow_dropping_or_hanging_clickhouse_never_stops_ingest_and_every_event_arrives_once() {
    let upstream: u16 = clickhouse_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = FlakyProxy::start(upstream).await;
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let app = crate::helpers::spawn_app_with(|s| s.clickhouse_url = proxy_url).await;
    let url = app.url("");
    let client = reqwest::Client::new();
    let mut sent = 0u64;
    for mode in [
        ProxyMode::Slow,
        ProxyMode::Drop,
        ProxyMode::Hang,
        ProxyMode::Pass,
    ] {
        proxy.set(mode);
        // Two seconds of customers asking for a person, every one acknowledged at once.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let status = client
                .post(format!("{url}/api/v1/messages"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"sender": {"external_id": format!("flaky-{sent}")},
                              "text": "I want to talk to a human"}))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16());
            assert!(
                matches!(status, Some(200..=299)),
                "ingest answered {status:?} while ClickHouse was {mode:?}"
            );
            sent += 1;
        }
    }
    // Every customer asked for a person: two events each (requested, queued).
    let expected = 2 * sent;
    let direct = clickhouse::Client::default()
        .with_url(clickhouse_url())
        .with_database(&app.settings.clickhouse_database)
        .with_validation(false);
    crate::helpers::eventually_within(
        "every event in ClickHouse once the proxy passes again",
        Duration::from_secs(120),
        || async {
            let backlog = app.services.store.outbox_len().await.ok()?;
            let (rows, distinct): (u64, u64) = direct
                .query("SELECT count(), uniqExact(event_id) FROM handoff_events FINAL")
                .fetch_one()
                .await
                .ok()?;
            (backlog == 0 && distinct == expected && rows == expected).then_some(())
        },
    )
    .await;
    assert!(
        app.services.shipper.stats().failures() > 0,
        "the shipper met the faults (else this test proves nothing)"
    );
}

//! Scale benchmark: does the gateway slow down or grow as its store fills?
//!
//!   cargo bench --bench scale -- [--conversations N] [--messages-per N] [--open N]
//!                                [--seconds N] [--connections N]
//!
//! (defaults: 1,000,000 conversations of 10 messages each, so 10,000,000 messages, 100,000 of
//! the conversations open with the bot, 10 s of load). Runs the real binary (`baton serve`)
//! on one data folder, three times:
//! 1. **empty store**: RSS idle, then API messages in a closed loop (64 connections, senders
//!    `bench-user-0..999`), the ingest rate and RSS after;
//! 2. the store is filled directly in SQL (one customer, identity and conversation per
//!    conversation, the messages alternating customer and bot), then **full store**: the same
//!    load and readings;
//! 3. then one message to the customer of every open conversation (each finds its open
//!    conversation and the bot answers there), and RSS once they are all answered: the memory
//!    that 100,000 open, active conversations cost.
//!
//! Targets (issue 8): the full store's ingest rate and RSS within 20% of the empty store's;
//! RSS under 200 MB at 100,000 open conversations. No ClickHouse is needed: these messages
//! create no handoffs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;

mod common;
use common::{arg, closed_loop, free_port};

const TOKEN: &str = "bench-scale-admin-token";

/// The gateway as operators run it: the release binary, its own process.
struct Gateway {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Gateway {
    async fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir)
            // Nothing listens there: events wait in the outbox (this load makes none).
            .args(["--clickhouse-url", "http://127.0.0.1:9"])
            .env("BATON_API_TOKEN", TOKEN)
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start baton");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        // Any answer will do: /healthz says 503 while ClickHouse is unreachable.
        while client.get(format!("{url}/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "baton did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            url,
            dir: dir.to_path_buf(),
        }
    }

    /// Resident memory now and at its peak, in MB (from /proc).
    fn rss_mb(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Waits until the bot has answered every inbound message (read from the store file).
    async fn drained(&self) {
        let mut conn = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}?mode=ro",
            self.dir.join("baton.sqlite3").display()
        ))
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let backlog: i64 =
                sqlx::query_scalar("SELECT count(*) FROM messages WHERE needs_processing = 1")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            if backlog == 0 || Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap();
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// `seconds` of API messages from 1,000 senders in a closed loop; the rate and RSS after.
async fn load(gw: &Gateway, seconds: u64, connections: usize) -> (f64, (f64, f64)) {
    let url = format!("{}/api/v1/messages", gw.url);
    let run = closed_loop(connections, Duration::from_secs(seconds), move |client| {
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"sender":{{"external_id":"bench-user-{}","name":"Bench"}},"external_id":"scale-bench-{}-{n}","text":"What are your opening hours?"}}"#,
                n % 1000,
                std::process::id()
            ))
    })
    .await;
    assert_eq!(run.duplicates, 0, "the load must be new messages");
    assert_eq!(run.errors, 0, "every message must be acknowledged");
    println!(
        "  {} messages in {:.1} s: {:.0} msg/s, ack p50 {:.1} ms, p99 {:.1} ms (closed loop)",
        run.requests,
        run.elapsed.as_secs_f64(),
        run.rate(),
        run.pct(0.5),
        run.pct(0.99)
    );
    gw.drained().await;
    (run.rate(), gw.rss_mb())
}

/// Fills the store with `conversations` conversations of `per` messages, the first `open` of
/// them open with the bot, in chunks of one transaction each.
async fn fill(db: &Path, conversations: u64, per: u64, open: u64) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::raw_sql(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA cache_size = -256000;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let base_ms: i64 = 1_700_000_000_000;
    let chunk = 50_000;
    let mut from = 0;
    while from < conversations {
        let to = (from + chunk).min(conversations) - 1;
        let mut tx = conn.begin().await.unwrap();
        let nums = "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)";
        for sql in [
            format!(
                "{nums} INSERT INTO customers (id, display_name, created_at)
                 SELECT printf('00000000-0000-4000-8000-%012x', i), 'Scale ' || i, ?3 + i FROM n"
            ),
            format!(
                "{nums} INSERT INTO identities (kind, value, customer_id, created_at)
                 SELECT 'api', 'scale-user-' || i, printf('00000000-0000-4000-8000-%012x', i), ?3 + i FROM n"
            ),
            format!(
                "{nums} INSERT INTO conversations (id, channel, status, customer_id, created_at, updated_at)
                 SELECT printf('00000001-0000-4000-8000-%012x', i), 'api',
                        CASE WHEN i < ?4 THEN 'bot' ELSE 'resolved' END,
                        printf('00000000-0000-4000-8000-%012x', i), ?3 + i, ?3 + i FROM n"
            ),
            format!(
                "{nums}, k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < ?5 - 1)
                 INSERT INTO messages (id, conversation_id, channel, direction, author_kind, text,
                                       external_id, delivery_status, created_at)
                 SELECT printf('00000002-0000-4000-8000-%012x', i * ?5 + j),
                        printf('00000001-0000-4000-8000-%012x', i), 'api',
                        CASE WHEN j % 2 = 0 THEN 'in' ELSE 'out' END,
                        CASE WHEN j % 2 = 0 THEN 'customer' ELSE 'bot' END,
                        CASE WHEN j % 2 = 0 THEN 'Where is my order number ' || i || '?'
                             ELSE 'Your order ships within two days.' END,
                        CASE WHEN j % 2 = 0 THEN 'scale-' || i || '-' || j END,
                        CASE WHEN j % 2 = 0 THEN 'received' ELSE 'sent' END,
                        ?3 + i * 1000 + j FROM n, k"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(from as i64)
                .bind(to as i64)
                .bind(base_ms)
                .bind(open as i64)
                .bind(per as i64)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        from = to + 1;
    }
    sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
        .execute(&mut conn)
        .await
        .unwrap();
}

fn main() {
    let conversations = arg("--conversations", 1_000_000);
    let per = arg("--messages-per", 10);
    let open = arg("--open", 100_000).min(conversations);
    let seconds = arg("--seconds", 10);
    let connections = arg("--connections", 64) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!("machine: {}", common::machine());
        let dir = tempfile::tempdir().unwrap();

        let gw = Gateway::start(dir.path()).await;
        let idle_empty = gw.rss_mb();
        // Warm-up, so both measured runs start with the same caches and a grown heap.
        load(&gw, 2, connections).await;
        let (rate_empty, rss_empty) = load(&gw, seconds, connections).await;
        gw.stop();
        println!(
            "empty store: RSS idle {:.0} MB; ingest {rate_empty:.0} msg/s; RSS after {:.0} MB (peak {:.0} MB)",
            idle_empty.0, rss_empty.0, rss_empty.1
        );

        let db = dir.path().join("baton.sqlite3");
        let started = Instant::now();
        fill(&db, conversations, per, open).await;
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        println!(
            "filled: {conversations} conversations, {} messages, {open} open, in {:.0} s; file {:.1} GB",
            conversations * per,
            started.elapsed().as_secs_f64(),
            size as f64 / 1e9
        );

        let gw = Gateway::start(dir.path()).await;
        let idle_full = gw.rss_mb();
        load(&gw, 2, connections).await;
        let (rate_full, rss_full) = load(&gw, seconds, connections).await;
        println!(
            "full store: RSS idle {:.0} MB; ingest {rate_full:.0} msg/s; RSS after {:.0} MB (peak {:.0} MB)",
            idle_full.0, rss_full.0, rss_full.1
        );

        // Every open conversation gets a message, and the bot answers in each.
        let url = format!("{}/api/v1/messages", gw.url);
        let started = Instant::now();
        let per_connection = open.div_ceil(connections as u64);
        let mut tasks = Vec::new();
        for c in 0..connections as u64 {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in (c * per_connection)..((c + 1) * per_connection).min(open) {
                    let r = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body(format!(
                            r#"{{"sender":{{"external_id":"scale-user-{i}"}},"external_id":"scale-touch-{i}","text":"Any news about my order?"}}"#
                        ))
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        gw.drained().await;
        let touched = started.elapsed();
        let rss_open = gw.rss_mb();
        gw.stop();
        println!(
            "{open} open conversations each got a message and a bot answer in {:.0} s ({:.0} msg/s); RSS {:.0} MB (peak {:.0} MB)",
            touched.as_secs_f64(),
            open as f64 / touched.as_secs_f64(),
            rss_open.0,
            rss_open.1
        );
        let rate_ratio = 100.0 * rate_full / rate_empty;
        let rss_ratio = 100.0 * rss_full.0 / rss_empty.0;
        println!(
            "full / empty: ingest rate {rate_ratio:.1}%, RSS {rss_ratio:.1}% (targets: rate at least 80%, RSS at most 120%)"
        );
        println!(
            "REPORT scale | {conversations} conversations, {} messages, {open} open | {rate_empty:.0} msg/s, {:.0} MB | {rate_full:.0} msg/s, {:.0} MB | {rate_ratio:.1}% | {rss_ratio:.1}% | {:.0} MB |",
            conversations * per,
            rss_empty.0,
            rss_full.0,
            rss_open.0
        );
    });
}

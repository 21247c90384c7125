//! Event pipeline benchmark: handoff events from the SQLite outbox into ClickHouse through the
//! real shipper (read, decode, Inserter batches, acknowledge), beside a direct bulk INSERT of
//! the same rows into the same server in the same run. The ratio is the figure that matters.
//!
//!   cargo bench --bench pipeline -- [--events N] [--rounds N] [--batch-size N] [--stages]
//!
//! `--stages` instead times each stage of one shipment alone (outbox read and decode, rows,
//! INSERT, acknowledgement) for a few batch sizes, then acknowledging part of the outbox
//! against all of it, and one INSERT against many: where the time goes.
//!
//! Each round fills a fresh outbox with N events (untimed), then times the shipper's worker
//! from start until the outbox is empty; and times one INSERT of the same N rows into a second,
//! fresh database. The two sides take turns going first, each starts on a quiet server (disk
//! synced, no merges running), and both counts are checked in ClickHouse (`FINAL`) afterwards.
//! The summary is the median of the rounds' ratios, with their range.
//!
//! Uses the ClickHouse at BATON_TEST_CLICKHOUSE_URL, else starts a private one with
//! scripts/clickhouse-private.sh (and stops it at the end).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::analytics::ClickHouse;
use baton::analytics::Shipper;
use baton::analytics::clickhouse::EventRow;
use baton::model::{
    AgentId, ChannelKind, ConversationId, HandoffEvent, HandoffEventKind, HandoffId, HandoffReason,
    Priority, Timestamp,
};
use baton::store::{SharedStore, SqliteStore, encode_outbox_payload};

mod common;
use common::free_port;

struct Args {
    events: usize,
    rounds: usize,
    batch_size: u32,
    stages: bool,
}

fn args() -> Args {
    let mut a = Args {
        events: 200_000,
        rounds: 7,
        batch_size: baton::config::Settings::default().ship_batch_size,
        stages: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--events" => a.events = argv[i + 1].parse().expect("--events N"),
            "--rounds" => a.rounds = argv[i + 1].parse().expect("--rounds N"),
            "--batch-size" => a.batch_size = argv[i + 1].parse().expect("--batch-size N"),
            "--stages" => a.stages = true,
            _ => {}
        }
        i += 1;
    }
    a
}

/// A private clickhouse-server for the run, killed on drop.
struct Server {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn clickhouse() -> (String, Option<Server>) {
    if let Ok(url) = std::env::var("BATON_TEST_CLICKHOUSE_URL") {
        return (url, None);
    }
    let dir = tempfile::tempdir().unwrap();
    let (http, tcp) = (free_port(), free_port());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/clickhouse-private.sh");
    let child = Command::new("bash")
        .arg(script)
        .arg(dir.path())
        .arg(http.to_string())
        .arg(tcp.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start clickhouse-server");
    let server = Server { child, _dir: dir };
    let url = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{url}/ping")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "clickhouse-server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (url, Some(server))
}

/// A realistic mix: every kind of step, several channels, teams, agents, waits.
fn events(n: usize) -> Vec<HandoffEvent> {
    use HandoffEventKind::*;
    let kinds = [
        Requested,
        Queued,
        Offered,
        Accepted,
        Assigned,
        FirstAgentReply,
        Resolved,
    ];
    let channels = [
        ChannelKind::WebChat,
        ChannelKind::Api,
        ChannelKind::WhatsApp,
        ChannelKind::Email,
    ];
    let now = Timestamp::now();
    let agents: Vec<AgentId> = (0..50).map(|_| AgentId::new()).collect();
    let mut out = Vec::with_capacity(n);
    let mut handoff = (HandoffId::new(), ConversationId::new());
    for i in 0..n {
        let step = i % kinds.len();
        if step == 0 {
            handoff = (HandoffId::new(), ConversationId::new());
        }
        let requested = Timestamp::from_millis(now.as_millis() - 60_000);
        out.push(
            HandoffEvent::new(
                kinds[step],
                handoff.0,
                handoff.1,
                channels[(i / kinds.len()) % channels.len()],
                HandoffReason::CustomerRequest,
                Priority::Normal,
                (step >= 2).then(|| agents[i % agents.len()]),
                requested,
                Timestamp::from_millis(now.as_millis() - (n - i) as i64),
            )
            .with(Some(["billing", "tech", ""][i % 3]), Some("asks-for-human")),
        );
    }
    out
}

/// Writes the events into the store's outbox, as the store's own transactions would.
async fn fill_outbox(path: &std::path::Path, events: &[HandoffEvent]) {
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for chunk in events.chunks(10_000) {
        let rows: Vec<serde_json::Value> = chunk
            .iter()
            .map(|e| serde_json::json!({"id": e.event_id.to_string(), "p": encode_outbox_payload(e)}))
            .collect();
        sqlx::query(
            "INSERT INTO event_outbox (event_id, payload, created_at)
             SELECT value ->> 'id', value ->> 'p', ? FROM json_each(?)",
        )
        .bind(Timestamp::now().as_millis())
        .bind(serde_json::to_string(&rows).unwrap())
        .execute(&db)
        .await
        .unwrap();
    }
    // The filling is not what is measured: its pages move from the write-ahead log into the
    // database now, not while the shipper runs.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
}

/// A new database on the server at `url`, its name made unique to this process, with the
/// schema applied.
async fn fresh_database(url: &str, name: &str) -> ClickHouse {
    let ch = ClickHouse::new(
        url,
        &format!("{name}_{}", std::process::id()),
        "default",
        None,
    )
    .unwrap();
    ch.migrate().await.unwrap();
    ch
}

async fn count_final(ch: &ClickHouse) -> u64 {
    ch.client()
        .query("SELECT count() FROM handoff_events FINAL")
        .fetch_one()
        .await
        .unwrap()
}

/// Waits until the server is quiet before a timed side: what the untimed steps wrote (the
/// outbox, the other side's parts) is on disk and ClickHouse merges nothing, so that neither
/// side pays for the other's leftovers.
async fn quiesce(ch: &ClickHouse) {
    let _ = Command::new("sync").status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let merging: u64 = ch
            .client()
            .query("SELECT count() FROM system.merges")
            .fetch_one()
            .await
            .unwrap();
        if merging == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let a = args();
    let (url, _server) = clickhouse().await;
    println!(
        "pipeline benchmark: {} events per round, {} rounds, batch size {}, ClickHouse at {url}",
        a.events, a.rounds, a.batch_size
    );
    if a.stages {
        // Where the shipper's time goes: each stage of one shipment, timed alone.
        let events = events(a.events);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baton.sqlite3");
        let sqlite = Arc::new(SqliteStore::open(&path).await.unwrap());
        fill_outbox(&path, &events).await;
        let store: SharedStore = sqlite.clone();
        let ch = fresh_database(&url, "bench_stages").await;
        for bs in [5000u32, 20000, 50000] {
            let t = Instant::now();
            let b = store.outbox_batch(0, bs).await.unwrap();
            let t_read = t.elapsed();
            let t = Instant::now();
            let rows: Vec<EventRow> = b
                .iter()
                .map(|e| EventRow::from_event(e.seq, e.event.as_ref().unwrap()))
                .collect();
            let t_conv = t.elapsed();
            let t = Instant::now();
            ch.insert_rows(&rows).await.unwrap();
            let t_ins = t.elapsed();
            let t = Instant::now();
            store
                .outbox_ack(b.iter().map(|e| e.seq).collect())
                .await
                .unwrap();
            let t_ack = t.elapsed();
            println!(
                "{bs} events: outbox read+decode {t_read:.1?}, to rows {t_conv:.1?}, INSERT {t_ins:.1?}, ack {t_ack:.1?}"
            );
        }
        // Acknowledging with events left behind (range deletes) and acknowledging all the
        // outbox holds (the store empties it).
        let waiting: Vec<i64> = {
            let mut seqs = Vec::new();
            let mut after = 0;
            loop {
                let b = store.outbox_batch(after, 50_000).await.unwrap();
                let Some(last) = b.last() else { break };
                after = last.seq;
                seqs.extend(b.iter().map(|e| e.seq));
            }
            seqs
        };
        if waiting.len() > 50_000 {
            let t = Instant::now();
            store.outbox_ack(waiting[..50_000].to_vec()).await.unwrap();
            let t_some = t.elapsed();
            let t = Instant::now();
            store.outbox_ack(waiting[50_000..].to_vec()).await.unwrap();
            let t_all = t.elapsed();
            println!(
                "ack 50000 of {}: {t_some:.1?}; ack all {} left: {t_all:.1?}",
                waiting.len(),
                waiting.len() - 50_000
            );
        }
        // What an INSERT costs beyond its rows (ClickHouse writes a new part for each): the
        // same rows in one INSERT and in INSERTs of 5,000.
        let rows: Vec<EventRow> = events
            .iter()
            .take(50_000)
            .enumerate()
            .map(|(i, e)| EventRow::from_event(i as i64 + 1, e))
            .collect();
        let t = Instant::now();
        ch.insert_rows(&rows).await.unwrap();
        let t_one = t.elapsed();
        let t = Instant::now();
        for part in rows.chunks(5_000) {
            ch.insert_rows(part).await.unwrap();
        }
        let t_many = t.elapsed();
        println!(
            "{} rows: one INSERT {t_one:.1?}, INSERTs of 5,000 {t_many:.1?}",
            rows.len()
        );
        drop_database(&ch).await;
        return;
    }
    let mut shipped_rates = Vec::new();
    let mut direct_rates = Vec::new();
    let mut ratios = Vec::new();
    for round in 1..=a.rounds {
        let events = events(a.events);
        // Alternate which side goes first, so that neither always meets a warmer (or busier)
        // server.
        let (s, d) = if round % 2 == 1 {
            let s = through_shipper(&a, &url, round, &events).await;
            (s, direct_insert(&url, round, &events).await)
        } else {
            let d = direct_insert(&url, round, &events).await;
            (through_shipper(&a, &url, round, &events).await, d)
        };
        println!(
            "round {round}: shipper {s:>9.0} events/s | direct INSERT {d:>9.0} rows/s | ratio {:.1}%",
            100.0 * s / d
        );
        shipped_rates.push(s);
        direct_rates.push(d);
        ratios.push(100.0 * s / d);
    }
    let (lo, hi) = (
        ratios.iter().copied().fold(f64::MAX, f64::min),
        ratios.iter().copied().fold(f64::MIN, f64::max),
    );
    println!(
        "median: shipper {:.0} events/s, direct INSERT {:.0} rows/s, ratio {:.1}% (rounds {lo:.1}-{hi:.1}%; target: at least 80%)",
        median(shipped_rates),
        median(direct_rates),
        median(ratios),
    );
}

/// One round through the shipper: fills a fresh outbox with `events` (untimed), then times the
/// worker from its start until the outbox is empty. Returns events per second.
async fn through_shipper(a: &Args, url: &str, round: usize, events: &[HandoffEvent]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.sqlite3");
    let sqlite = Arc::new(SqliteStore::open(&path).await.unwrap());
    fill_outbox(&path, events).await;
    let store: SharedStore = sqlite.clone();
    let ch = fresh_database(url, &format!("bench_ship_{round}")).await;
    let shipper = Shipper::new(
        store.clone(),
        ch.clone(),
        a.batch_size,
        Duration::from_secs(1),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    quiesce(&ch).await;
    let started = Instant::now();
    let worker = tokio::spawn(shipper.clone().run(stopped));
    // Watch the shipper's own counter (an atomic, acknowledged events only), then check the
    // outbox: counting a 200,000-row table every few milliseconds would cost the store more
    // than the shipper's reads do and slow down what is measured.
    while shipper.stats().shipped() < events.len() as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while store.outbox_len().await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    worker.await.unwrap();
    sqlite.close().await;
    assert_eq!(shipper.stats().failures(), 0, "no shipment failed");
    assert_eq!(
        count_final(&ch).await,
        events.len() as u64,
        "every event shipped once"
    );
    drop_database(&ch).await;
    events.len() as f64 / secs
}

/// One round directly: the same rows, built beforehand (untimed), in one bulk INSERT into a
/// fresh database. Returns rows per second.
async fn direct_insert(url: &str, round: usize, events: &[HandoffEvent]) -> f64 {
    let direct = fresh_database(url, &format!("bench_direct_{round}")).await;
    let rows: Vec<EventRow> = events
        .iter()
        .enumerate()
        .map(|(i, e)| EventRow::from_event(i as i64 + 1, e))
        .collect();
    quiesce(&direct).await;
    let started = Instant::now();
    direct.insert_rows(&rows).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(count_final(&direct).await, events.len() as u64);
    drop_database(&direct).await;
    events.len() as f64 / secs
}

async fn drop_database(ch: &ClickHouse) {
    let _ = ch
        .client()
        .query(&format!("DROP DATABASE IF EXISTS {}", ch.database()))
        .execute()
        .await;
}

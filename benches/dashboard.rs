//! Dashboard benchmark: full page render time over a large event history, and how fresh the
//! page is after a handoff.
//!
//! `cargo bench --bench dashboard -- [--events N] [--renders N]` (defaults 10,000,000 and 20).
//! Starts a private clickhouse-server (scripts/clickhouse-private.sh; or set
//! BATON_TEST_CLICKHOUSE_URL), inserts N synthetic handoff events spread over 30 days (seven
//! steps per handoff, server-side from `numbers()`, each handoff with waits of its own),
//! starts the gateway against it, then:
//! - waits for the gateway's rollup worker to cover the settled hours and days (and says how
//!   long that took);
//! - renders `/dashboard` for a 30-day window (every figure, both charts, all breakdowns) N
//!   times and reports p50/p95/max, each time with a distinct filter so the report cache never
//!   answers; then the same for a 1-day window, the longest the default range (today) can be,
//!   and for 30 days of one channel (a filtered report reads the rollup per combination);
//! - measures freshness: from a customer's "I want a person" to the live panel's stream
//!   showing it, and to the 1-hour report counting it (through the outbox, the shipper and
//!   ClickHouse).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::config::Settings;
use baton::web::Application;

mod common;
use common::{arg, free_port};

const TOKEN: &str = "bench-admin-token-0123456789";

/// A private ClickHouse for the run, or the one named by BATON_TEST_CLICKHOUSE_URL.
fn clickhouse(dir: &std::path::Path) -> (String, Option<std::process::Child>) {
    if let Ok(url) = std::env::var("BATON_TEST_CLICKHOUSE_URL") {
        return (url, None);
    }
    let (http, tcp) = (free_port(), free_port());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/clickhouse-private.sh");
    let child = Command::new("bash")
        .arg(script)
        .arg(dir)
        .arg(http.to_string())
        .arg(tcp.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start clickhouse-server");
    let url = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(Instant::now() < deadline, "clickhouse-server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (url, Some(child))
}

async fn sql(client: &reqwest::Client, url: &str, db: &str, q: &str) -> String {
    let r = client
        .post(format!("{url}/?database={db}"))
        .body(q.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{q}: {text}");
    text
}

/// Whether the 1-hour drill-down of requested handoffs lists the conversation's handoff (a
/// count would not do: synthetic handoffs slide out of the window as time passes).
async fn reported(http: &reqwest::Client, base: &str, conversation: &str) -> bool {
    http.get(format!(
        "{base}/api/v1/reports/handoffs?drill=requested&range=1h"
    ))
    .bearer_auth(TOKEN)
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap()
    .contains(conversation)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let events = arg("--events", 10_000_000);
    let renders = arg("--renders", 20).max(2) as usize;
    let work = tempfile::tempdir().unwrap();
    let (ch_url, mut ch_child) = clickhouse(&work.path().join("clickhouse"));
    let db = "baton_bench_dashboard";
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        data_dir: work.path().join("data"),
        clickhouse_url: ch_url.clone(),
        clickhouse_database: db.into(),
        api_token: Some(TOKEN.to_owned().into()),
        ..Settings::default()
    };
    settings.ship_interval_ms = 200;
    let app = Application::build(settings).await.expect("gateway starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let services = app.services();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    // The schema exists once the shipper has migrated.
    services.shipper.drain().await.expect("schema");

    // N events: seven steps per handoff, handoffs spread over the last 30 days.
    let handoffs = (events / 7).max(1);
    let started = Instant::now();
    sql(
        &http,
        &ch_url,
        db,
        &format!(
            "INSERT INTO handoff_events (event_id, event_type, handoff_id, conversation_id, channel, reason,
                 priority, agent_id, occurred_at, occurred_at_ms, wait_ms, seq, team, detail)
             SELECT concat('e', toString(number)),
                    arrayElement(['requested', 'queued', 'offered', 'accepted', 'assigned', 'first_agent_reply', 'resolved'], toUInt32(number % 7) + 1),
                    concat('h', toString(intDiv(number, 7))),
                    concat('c', toString(intDiv(number, 7))),
                    arrayElement(['web_chat', 'api', 'email', 'whats_app', 'telegram'], toUInt32(intDiv(number, 7) % 5) + 1),
                    arrayElement(['customer_request', 'bot_request', 'frustration', 'bot_failure'], toUInt32(intDiv(number, 7) % 4) + 1),
                    arrayElement(['normal', 'high', 'low', 'urgent'], toUInt32(intDiv(number, 7) % 4) + 1),
                    concat('agent-', toString(intDiv(number, 7) % 50)),
                    toDateTime(intDiv(t0 + off, 1000)),
                    t0 + off,
                    off,
                    number,
                    arrayElement(['', 'billing', 'tech'], toUInt32(intDiv(number, 7) % 3) + 1),
                    ''
             FROM
             (
                 -- Per handoff, requested evenly over the 30 days before the last 90 min
                 -- (so every step has happened), with waits of its own (a hash of the
                 -- handoff): queue waits skewed short with a tail to 10 min, accepting within
                 -- a minute, a first reply within 5 min, handled in 1 min to 1 h; t0 + off
                 -- is when the step happened.
                 SELECT number,
                     (toUInt64(toUInt32(now())) - 5400 - intDiv(intDiv(number, 7) * 2592000, {handoffs})) * 1000 AS t0,
                     toUInt64(pow((cityHash64(intDiv(number, 7), 1) % 1000000) / 1000000., 3) * 600000) AS a,
                     1000 + cityHash64(intDiv(number, 7), 2) % 59000 AS b,
                     5000 + cityHash64(intDiv(number, 7), 3) % 295000 AS c,
                     60000 + cityHash64(intDiv(number, 7), 4) % 3540000 AS d,
                     arrayElement([toUInt64(0), 0, a, a + b, a + b, a + b + c, a + b + c + d], toUInt32(number % 7) + 1) AS off
                 FROM numbers({events})
             )"
        ),
    )
    .await;
    sql(&http, &ch_url, db, "OPTIMIZE TABLE handoff_events FINAL").await;
    // The per-handoff summary the materialized view filled, merged as background merges would.
    sql(&http, &ch_url, db, "OPTIMIZE TABLE handoff_summary FINAL").await;
    let loaded = started.elapsed();
    let rows = sql(&http, &ch_url, db, "SELECT count() FROM handoff_events").await;
    println!(
        "loaded {} events in {:.1} s",
        rows.trim(),
        loaded.as_secs_f64()
    );
    // The gateway's rollup worker computes the settled hours and days (once the inserts have
    // been quiet for a few seconds); the renders below are of the steady state it keeps.
    let sla = baton::analytics::reports::SlaTargets::from_settings(&services.settings);
    let caught_up = Instant::now();
    loop {
        let now = baton::model::Timestamp::now().as_millis();
        let left = baton::analytics::rollup::pending(&services.clickhouse, &sla, now)
            .await
            .expect("rollup state");
        if left == 0 {
            break;
        }
        assert!(
            caught_up.elapsed() < Duration::from_secs(1800),
            "the rollup did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let spans = sql(
        &http,
        &ch_url,
        db,
        "SELECT count() FROM handoff_rollup_commits FINAL",
    )
    .await;
    let rollup_rows = sql(&http, &ch_url, db, "SELECT count() FROM handoff_rollup").await;
    println!(
        "rollup caught up {:.1} s after the load ({} spans, {} rows)",
        caught_up.elapsed().as_secs_f64(),
        spans.trim(),
        rollup_rows.trim()
    );

    // Full page renders, each with a filter the cache has not seen (a custom window ending a
    // different second): 30 days, then 1 day (both read the rollup per report row), then 30
    // days of one channel (filtered: the rollup per combination of attributes).
    let now = baton::model::Timestamp::now().as_millis();
    for (days, filter) in [(30, ""), (1, ""), (30, "&channel=web_chat")] {
        let mut times = Vec::with_capacity(renders);
        for i in 0..renders {
            let to = now - i as i64 * 1000;
            let from = to - days * 86_400_000;
            let t = Instant::now();
            let r = http
                .get(format!(
                    "{base}/dashboard?range=custom&from={from}&to={to}{filter}"
                ))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            let page = r.text().await.unwrap();
            times.push(t.elapsed());
            assert!(
                page.contains("data-metric=\"requested\""),
                "the page has its figures"
            );
        }
        times.sort();
        println!(
            "dashboard render over {} events ({days} days{}, {} renders): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            rows.trim(),
            if filter.is_empty() {
                ""
            } else {
                ", one channel"
            },
            renders,
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.95).as_secs_f64() * 1000.0,
            times.last().unwrap().as_secs_f64() * 1000.0
        );
    }

    // Freshness, through the live panel's stream and through the ClickHouse report.
    let mut live = http
        .get(format!("{base}/dashboard/live"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    // The first event is the panel as it is now.
    let _ = live.chunk().await.unwrap();
    let asked = Instant::now();
    let r = http
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"sender": {"external_id": "fresh"}, "text": "I want to talk to a person"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let conversation = r.json::<serde_json::Value>().await.unwrap()["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut buffered = String::new();
    let live_after = loop {
        let chunk = tokio::time::timeout(Duration::from_secs(30), live.chunk())
            .await
            .expect("the live panel to update")
            .unwrap()
            .expect("stream open");
        buffered.push_str(&String::from_utf8_lossy(&chunk));
        if buffered.contains("data-live=\"queued-now\">1<") {
            break asked.elapsed();
        }
    };
    println!(
        "freshness: live panel {:.0} ms after the customer's message",
        live_after.as_secs_f64() * 1000.0
    );
    let report_after = loop {
        if reported(&http, &base, &conversation).await {
            break Some(asked.elapsed());
        }
        if asked.elapsed() > Duration::from_secs(120) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    match report_after {
        Some(t) => println!(
            "freshness: the 1-hour report listed it {:.0} ms after the message",
            t.as_secs_f64() * 1000.0
        ),
        None => {
            let metrics = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            println!("freshness: the 1-hour report did not list it within 120 s; {metrics}")
        }
    }
    handle.stop(true).await;
    drop(Arc::clone(&services));
    if let Some(child) = ch_child.as_mut() {
        let _ = child.kill();
    }
}

//! The event pipeline end to end: outbox → shipper → ClickHouse, through outages and bad data.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use baton::model::{
    ChannelKind, ConversationId, HandoffEvent, HandoffEventKind, HandoffId, HandoffReason,
    Priority, Timestamp,
};
use serde_json::{Value, json};

use baton::analytics::READ_CHUNK;
use baton::config::Settings;
use baton::store::encode_outbox_payload;

use crate::helpers::{
    ADMIN_TOKEN, PrivateClickHouse, StoreDb, TestApp, eventually, eventually_within, restart_with,
    spawn_app_with,
};

/// How many events ClickHouse holds: (rows as reports count them, distinct event ids).
async fn clickhouse_counts(app: &TestApp) -> Option<(u64, u64)> {
    let ch = app.services.clickhouse.client();
    let final_rows: u64 = ch
        .query("SELECT count() FROM handoff_events FINAL")
        .fetch_one()
        .await
        .ok()?;
    let distinct: u64 = ch
        .query("SELECT uniqExact(event_id) FROM handoff_events")
        .fetch_one()
        .await
        .ok()?;
    Some((final_rows, distinct))
}

async fn health(app: &TestApp) -> Value {
    let (status, body) = app.get_json("/healthz", ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `GET /metrics` without credentials, parsed into name → value.
async fn metrics(app: &TestApp) -> std::collections::HashMap<String, f64> {
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = r.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once(' ').expect("name value");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// Customers asking for a person on the API channel, one every 20 ms, until stopped. Each
/// one's ticket makes two events (`requested`, `queued`: no agent is online).
struct Stream {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    fn start(app: &TestApp) -> Self {
        let (sent, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (client, url) = (app.client.clone(), app.url("/api/v1/messages"));
        let task = tokio::spawn({
            let (sent, stop) = (sent.clone(), stop.clone());
            async move {
                let mut pace = tokio::time::interval(Duration::from_millis(20));
                while !stop.load(Ordering::SeqCst) {
                    pace.tick().await;
                    let n = sent.load(Ordering::SeqCst);
                    let r = client
                        .post(&url)
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&json!({"sender": {"external_id": format!("stream-{n}")},
                                      "text": "I want a human"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        r.status(),
                        202,
                        "the gateway acknowledges whatever ClickHouse does"
                    );
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Self { sent, stop, task }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits until `n` more customers have written.
    async fn more(&self, n: u64) {
        let target = self.sent() + n;
        eventually("more customers to write", || async {
            (self.sent() >= target).then_some(())
        })
        .await;
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self.sent.clone();
        self.task.await.unwrap();
        sent.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn every_event_arrives_exactly_once_when_clickhouse_is_killed_mid_stream_and_restarted() {
    let mut clickhouse = PrivateClickHouse::start().await;
    let url = clickhouse.url();
    let app = spawn_app_with(|s| s.clickhouse_url = url).await;
    let stream = Stream::start(&app);

    // Shipping works before the outage.
    eventually_within(
        "the first events in ClickHouse",
        Duration::from_secs(30),
        || async { clickhouse_counts(&app).await.filter(|(n, _)| *n >= 10) },
    )
    .await;

    clickhouse.kill();
    stream.more(30).await;
    let during = health(&app).await;
    assert_eq!(during["clickhouse"], "unavailable");
    eventually("events to wait in the outbox", || async {
        (health(&app).await["outbox_backlog"].as_u64().unwrap() > 0).then_some(())
    })
    .await;

    clickhouse.restart().await;
    stream.more(30).await;
    let customers = stream.stop().await;
    let expected = 2 * customers;

    eventually_within(
        "every event in ClickHouse and an empty outbox",
        Duration::from_secs(90),
        || async {
            let backlog = health(&app).await["outbox_backlog"].as_u64().unwrap();
            let counts = clickhouse_counts(&app).await?;
            (backlog == 0 && counts.1 == expected).then_some(())
        },
    )
    .await;
    let (final_rows, distinct) = clickhouse_counts(&app).await.unwrap();
    assert_eq!(distinct, expected, "every event arrived");
    assert_eq!(final_rows, expected, "and counts once in the reports");
    let counts = app.event_counts().await;
    assert_eq!(counts.get("requested"), Some(&customers));
    assert_eq!(counts.get("queued"), Some(&customers));
    assert_eq!(app.services.store.outbox_len().await.unwrap(), 0);

    let m = metrics(&app).await;
    assert_eq!(m["baton_outbox_backlog"], 0.0);
    assert_eq!(m["baton_event_dead_letters"], 0.0);
    assert!(
        m["baton_ship_failures_total"] >= 1.0,
        "the outage was noticed"
    );
    assert!(m["baton_events_shipped_total"] >= expected as f64);
    // The ship latency: every confirmed INSERT was timed.
    assert!(m["baton_ship_insert_seconds_count"] >= 1.0, "{m:?}");
    assert!(m["baton_ship_insert_seconds_sum"] > 0.0, "{m:?}");
    assert!(m["baton_ship_insert_last_seconds"] > 0.0, "{m:?}");
}

/// An event that decodes but that ClickHouse will refuse (see `refuse_poison`).
fn poison_event() -> HandoffEvent {
    let now = Timestamp::now();
    HandoffEvent::new(
        HandoffEventKind::Requested,
        HandoffId::new(),
        ConversationId::new(),
        ChannelKind::Api,
        HandoffReason::CustomerRequest,
        Priority::Normal,
        None,
        now,
        now,
    )
    .with(None, Some("poison"))
}

/// Makes this test's ClickHouse table refuse any INSERT holding a row whose detail is
/// "poison", as ClickHouse refuses a value it cannot parse: the whole INSERT fails.
async fn refuse_poison(app: &TestApp) {
    app.services
        .clickhouse
        .client()
        .query(
            "ALTER TABLE handoff_events
             ADD COLUMN guard UInt8 MATERIALIZED throwIf(detail = 'poison')",
        )
        .execute()
        .await
        .unwrap();
}

/// Writes rows straight into the outbox, as a hand-edited database or a newer version would;
/// in one transaction, so that thousands take a moment.
async fn craft_outbox_rows(settings: &Settings, payloads: &[(String, String)]) {
    let now = Timestamp::now().as_millis();
    match StoreDb::of(settings).await {
        StoreDb::Sqlite(db) => {
            let mut tx = db.begin().await.unwrap();
            for (event_id, payload) in payloads {
                sqlx::query(
                    "INSERT INTO event_outbox (event_id, payload, created_at) VALUES (?, ?, ?)",
                )
                .bind(event_id)
                .bind(payload)
                .bind(now)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
            db.close().await;
        }
        StoreDb::Postgres(db) => {
            let mut tx = db.begin().await.unwrap();
            for (event_id, payload) in payloads {
                sqlx::query(
                    "INSERT INTO event_outbox (event_id, payload, created_at) VALUES ($1, $2, $3)",
                )
                .bind(event_id)
                .bind(payload)
                .bind(now)
                .execute(&mut *tx)
                .await
                .unwrap();
            }
            tx.commit().await.unwrap();
            db.close().await;
        }
    }
}

async fn dead_letters(app: &TestApp) -> Vec<(String, String)> {
    let db = StoreDb::of(&app.settings).await;
    let rows: Vec<(String, String)> = db
        .fetch("SELECT event_id, error FROM event_dead_letters ORDER BY seq")
        .await
        .unwrap();
    db.close().await;
    rows
}

/// Customers ask for a person; returns once each ticket's events are in the outbox.
async fn customers_ask_for_a_person(app: &TestApp, prefix: &str, n: usize) {
    for i in 0..n {
        let c = app
            .customer_says(&format!("{prefix}-{i}"), "I want a human")
            .await;
        app.handoff_with_status(c["conversation_id"].as_str().unwrap(), "queued")
            .await;
    }
}

#[tokio::test]
async fn a_backlog_waiting_at_start_up_ships_in_one_insert_not_a_first_one_of_one_chunk() {
    // Ticks far apart: what ends the INSERT here is the backlog running dry.
    let app = spawn_app_with(|s| s.ship_interval_ms = 10_000).await;
    app.ship_events().await; // creates the schema
    let (settings, data_dir) = app.stop().await;
    // More than two of the shipper's read chunks wait in the outbox while the gateway is down.
    let n = 2 * READ_CHUNK as usize + 1_000;
    let events: Vec<(String, String)> = (0..n)
        .map(|_| {
            let e = poison_event().with(Some("billing"), Some("backlog"));
            (e.event_id.to_string(), encode_outbox_payload(&e))
        })
        .collect();
    craft_outbox_rows(&settings, &events).await;

    let app = restart_with(settings, data_dir).await;
    eventually("the backlog to ship", || async {
        (app.services.store.outbox_len().await.unwrap() == 0).then_some(())
    })
    .await;
    // Each INSERT costs ClickHouse a part (and a merge later): the whole backlog went in one.
    assert_eq!(metrics(&app).await["baton_ship_insert_seconds_count"], 1.0);
    assert_eq!(clickhouse_counts(&app).await, Some((n as u64, n as u64)));
}

#[tokio::test]
async fn a_batch_clickhouse_refuses_ships_its_good_events_and_dead_letters_the_bad_ones() {
    // The worker waits a minute between shipments, so the one shipment below carries the
    // good and the bad events together.
    let app = spawn_app_with(|s| s.ship_interval_ms = 60_000).await;
    app.ship_events().await; // creates the schema
    refuse_poison(&app).await;

    customers_ask_for_a_person(&app, "before", 3).await;
    let poison = poison_event();
    craft_outbox_rows(
        &app.settings,
        &[
            (
                poison.event_id.to_string(),
                serde_json::to_string(&poison).unwrap(),
            ),
            (
                "not-an-event".into(),
                r#"{"kind": "from the future"}"#.into(),
            ),
        ],
    )
    .await;
    customers_ask_for_a_person(&app, "after", 2).await;

    app.ship_events().await;

    assert_eq!(app.services.store.outbox_len().await.unwrap(), 0);
    let counts = app.event_counts().await;
    assert_eq!(counts.get("requested"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("queued"), Some(&5), "{counts:?}");
    assert_eq!(clickhouse_counts(&app).await, Some((10, 10)));

    let letters = dead_letters(&app).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0].0, poison.event_id.to_string());
    assert!(
        letters[0].1.contains("Code: 395"),
        "ClickHouse's error: {}",
        letters[0].1
    );
    assert_eq!(letters[1].0, "not-an-event");
    assert!(letters[1].1.contains("does not parse"), "{}", letters[1].1);

    assert_eq!(health(&app).await["event_dead_letters"], 2);
    let m = metrics(&app).await;
    assert_eq!(m["baton_event_dead_letters"], 2.0);
    assert_eq!(m["baton_outbox_backlog"], 0.0);
}

#[tokio::test]
async fn the_running_shipper_sets_refused_events_aside_and_keeps_shipping() {
    let app = spawn_app_with(|_| {}).await;
    app.ship_events().await;
    refuse_poison(&app).await;
    let poison = poison_event();
    craft_outbox_rows(
        &app.settings,
        &[(
            poison.event_id.to_string(),
            serde_json::to_string(&poison).unwrap(),
        )],
    )
    .await;
    customers_ask_for_a_person(&app, "steady", 4).await;

    eventually(
        "the good events in ClickHouse and the bad one set aside",
        || async {
            let backlog = health(&app).await["outbox_backlog"].as_u64().unwrap();
            let counts = clickhouse_counts(&app).await?;
            (backlog == 0 && counts == (8, 8)).then_some(())
        },
    )
    .await;
    let letters = dead_letters(&app).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].0, poison.event_id.to_string());
    assert_eq!(health(&app).await["event_dead_letters"], 1);
}

#[tokio::test]
async fn dead_letters_replayed_once_their_cause_is_put_right_ship_exactly_once() {
    let app = spawn_app_with(|_| {}).await;
    app.ship_events().await;
    refuse_poison(&app).await;
    customers_ask_for_a_person(&app, "before", 2).await;
    let poison = poison_event();
    let payload = encode_outbox_payload(&poison);
    craft_outbox_rows(
        &app.settings,
        &[(poison.event_id.to_string(), payload.clone())],
    )
    .await;
    app.ship_events().await;

    // Listed for an admin, with ClickHouse's reason.
    let (status, body) = app
        .get_json("/api/v1/event-dead-letters", ADMIN_TOKEN)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1);
    let letter = &body["dead_letters"][0];
    assert_eq!(letter["event_id"], poison.event_id.to_string());
    assert_eq!(letter["payload"], payload);
    assert!(
        letter["error"].as_str().unwrap().contains("Code: 395"),
        "{letter}"
    );
    let (status, body) = app
        .get_json("/api/v1/event-dead-letters?limit=many", ADMIN_TOKEN)
        .await;
    assert_eq!(status, 400, "{body}");

    // Replayed while the cause stands: refused again, back in the dead letters, not lost and
    // not retried forever.
    let replay = app
        .post_json("/api/v1/event-dead-letters/replay", ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.json::<Value>().await.unwrap()["requeued"], 1);
    eventually("the replayed event refused again", || async {
        let outbox = app.services.store.outbox_len().await.unwrap();
        let letters = app.services.store.dead_letter_count().await.unwrap();
        (outbox == 0 && letters == 1).then_some(())
    })
    .await;

    // The cause put right: it ships, once, and the dead letters are empty.
    app.services
        .clickhouse
        .client()
        .query("ALTER TABLE handoff_events DROP COLUMN guard")
        .execute()
        .await
        .unwrap();
    let replay = app
        .post_json("/api/v1/event-dead-letters/replay", ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(replay.json::<Value>().await.unwrap()["requeued"], 1);
    eventually("the replayed event in ClickHouse", || async {
        let letters = app.services.store.dead_letter_count().await.unwrap();
        let outbox = app.services.store.outbox_len().await.unwrap();
        let shipped = clickhouse_counts(&app).await;
        (letters == 0 && outbox == 0 && shipped == Some((5, 5))).then_some(())
    })
    .await;
    let (_, body) = app
        .get_json("/api/v1/event-dead-letters", ADMIN_TOKEN)
        .await;
    assert_eq!(body, json!({"total": 0, "dead_letters": []}));
    let replay = app
        .post_json("/api/v1/event-dead-letters/replay", ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(replay.json::<Value>().await.unwrap()["requeued"], 0);
    let (_, audit) = app.get_json("/api/v1/audit", ADMIN_TOKEN).await;
    let replays = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "events.replay")
        .count();
    assert_eq!(replays, 3, "{audit}");
}

#[tokio::test]
async fn metrics_count_messages_per_channel_and_queue_depth_per_team_on_their_own_listener() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.metrics_bind = Some("127.0.0.1:0".into());
    })
    .await;
    // Not on the public listener any more.
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let port = app.metrics_port.expect("a metrics listener");
    let scrape = || async {
        let text = app
            .client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_owned(), value.parse::<f64>().unwrap())
            })
            .collect::<std::collections::HashMap<_, _>>()
    };
    customers_ask_for_a_person(&app, "metrics", 3).await;
    crate::helpers::eventually("three queued tickets", || async {
        let m = scrape().await;
        (m.get("baton_queue_depth{team=\"general\"}") == Some(&3.0)).then_some(())
    })
    .await;
    let m = scrape().await;
    assert_eq!(m["baton_messages_ingested_total{channel=\"api\"}"], 3.0);
    assert_eq!(m["baton_messages_ingested_total{channel=\"email\"}"], 0.0);
    assert!(m["baton_queue_oldest_wait_seconds{team=\"general\"}"] >= 0.0);
    assert!(m.contains_key("baton_send_failures_total{channel=\"telegram\"}"));
    let health = app
        .client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

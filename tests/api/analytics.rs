use baton::analytics::reports;
use baton::model::{
    ChannelKind, ConversationId, HandoffEvent, HandoffEventKind, HandoffId, HandoffReason,
    Priority, Timestamp,
};
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, clickhouse_url, eventually, spawn_app, spawn_app_with};

#[tokio::test]
async fn every_handoff_step_lands_in_clickhouse_exactly_once() {
    let app = spawn_app().await;
    let (_, token) = app.create_agent("Xena", true).await;
    let c1 = app.customer_says("yara", "human please").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h1 = app.handoff_with_status(&c1, "assigned").await;
    let h1 = h1["id"].as_str().unwrap();
    app.post_json(&format!("/api/v1/handoffs/{h1}/accept"), &token, json!({}))
        .await;
    app.post_json(
        &format!("/api/v1/conversations/{c1}/messages"),
        &token,
        json!({"text": "hello"}),
    )
    .await;
    app.post_json(
        &format!("/api/v1/conversations/{c1}/messages"),
        &token,
        json!({"text": "again"}),
    )
    .await;
    let r = app
        .post_json(&format!("/api/v1/handoffs/{h1}/resolve"), &token, json!({}))
        .await;
    assert_eq!(r.status().as_u16(), 200);

    let c2 = app.customer_says("zoe", "agent").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h2 = app.handoff_with_status(&c2, "assigned").await;
    let h2 = h2["id"].as_str().unwrap();
    app.post_json(&format!("/api/v1/handoffs/{h2}/release"), &token, json!({}))
        .await;

    app.ship_events().await;
    // Ship again after the outbox is empty, and re-run the shipper: nothing may double.
    app.ship_events().await;
    let counts = app.event_counts().await;
    let expected: std::collections::BTreeMap<String, u64> = [
        ("requested", 2),
        ("queued", 2),
        // Both tickets were offered; only the first was accepted (assigned = owned).
        ("offered", 2),
        ("assigned", 1),
        ("accepted", 1),
        ("first_agent_reply", 1),
        ("resolved", 1),
        ("released", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counts, expected);
    assert_eq!(app.services.store.outbox_len().await.unwrap(), 0);
}

fn event(kind: HandoffEventKind, handoff: HandoffId, wait_ms: i64) -> HandoffEvent {
    let now = Timestamp::now();
    let mut e = HandoffEvent::new(
        kind,
        handoff,
        ConversationId::new(),
        ChannelKind::WebChat,
        HandoffReason::CustomerRequest,
        Priority::Normal,
        None,
        Timestamp::from_millis(now.as_millis() - wait_ms),
        now,
    );
    e.wait_ms = wait_ms;
    e
}

#[tokio::test]
async fn a_batch_shipped_twice_counts_once_in_the_reports() {
    let app = spawn_app().await;
    app.ship_events().await; // creates the schema
    let (a, b, c) = (HandoffId::new(), HandoffId::new(), HandoffId::new());
    let batch: Vec<(i64, HandoffEvent)> = vec![
        (1, event(HandoffEventKind::Requested, a, 0)),
        (2, event(HandoffEventKind::Queued, a, 0)),
        (3, event(HandoffEventKind::Requested, b, 0)),
        (4, event(HandoffEventKind::Queued, b, 0)),
        (5, event(HandoffEventKind::Requested, c, 0)),
        (6, event(HandoffEventKind::Queued, c, 0)),
        (7, event(HandoffEventKind::Offered, a, 1_000)),
        (8, event(HandoffEventKind::Offered, b, 3_000)),
    ];
    let ch = &app.services.clickhouse;
    ch.insert_events(&batch).await.unwrap();
    ch.insert_events(&batch).await.unwrap(); // the retry after a lost acknowledgement

    let s = reports::today(ch).await.unwrap();
    assert_eq!(s.today_total, 3);
    assert_eq!(s.today_by_channel.len(), 1);
    assert_eq!(s.today_by_channel[0].channel, "web_chat");
    assert_eq!(s.queued_now, 1, "only c is still waiting");
    assert_eq!(s.assigned_today, 2);
    // quantileExact on two values takes the upper middle one.
    assert_eq!(s.median_wait_to_assign_ms, Some(3_000.0));
}

#[tokio::test]
async fn events_wait_in_the_outbox_while_clickhouse_is_down_and_arrive_later() {
    // A port nothing listens on stands for a ClickHouse that is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(|s| s.clickhouse_url = format!("http://127.0.0.1:{dead}")).await;
    let c = app.customer_says("ada", "talk to someone").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.handoff_with_status(&c, "queued").await;

    let backlog = app.services.store.outbox_len().await.unwrap();
    assert_eq!(backlog, 2, "requested + queued wait in the outbox");
    let (status, health) = app.get_json("/healthz", ADMIN_TOKEN).await;
    assert_eq!(
        status, 200,
        "ClickHouse down degrades, it does not take the gateway down"
    );
    assert_eq!(health["clickhouse"], "unavailable");
    assert_eq!(health["outbox_backlog"], 2);
    let page = app.get_text("/dashboard", ADMIN_TOKEN).await;
    assert!(
        page.contains("Analytics are unavailable"),
        "the dashboard says so"
    );
    assert!(page.contains("2 handoff events are waiting"));

    // ClickHouse is back (the gateway restarts pointing at a live server).
    let (mut settings, dir) = app.stop().await;
    settings.clickhouse_url = clickhouse_url();
    let app = crate::helpers::restart_with(settings, dir).await;
    eventually("the backlog to ship", || async {
        (app.services.store.outbox_len().await.unwrap() == 0).then_some(())
    })
    .await;
    let counts = app.event_counts().await;
    assert_eq!(counts.get("requested"), Some(&1));
    assert_eq!(counts.get("queued"), Some(&1));
}

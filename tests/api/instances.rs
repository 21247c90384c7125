//! Two gateway instances on one PostgreSQL database, as behind a load balancer: customers write
//! to either, agents act through either, and the store keeps the rules of one gateway. Run only
//! with BATON_TEST_STORE=postgres (SQLite is one instance's file).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, StoreDb, TestApp, restart_with, test_settings};

/// Two instances sharing the store and the ClickHouse database, each with its own data folder.
async fn two_instances() -> (TestApp, TestApp) {
    let queue: baton::handoff::engine::QueueConfig =
        serde_json::from_value(json!({"team": "general", "accept_timeout_ms": 600000})).unwrap();
    let dir_a = Arc::new(tempfile::tempdir().unwrap());
    let mut a = test_settings(&dir_a);
    a.queues = vec![queue];
    let dir_b = Arc::new(tempfile::tempdir().unwrap());
    let mut b = test_settings(&dir_b);
    b.queues = a.queues.clone();
    b.database_url = a.database_url.clone();
    b.clickhouse_database = a.clickhouse_database.clone();
    let a = restart_with(a, dir_a).await;
    let b = restart_with(b, dir_b).await;
    (a, b)
}

async fn act(app: &TestApp, token: &str, handoff: &str, action: &str) -> (u16, Value) {
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{handoff}/{action}"),
            token,
            json!({}),
        )
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Tickets in `status`, as (ticket, agent).
async fn tickets(app: &TestApp, status: &str) -> Vec<(String, Option<String>)> {
    let (code, body) = app
        .get_json(
            &format!("/api/v1/handoffs?status={status}&limit=200"),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body["handoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_owned(),
                h["assigned_agent_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// The store's view: per agent, tickets offered or owned; and whether every such ticket's
/// conversation names the same agent.
async fn check_store(db: &StoreDb, capacity: i64) {
    let rows: Vec<(Option<String>, i64)> = db
        .fetch(
            "SELECT assigned_agent_id, count(*) FROM handoffs
             WHERE status IN ('assigned', 'accepted') GROUP BY assigned_agent_id",
        )
        .await
        .unwrap();
    for (agent, n) in &rows {
        assert!(agent.is_some(), "an offered ticket without an agent");
        assert!(*n <= capacity, "{agent:?} holds {n} tickets");
    }
    let disagreeing: Vec<(String, Option<String>, Option<String>)> = db
        .fetch(
            "SELECT c.status, c.assigned_agent_id, h.assigned_agent_id FROM conversations c
             JOIN handoffs h ON h.conversation_id = c.id AND h.status IN ('assigned', 'accepted')
             WHERE c.assigned_agent_id IS DISTINCT FROM h.assigned_agent_id",
        )
        .await
        .unwrap();
    assert!(disagreeing.is_empty(), "{disagreeing:?}");
}

#[tokio::test]
async fn two_instances_share_tickets_never_give_an_agent_more_than_their_capacity_and_ship_each_event_once()
 {
    crate::postgres_only!("several instances share a PostgreSQL database, never a SQLite file");
    let (a, b) = two_instances().await;
    let apps = [&a, &b];
    let db = StoreDb::of(&a.settings).await;

    // Agents are added on one instance and come online through the other.
    let mut agents = Vec::new();
    for name in ["Ada", "Bo", "Cy"] {
        let (id, token) = a.create_agent_in(name, &[], 2, false).await;
        b.set_presence(&id, &token, "online").await;
        agents.push((id, token));
    }

    // Twenty-four customers ask for a person at once, half on each instance.
    let asks = (0..24).map(|i| {
        let app = apps[i % 2];
        async move {
            app.customer_says(&format!("shared-{i}"), "real person please")
                .await
        }
    });
    futures_util::future::join_all(asks).await;
    a.pipeline_idle().await;
    b.pipeline_idle().await;

    // Both routers offer what they can: three agents, two tickets each, whoever queued them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        check_store(&db, 2).await;
        let offered = tickets(&a, "assigned").await.len();
        if offered == 6 {
            break;
        }
        assert!(offered < 6, "{offered} offers for 6 places");
        assert!(Instant::now() < deadline, "only {offered} of 6 offers made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every agent accepts, declines and resolves every ticket at once, through both
    // instances: many steps race on one ticket or one agent across the two routers.
    let ids: Vec<String> = tickets(&a, "queued")
        .await
        .into_iter()
        .chain(tickets(&a, "assigned").await)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 24);
    for round in 0..3 {
        let mut calls = Vec::new();
        for (n, (_, token)) in agents.iter().enumerate() {
            for (k, id) in ids.iter().enumerate() {
                let action = ["accept", "decline", "accept", "resolve"][(round + k + n) % 4];
                calls.push(act(apps[(k + n + round) % 2], token, id, action));
            }
        }
        for (status, body) in futures_util::future::join_all(calls).await {
            assert!(
                [200, 403, 409].contains(&status),
                "unexpected {status}: {body}"
            );
        }
        check_store(&db, 2).await;
    }

    // Then the agents work the queue down, accepting on one instance and resolving on the
    // other, until every ticket is closed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut turn = 0;
    loop {
        let mut left = 0;
        for status in ["queued", "assigned", "accepted"] {
            left += tickets(&b, status).await.len();
        }
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} tickets still open");
        for (id, agent) in tickets(&b, "assigned").await {
            let Some((_, token)) = agents.iter().find(|(a, _)| Some(a) == agent.as_ref()) else {
                continue;
            };
            turn += 1;
            let (status, body) = act(apps[turn % 2], token, &id, "accept").await;
            assert!([200, 409].contains(&status), "{status}: {body}");
        }
        for (id, agent) in tickets(&a, "accepted").await {
            let Some((_, token)) = agents.iter().find(|(a, _)| Some(a) == agent.as_ref()) else {
                continue;
            };
            turn += 1;
            let (status, body) = act(apps[turn % 2], token, &id, "resolve").await;
            assert!([200, 409].contains(&status), "{status}: {body}");
        }
        check_store(&db, 2).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed = tickets(&a, "resolved").await.len();
    assert_eq!(closed, 24);

    // Every event reaches ClickHouse once: one instance ships at a time, so no event is
    // inserted twice (not merely deduplicated afterwards). The shippers' own workers empty the
    // outbox (`ship_events` would ship beside them, and so twice by design).
    // Generous: a busy shipper holds acknowledgements up to 5 s, and the suite runs many
    // gateways on two cores.
    crate::helpers::eventually_within("the outbox to drain", Duration::from_secs(90), || async {
        let left = db
            .number("SELECT count(*) FROM event_outbox")
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
    #[derive(serde::Deserialize, clickhouse::Row)]
    struct Counts {
        rows: u64,
        events: u64,
    }
    let counts: Counts = a
        .services
        .clickhouse
        .client()
        .query("SELECT count() AS rows, uniqExact(event_id) AS events FROM handoff_events")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(counts.rows, counts.events, "an event was shipped twice");
    let by_type: BTreeMap<String, u64> = a.event_counts().await;
    assert_eq!(by_type.get("requested"), Some(&24), "{by_type:?}");
    assert_eq!(by_type.get("resolved"), Some(&24), "{by_type:?}");
    db.close().await;
}

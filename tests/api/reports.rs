//! The report queries and their API against the real ClickHouse, on a known event set
//! (tests/fixtures/report_events.csv, shared with scripts/check_modern_clickhouse.py) that is
//! inserted twice, as a re-shipped batch would be.
//!
//! The fixture, times after T0 = Monday 2026-03-02 00:00:00 UTC (waits in seconds from the
//! request):
//!
//! | handoff | conv | channel  | reason           | prio   | last team | last owner | story |
//! |---------|------|----------|------------------|--------|-----------|------------|-------|
//! | h0      | c0   | web_chat | customer_request | normal | general   | A          | requested 1 h before T0: outside every period below |
//! | h1      | c1   | web_chat | customer_request | normal | general   | A          | Mon 00:00; offered 10, accepted+assigned 15, reply 40, resolved 300 |
//! | h2      | c2   | web_chat | bot_failure      | high   | billing   | B          | Mon 01:00; offered A 20, declined 25, offered B 30, accepted+assigned 50, reply 300, transferred 400 to billing, re-offered 410, accepted 415, resolved 600 |
//! | h3      | c3   | api      | customer_request | normal | general   | –          | Mon 02:00; offered A 30, timed out 60, abandoned 1800 |
//! | h4      | c4   | api      | frustration      | urgent | billing   | A          | Tue 10:00; offered 200, accepted+assigned 205, released 905 (no reply) |
//! | h5      | c4   | api      | frustration      | urgent | billing   | –          | Tue 11:15:05, 1 h after h4's release: still queued |
//! | h6      | c6   | web_chat | customer_request | normal | general   | B          | Tue 10:30; offered 5, accepted+assigned 8, reply 100, released 200 |
//! | h7      | c6   | web_chat | customer_request | low    | general   | A          | Wed 11:33:20, 25 h after h6's release; offered 1, accepted+assigned 2, reply 62, resolved 122 |
//!
//! SLA targets: assignment 120 s, first reply 300 s (the defaults).

use std::collections::HashMap;

use baton::analytics::histogram;
use baton::analytics::reports::{
    self, Breakdown, Drill, Filter, FilterQuery, Percentiles, SlaTargets,
};
use baton::model::{
    AgentId, ChannelKind, ConversationId, HandoffEvent, HandoffEventKind, HandoffId, HandoffReason,
    Priority, Timestamp,
};
use serde_json::Value;

use crate::helpers::{ADMIN_TOKEN, TestApp, eventually, spawn_app};

/// Monday 2026-03-02 00:00:00 UTC.
const T0: i64 = 1_772_409_600_000;
const DAY: i64 = 86_400_000;
const SLA: SlaTargets = SlaTargets {
    assignment_secs: 120,
    first_reply_secs: 300,
};

/// The fixture's names (h1, c4, A, ...) and the ids they got.
pub(crate) struct Fixture {
    ids: HashMap<String, String>,
}

impl Fixture {
    pub(crate) fn id(&self, name: &str) -> &str {
        &self.ids[name]
    }

    fn name(&self, id: &str) -> String {
        self.ids
            .iter()
            .find(|(_, v)| v.as_str() == id)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| id.to_owned())
    }
}

/// Inserts the fixture twice (same event ids) into the app's ClickHouse database.
async fn load_fixture(app: &TestApp) -> Fixture {
    let (batch, fixture) = fixture_batch(app).await;
    let ch = &app.services.clickhouse;
    ch.insert_events(&batch).await.unwrap();
    ch.insert_events(&batch).await.unwrap(); // the retry after a lost acknowledgement
    fixture
}

/// The fixture as one batch of events with fresh ids, and the names of those ids; creates the
/// schema first.
pub(crate) async fn fixture_batch(app: &TestApp) -> (Vec<(i64, HandoffEvent)>, Fixture) {
    app.ship_events().await; // creates the schema
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/report_events.csv"
    ))
    .unwrap();
    let lines: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let requested: HashMap<&str, i64> = lines
        .iter()
        .filter(|l| l[1] == "requested")
        .map(|l| (l[0], l[2].parse().unwrap()))
        .collect();
    let mut handoffs: HashMap<String, HandoffId> = HashMap::new();
    let mut conversations: HashMap<String, ConversationId> = HashMap::new();
    let mut agents: HashMap<String, AgentId> = HashMap::new();
    let mut batch = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let at: i64 = l[2].parse().unwrap();
        let handoff = *handoffs.entry(l[0].into()).or_default();
        let conversation = *conversations.entry(l[3].into()).or_default();
        let agent = (!l[7].is_empty()).then(|| *agents.entry(l[7].into()).or_default());
        let mut e = HandoffEvent::new(
            l[1].parse::<HandoffEventKind>().unwrap(),
            handoff,
            conversation,
            l[4].parse::<ChannelKind>().unwrap(),
            l[5].parse::<HandoffReason>().unwrap(),
            l[6].parse::<Priority>().unwrap(),
            agent,
            Timestamp::from_millis(T0 + requested[l[0]] * 1000),
            Timestamp::from_millis(T0 + at * 1000),
        );
        e.team = l[8].to_owned();
        batch.push((i as i64 + 1, e));
    }
    let mut ids = HashMap::new();
    ids.extend(handoffs.into_iter().map(|(k, v)| (k, v.to_string())));
    ids.extend(conversations.into_iter().map(|(k, v)| (k, v.to_string())));
    ids.extend(agents.into_iter().map(|(k, v)| (k, v.to_string())));
    (batch, Fixture { ids })
}

/// The fixture's week, with optional filters.
fn week(filters: &[(&str, &str)]) -> Filter {
    let mut q = FilterQuery {
        range: Some("custom".into()),
        from: Some(T0.to_string()),
        to: Some((T0 + 7 * DAY).to_string()),
        ..Default::default()
    };
    for (k, v) in filters {
        let v = Some(v.to_string());
        match *k {
            "channel" => q.channel = v,
            "team" => q.team = v,
            "agent" => q.agent = v,
            "reason" => q.reason = v,
            "priority" => q.priority = v,
            _ => unreachable!(),
        }
    }
    Filter::from_query(&q, Timestamp::now().as_millis()).unwrap()
}

/// The percentiles the report gives for hand-computed exact ones: each within 1%, as its
/// histogram bucket's value (baton::analytics::histogram).
fn p(count: u64, p50: u64, p90: u64, p99: u64) -> Percentiles {
    Percentiles {
        count,
        p50_ms: Some(histogram::round(p50)),
        p90_ms: Some(histogram::round(p90)),
        p99_ms: Some(histogram::round(p99)),
    }
}

fn keys(rows: &[Breakdown], fixture: &Fixture) -> Vec<(String, u64)> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|r| (fixture.name(&r.key), r.metrics.requested))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_figure_equals_the_hand_computed_value_though_each_event_was_inserted_twice() {
    let app = spawn_app().await;
    let fx = load_fixture(&app).await;
    let s = reports::summary(
        &app.services.clickhouse,
        app.services.store.as_ref(),
        &week(&[]),
        &SLA,
    )
    .await
    .unwrap();
    let t = &s.totals;
    // h1..h7; h0 was requested before the period.
    assert_eq!(t.requested, 7);
    // Assigned: h1 15 s, h2 50 s, h4 205 s, h6 8 s, h7 2 s. Sorted 2, 8, 15, 50, 205 s;
    // quantileExact takes index floor(level * 5): p50 -> 2 (15 s), p90 -> 4, p99 -> 4 (205 s).
    assert_eq!(t.assigned, 5);
    assert_eq!(t.wait_to_assignment, p(5, 15_000, 205_000, 205_000));
    // First replies: h1 40, h2 300, h6 100, h7 62 s. Sorted 40, 62, 100, 300: index 2 is
    // 100 s, index floor(3.6) = 3 is 300 s.
    assert_eq!(t.wait_to_first_reply, p(4, 100_000, 300_000, 300_000));
    // Offer to acceptance of the first accepted offer: h1 15-10 = 5, h2 50-30 = 20 (the offer
    // to B, not A's declined one), h4 205-200 = 5, h6 8-5 = 3, h7 2-1 = 1 s.
    // Sorted 1, 3, 5, 5, 20 s.
    assert_eq!(t.time_to_accept, p(5, 5_000, 20_000, 20_000));
    // First assignment to close: h1 300-15 = 285, h2 600-50 = 550, h4 905-205 = 700,
    // h6 200-8 = 192, h7 122-2 = 120 s. Sorted 120, 192, 285, 550, 700 s.
    assert_eq!(t.handle_time, p(5, 285_000, 700_000, 700_000));
    // Resolved h1 h2 h7, released h4 h6, abandoned h3, open h5 (waiting, never assigned).
    assert_eq!(
        (t.resolved, t.released, t.abandoned, t.open, t.waiting),
        (3, 2, 1, 1, 1)
    );
    assert_eq!(t.resolution_rate, Some(3.0 / 6.0));
    // Offers: h1 1, h2 3, h3 1, h4 1, h6 1, h7 1 = 8 over 6 handoffs; h2 was offered more
    // than once; one decline (h2), one lapse (h3).
    assert_eq!(
        (
            t.offered,
            t.reoffered,
            t.offers,
            t.declines,
            t.offer_timeouts
        ),
        (6, 1, 8, 1, 1)
    );
    // One transfer (h2) over 7 handoffs.
    assert_eq!((t.transfers, t.transferred), (1, 1));
    assert_eq!(t.transfers_per_handoff, Some(1.0 / 7.0));
    // h4 released, c4 asked again 1 h later (h5); h6 released, c6 asked again after 25 h: no.
    assert_eq!(t.rehandoffs, 1);
    // Assignment > 120 s: h3 (closed unassigned after 1800 s), h4 (205 s), h5 (still
    // waiting). First reply > 300 s: h3 (1800 s, none), h4 (released after 905 s, none), h5;
    // h2's reply came at exactly 300 s, which is not beyond the target.
    assert_eq!(
        (t.sla_assignment_breaches, t.sla_first_reply_breaches),
        (3, 3)
    );

    // Breakdowns by the handoff's channel, last team, last owner, reason, requested priority.
    assert_eq!(
        keys(&s.by_channel, &fx),
        vec![("api".into(), 3), ("web_chat".into(), 4)]
    );
    assert_eq!(
        keys(&s.by_team, &fx),
        vec![("billing".into(), 3), ("general".into(), 4)]
    );
    assert_eq!(
        keys(&s.by_agent, &fx),
        vec![("".into(), 2), ("A".into(), 3), ("B".into(), 2)]
    );
    assert_eq!(
        keys(&s.by_reason, &fx),
        vec![
            ("bot_failure".into(), 1),
            ("customer_request".into(), 4),
            ("frustration".into(), 2)
        ]
    );
    assert_eq!(
        keys(&s.by_priority, &fx),
        vec![
            ("high".into(), 1),
            ("low".into(), 1),
            ("normal".into(), 3),
            ("urgent".into(), 2)
        ]
    );
    // Agent A owned h1 (15 s), h4 (205 s), h7 (2 s): median of 2, 15, 205 is 15 s.
    let a = s.by_agent.iter().find(|r| r.key == fx.id("A")).unwrap();
    assert_eq!(a.metrics.wait_to_assignment, p(3, 15_000, 205_000, 205_000));
    assert_eq!((a.metrics.resolved, a.metrics.released), (2, 1));

    // A week is longer than two days: day buckets. Mon: h1 h3 customer_request, h2
    // bot_failure; Tue: h4 h5 frustration, h6 customer_request; Wed: h7.
    assert_eq!(s.filter.bucket, reports::Bucket::Day);
    let rot: Vec<_> = s
        .reasons_over_time
        .iter()
        .map(|r| (r.bucket_start_ms as i64, r.reason.as_str(), r.count))
        .collect();
    assert_eq!(
        rot,
        vec![
            (T0, "bot_failure", 1),
            (T0, "customer_request", 2),
            (T0 + DAY, "customer_request", 1),
            (T0 + DAY, "frustration", 2),
            (T0 + 2 * DAY, "customer_request", 1),
        ]
    );
    // Mon 00h h1, 01h h2, 02h h3; Tue 10h h4 h6, 11h h5; Wed 11h h7.
    let heat: Vec<_> = s
        .heatmap
        .iter()
        .map(|c| (c.weekday, c.hour, c.count))
        .collect();
    assert_eq!(
        heat,
        vec![
            (1, 0, 1),
            (1, 1, 1),
            (1, 2, 1),
            (2, 10, 2),
            (2, 11, 1),
            (3, 11, 1)
        ]
    );
    // No conversations in the store: containment has no denominator.
    assert_eq!(s.containment.conversations, 0);
    assert_eq!(s.containment.containment_rate, None);
}

#[tokio::test]
async fn a_replayed_batch_leaves_every_figure_unchanged_before_any_merge() {
    let app = spawn_app().await;
    let (batch, _) = fixture_batch(&app).await;
    let ch = &app.services.clickhouse;
    let sql = |q: &'static str| ch.client().query(q);
    // Every figure the summary and the drill-downs give, for the week and for one filter (each
    // resolved once: "now" is part of a filter, and still-waiting handoffs' waits grow with it).
    let filters = [week(&[]), week(&[("channel", "api")])];
    let figures = || async {
        let mut all = Vec::new();
        for f in &filters {
            let s = reports::summary(ch, app.services.store.as_ref(), f, &SLA)
                .await
                .unwrap();
            let mut lists = Vec::new();
            for d in Drill::ALL {
                lists.push(reports::handoffs(ch, f, &SLA, *d).await.unwrap());
            }
            all.push((s, lists));
        }
        all
    };
    // No merges from here on: the replay's rows stay beside the first ones.
    sql("SYSTEM STOP MERGES handoff_summary")
        .execute()
        .await
        .unwrap();
    ch.insert_events(&batch).await.unwrap();
    let once = figures().await;
    assert_eq!(once[0].0.totals.requested, 7, "the fixture's week");
    ch.insert_events(&batch).await.unwrap(); // the retry after a lost acknowledgement
    let (rows, handoffs): (u64, u64) =
        sql("SELECT count(), uniqExact(handoff_id) FROM handoff_summary")
            .fetch_one()
            .await
            .unwrap();
    assert!(
        rows >= 2 * handoffs,
        "the replay is not merged yet: {rows} rows for {handoffs} handoffs"
    );
    assert_eq!(figures().await, once);
    sql("SYSTEM START MERGES handoff_summary")
        .execute()
        .await
        .unwrap();
}

#[tokio::test]
async fn filters_narrow_every_figure_to_the_matching_handoffs() {
    let app = spawn_app().await;
    let fx = load_fixture(&app).await;
    let run = |f: Filter| {
        let app = &app;
        async move {
            reports::summary(
                &app.services.clickhouse,
                app.services.store.as_ref(),
                &f,
                &SLA,
            )
            .await
            .unwrap()
        }
    };
    // api: h3 (abandoned), h4 (assigned 205 s, released, re-handed off), h5 (waiting).
    let api = run(week(&[("channel", "api")])).await.totals;
    assert_eq!((api.requested, api.assigned), (3, 1));
    assert_eq!(api.wait_to_assignment, p(1, 205_000, 205_000, 205_000));
    assert_eq!(
        (api.abandoned, api.released, api.rehandoffs, api.waiting),
        (1, 1, 1, 1)
    );
    assert_eq!(api.sla_assignment_breaches, 3);
    // billing (last team): h2, h4, h5; h2's transfer counts here.
    let billing = run(week(&[("team", "billing")])).await.totals;
    assert_eq!((billing.requested, billing.transfers), (3, 1));
    // Agent B owned h2 and h6 last: handle 550 s and 192 s.
    let b = run(week(&[("agent", fx.id("B"))])).await.totals;
    assert_eq!(b.requested, 2);
    assert_eq!(b.handle_time, p(2, 550_000, 550_000, 550_000));
    // frustration: h4 and h5, both urgent.
    let frustrated = run(week(&[("reason", "frustration"), ("priority", "urgent")])).await;
    assert_eq!(frustrated.totals.requested, 2);
    assert_eq!(keys(&frustrated.by_team, &fx), vec![("billing".into(), 2)]);
    // Nothing matches: zeros and no percentiles, not an error.
    let none = run(week(&[("channel", "email")])).await.totals;
    assert_eq!(none.requested, 0);
    assert_eq!(none.wait_to_assignment, Percentiles::default());
}

fn week_query(extra: &str) -> String {
    format!("range=custom&from={}&to={}{extra}", T0, T0 + 7 * DAY)
}

fn names(body: &Value, fx: &Fixture) -> Vec<String> {
    body["handoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| fx.name(h["handoff_id"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn the_drill_down_lists_the_handoffs_behind_each_figure() {
    let app = spawn_app().await;
    let fx = load_fixture(&app).await;
    let drill = |d: &str, extra: &str| {
        let path = format!("/api/v1/reports/handoffs?drill={d}&{}", week_query(extra));
        let app = &app;
        async move {
            let (status, body) = app.get_json(&path, ADMIN_TOKEN).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let all = drill("requested", "").await;
    // Newest request first.
    assert_eq!(names(&all, &fx), ["h7", "h5", "h6", "h4", "h3", "h2", "h1"]);
    for (d, want) in [
        ("abandoned", vec!["h3"]),
        ("sla_breached", vec!["h5", "h4", "h3"]),
        ("sla_first_reply_breached", vec!["h5", "h4", "h3"]),
        ("transferred", vec!["h2"]),
        ("released", vec!["h4", "h6"]),
        ("rehandoff", vec!["h4"]),
        ("reoffered", vec!["h2"]),
        ("offer_timed_out", vec!["h3"]),
        ("waiting", vec!["h5"]),
    ] {
        let mut got = names(&drill(d, "").await, &fx);
        let mut want: Vec<String> = want.into_iter().map(String::from).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "drill {d}");
    }
    // Filters apply to drill-downs too.
    assert_eq!(names(&drill("released", "&channel=api").await, &fx), ["h4"]);

    // A row says what the ticket is, never what was written.
    let h3 = all["handoffs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["handoff_id"] == fx.id("h3"))
        .unwrap();
    assert_eq!(h3["conversation_id"], fx.id("c3"));
    assert_eq!(h3["channel"], "api");
    assert_eq!(h3["team"], "general");
    assert_eq!(h3["agent_id"], Value::Null);
    assert_eq!(h3["reason"], "customer_request");
    assert_eq!(h3["priority"], "normal");
    assert_eq!(h3["requested_at"], "2026-03-02T02:00:00Z");
    assert_eq!(h3["wait_to_assignment_ms"], 1_800_000);
    assert_eq!(h3["last_status"], "abandoned");
    assert_eq!(h3["outcome"], "abandoned");
    assert!(h3.get("text").is_none() && h3.get("summary").is_none());
}

#[tokio::test]
async fn summaries_and_drill_downs_come_as_csv_when_asked() {
    let app = spawn_app().await;
    let fx = load_fixture(&app).await;
    let r = app
        .client
        .get(app.url(&format!(
            "/api/v1/reports/summary?{}",
            week_query("&format=csv")
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert!(lines[0].starts_with("dimension,key,requested,assigned,wait_to_assignment_p50_ms"));
    let (p50, p90) = (histogram::round(15_000), histogram::round(205_000));
    assert!(
        lines[1].starts_with(&format!("all,,7,5,{p50},{p90},{p90},")),
        "{}",
        lines[1]
    );
    assert!(csv.contains("\r\nchannel,web_chat,4,"));
    assert!(csv.contains(&format!("\r\nagent,{},3,", fx.id("A"))));

    // The same through the Accept header, for the drill-down.
    let r = app
        .client
        .get(app.url(&format!(
            "/api/v1/reports/handoffs?drill=abandoned&{}",
            week_query("")
        )))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csv = r.text().await.unwrap();
    let rows: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[0].starts_with("handoff_id,conversation_id,channel,team,agent_id"));
    assert!(rows[1].starts_with(&format!(
        "{},{},api,general,,customer_request,normal,2026-03-02T02:00:00Z,1800000,",
        fx.id("h3"),
        fx.id("c3")
    )));

    // The heatmap table of the summary.
    let r = app
        .client
        .get(app.url(&format!(
            "/api/v1/reports/summary?{}",
            week_query("&format=csv&table=heatmap")
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "weekday,hour,count\r\n1,0,1\r\n1,1,1\r\n1,2,1\r\n2,10,2\r\n2,11,1\r\n3,11,1\r\n"
    );
}

#[tokio::test]
async fn hostile_report_requests_get_a_400_and_never_reach_sql() {
    let app = spawn_app().await;
    load_fixture(&app).await;
    for query in [
        "range=forever",
        "range=custom&from=1772409600000",
        "range=custom&from=tomorrow&to=1772409600000",
        "range=custom&from=1772409600000&to=1772409600000",
        "range=custom&from=0&to=99999999999999999999999999",
        "range=custom&from=1772409600000&to=9999999999999",
        "range=7d&from=1772409600000",
        "channel=fax",
        "channel=api'%20OR%20'1'='1",
        "team=billing'%3B%20DROP%20TABLE%20handoff_events%20--",
        "agent=not-a-uuid",
        "reason=%00",
        "priority=%E2%80%AE",
        "format=xml",
        "table=secrets",
        "range=1h&range=7d",
    ] {
        let (status, body) = app
            .get_json(&format!("/api/v1/reports/summary?{query}"), ADMIN_TOKEN)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{query}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    for drill in ["everything", "requested'%20OR%201=1", ""] {
        let (status, body) = app
            .get_json(
                &format!("/api/v1/reports/handoffs?drill={drill}"),
                ADMIN_TOKEN,
            )
            .await;
        assert_eq!(status, 400, "{drill}: {body}");
    }
    let long = "a".repeat(5000);
    let (status, _) = app
        .get_json(&format!("/api/v1/reports/summary?team={long}"), ADMIN_TOKEN)
        .await;
    assert_eq!(status, 400);
    // The data is still there and still counts once.
    assert_eq!(app.event_counts().await["requested"], 8);

    let (_, agent_token) = app.create_agent("Nosy", false).await;
    let (status, _) = app.get_json("/api/v1/reports/summary", &agent_token).await;
    assert_eq!(status, 403, "reports are for admins");
    let r = app
        .client
        .get(app.url("/api/v1/reports/live?range=nonsense"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "credentials are checked first");
}

#[tokio::test]
async fn the_live_view_shows_queues_agents_and_recent_requests() {
    let app = spawn_app().await;
    let (agent, _) = app.create_agent_in("Lia", &[], 1, true).await;
    app.create_agent("Otto", false).await;
    // Lia takes one ticket at a time: the first is offered to her, the second waits.
    let c1 = app.customer_says("l1", "human please").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.handoff_with_status(&c1, "assigned").await;
    let c2 = app.customer_says("l2", "agent").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.handoff_with_status(&c2, "queued").await;
    app.ship_events().await;

    let live = eventually("two recent requests in the live view", || async {
        let (status, body) = app.get_json("/api/v1/reports/live", ADMIN_TOKEN).await;
        assert_eq!(status, 200, "{body}");
        (body["requested_recently"]["last_5m"] == 2).then_some(body)
    })
    .await;
    assert_eq!(live["requested_recently"]["last_60m"], 2);
    let general = &live["queues"][0];
    assert_eq!(general["team"], "general");
    assert_eq!(
        (general["waiting"].as_u64(), general["offered"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(general["oldest_wait_ms"].as_u64().is_some());
    assert_eq!(live["presence"]["online"], 1);
    assert_eq!(live["presence"]["offline"], 1);
    let lia = &live["agents"][0];
    assert_eq!(lia["agent_id"], agent.as_str());
    assert_eq!(
        (lia["load"].as_u64(), lia["capacity"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(live["outbox_backlog"], 0);

    let r = app
        .client
        .get(app.url("/api/v1/reports/live?format=csv&table=agents"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("agent_id,name,presence,load,capacity,teams\r\n"));
    assert!(csv.contains(&format!("{agent},Lia,online,1,1,")));
}

#[tokio::test]
async fn containment_counts_the_conversations_the_bot_finished_alone() {
    let app = spawn_app().await;
    // Three customers write today; one asks for a person.
    app.customer_says("k1", "what are your opening hours").await;
    app.customer_says("k2", "how much does shipping cost").await;
    let c3 = app.customer_says("k3", "human please").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.handoff_with_status(&c3, "queued").await;
    app.ship_events().await;

    let (status, body) = app
        .get_json("/api/v1/reports/summary?range=today", ADMIN_TOKEN)
        .await;
    assert_eq!(status, 200, "{body}");
    let c = &body["containment"];
    assert_eq!(c["conversations"], 3);
    assert_eq!(c["handed_off"], 1);
    assert_eq!(c["contained"], 2);
    assert!((c["containment_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(body["totals"]["requested"], 1);
    assert_eq!(body["totals"]["waiting"], 1);
    // The API channel only: the same conversations; web chat: none.
    let (_, web) = app
        .get_json(
            "/api/v1/reports/summary?range=today&channel=web_chat",
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(web["containment"]["conversations"], 0);
    assert_eq!(web["containment"]["containment_rate"], Value::Null);
}

#[tokio::test]
async fn drills_are_named_in_the_error_when_unknown() {
    let app = spawn_app().await;
    let (status, body) = app
        .get_json("/api/v1/reports/handoffs?drill=everything", ADMIN_TOKEN)
        .await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    for d in Drill::ALL {
        assert!(message.contains(d.as_str()), "{message}");
    }
}

#[tokio::test]
async fn clickhouse_puts_every_duration_in_the_bucket_the_report_reads_it_from() {
    let app = spawn_app().await;
    // Every millisecond up to 100 s, then every bucket's bounds (and their neighbours) up to
    // 40 days: where float rounding could put a duration in the next bucket.
    let expr = histogram::BUCKET_SQL.replace("{v}", "v");
    app.services.clickhouse.migrate().await.unwrap();
    let client = app.services.clickhouse.client();
    let mut got: Vec<(u64, u16)> = client
        .query(&format!(
            "SELECT v, {expr} AS b FROM (SELECT toUInt64(number) AS v FROM numbers(100000))"
        ))
        .fetch_all()
        .await
        .unwrap();
    let mut bounds: Vec<u64> = Vec::new();
    let mut bound = 1.0f64;
    while bound < 40.0 * 86_400_000.0 {
        let b = bound as u64;
        bounds.extend([b.saturating_sub(1), b, b + 1]);
        bound *= 1.02;
    }
    got.extend(
        client
            .query(&format!(
                "SELECT v, {expr} AS b FROM (SELECT toUInt64(arrayJoin(?)) AS v)"
            ))
            .bind(&bounds)
            .fetch_all::<(u64, u16)>()
            .await
            .unwrap(),
    );
    assert_eq!(got.len(), 100_000 + bounds.len());
    for (v, b) in got {
        assert_eq!(b, histogram::bucket_of(v), "{v} ms");
    }
}

//! The rollup (migrations/clickhouse/0004, src/analytics/rollup.rs) gives the same report as
//! merging every handoff directly: on the report fixture (tests/api/reports.rs) plus handoffs
//! of the last hours, through late events, a late request that turns an earlier release into
//! a re-handoff, replayed batches, still-open handoffs, and the cleanup of old versions; and
//! the report really reads the rollup for the hours it covers.

use baton::analytics::reports::{self, Filter, FilterQuery, SlaTargets, Summary};
use baton::analytics::rollup;
use baton::model::{AgentId, HandoffEvent, HandoffEventKind, HandoffId, Timestamp};

use crate::helpers::{TestApp, spawn_app};
use crate::reports::fixture_batch;

/// Monday 2026-03-02 00:00:00 UTC (the fixture's T0).
const T0: i64 = 1_772_409_600_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const SLA: SlaTargets = SlaTargets {
    assignment_secs: 120,
    first_reply_secs: 300,
};

fn custom(from: i64, to: i64, filters: &[(&str, &str)], now: i64) -> Filter {
    let mut q = FilterQuery {
        range: Some("custom".into()),
        from: Some(from.to_string()),
        to: Some(to.to_string()),
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
    Filter::from_query(&q, now).unwrap()
}

/// The periods and filters compared: the fixture's week (day buckets: whole days from the
/// rollup) with each kind of filter, a day with ragged ends (hour buckets: hours from the
/// rollup, the ends from the handoffs), three hours (minute buckets: all from the handoffs),
/// and the last week up to now (whole days, hours, and the last hours from the handoffs).
fn filters(agent_a: &str, now: i64) -> Vec<Filter> {
    let week = |f: &[(&str, &str)]| custom(T0, T0 + 7 * DAY, f, now);
    vec![
        week(&[]),
        week(&[("channel", "api")]),
        week(&[("team", "billing")]),
        week(&[("agent", agent_a)]),
        week(&[("reason", "frustration")]),
        week(&[("priority", "urgent")]),
        custom(
            T0 + DAY + 9 * HOUR + HOUR / 2,
            T0 + 2 * DAY + 9 * HOUR + HOUR / 2,
            &[],
            now,
        ),
        custom(T0 + DAY + 9 * HOUR, T0 + DAY + 12 * HOUR, &[], now),
        custom(now - 7 * DAY, now, &[], now),
    ]
}

async fn both_ways(app: &TestApp, filters: &[Filter]) -> Vec<Summary> {
    let ch = &app.services.clickhouse;
    let store = app.services.store.as_ref();
    let mut rolled = Vec::new();
    for f in filters {
        let direct = reports::summary_with(ch, store, f, &SLA, false)
            .await
            .unwrap();
        let via_rollup = reports::summary_with(ch, store, f, &SLA, true)
            .await
            .unwrap();
        assert_eq!(
            via_rollup,
            direct,
            "{}: the rollup's report differs from the handoffs'",
            f.query.to_query_string()
        );
        rolled.push(via_rollup);
    }
    rolled
}

/// Touched hours of `[from, to)` whose latest version does not count (older than a touch),
/// plus whole days there (past the SLA targets) without a version that counts.
async fn uncovered(app: &TestApp, from: i64, to: i64) -> u64 {
    let sql = "
        SELECT
        (
            SELECT count()
            FROM (SELECT hour_ms, max(touched_at) AS t FROM handoff_touches
                  WHERE hour_ms >= ? AND hour_ms < ? GROUP BY hour_ms)
            ANY LEFT JOIN
                (SELECT start_ms AS hour_ms, argMax(snapshot_at, version) AS s
                 FROM handoff_rollup_commits WHERE span_ms = 3600000 GROUP BY start_ms)
            USING hour_ms
            WHERE s <= t + 5
        ) + (
            SELECT count()
            FROM (SELECT intDiv(hour_ms, 86400000) * 86400000 AS day_ms, max(touched_at) AS t
                  FROM handoff_touches WHERE hour_ms >= ? AND hour_ms < ? GROUP BY day_ms)
            ANY LEFT JOIN
                (SELECT start_ms AS day_ms, argMax(snapshot_at, version) AS s
                 FROM handoff_rollup_commits WHERE span_ms = 86400000 GROUP BY start_ms)
            USING day_ms
            WHERE s <= t + 5 AND day_ms + 86400000 + 300000 < toUInt64(now()) * 1000
        )";
    app.services
        .clickhouse
        .client()
        .query(sql)
        .bind(from)
        .bind(to)
        .bind(from)
        .bind(to)
        .fetch_one()
        .await
        .unwrap()
}

/// Drives the rollup (as its worker does, which runs too) until every touched hour of
/// `[from, to)` and every whole day there is covered by a version that counts.
async fn settle(app: &TestApp, from: i64, to: i64) {
    let ch = &app.services.clickhouse;
    let mut since = 0;
    let started = std::time::Instant::now();
    loop {
        let done = rollup::refresh(ch, &SLA, Timestamp::now().as_millis(), since)
            .await
            .unwrap();
        since = done.snapshot_s.saturating_sub(10);
        if uncovered(app, from, to).await == 0 {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "the rollup did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// An event like `like` (same handoff, conversation, attributes) of another kind at `at_ms`.
fn event(like: &HandoffEvent, kind: HandoffEventKind, at_ms: i64) -> HandoffEvent {
    let requested = like.occurred_at_ms - like.wait_ms;
    let mut e = HandoffEvent::new(
        kind,
        like.handoff_id,
        like.conversation_id,
        like.channel,
        like.reason,
        like.priority,
        like.agent_id,
        Timestamp::from_millis(requested),
        Timestamp::from_millis(at_ms),
    );
    e.team = like.team.clone();
    e
}

/// The same handoff story as `like`'s handoff, for a new handoff requested at `at_ms`.
fn new_handoff(like: &HandoffEvent, at_ms: i64) -> HandoffEvent {
    let mut e = event(like, HandoffEventKind::Requested, at_ms);
    e.handoff_id = HandoffId::default();
    e.wait_ms = 0;
    e.agent_id = None;
    e
}

#[tokio::test]
async fn the_rolled_up_report_equals_the_direct_one_through_late_events_and_replays() {
    let app = spawn_app().await;
    let ch = &app.services.clickhouse;
    let (batch, fx) = fixture_batch(&app).await;
    let of = |name: &str, kind: HandoffEventKind| {
        batch
            .iter()
            .map(|(_, e)| e)
            .find(|e| e.handoff_id.to_string() == fx.id(name) && e.kind == kind)
            .unwrap()
            .clone()
    };
    let agent_b: AgentId = of("h6", HandoffEventKind::Assigned).agent_id.unwrap();

    // The fixture, plus two handoffs of three hours ago: r1 still waiting (it breaches both
    // targets by now), r2 assigned after 200 s and resolved.
    let now = Timestamp::now().as_millis();
    let h1 = of("h1", HandoffEventKind::Requested);
    let r1 = new_handoff(&h1, now - 3 * HOUR);
    let r2 = new_handoff(&h1, now - 3 * HOUR + 1_000);
    let mut r2_assigned = event(&r2, HandoffEventKind::Assigned, now - 3 * HOUR + 201_000);
    r2_assigned.agent_id = Some(agent_b);
    let mut first = batch.clone();
    for (i, e) in [
        r1.clone(),
        event(&r1, HandoffEventKind::Queued, now - 3 * HOUR),
        r2.clone(),
        r2_assigned.clone(),
        event(&r2_assigned, HandoffEventKind::Resolved, now - 2 * HOUR),
    ]
    .into_iter()
    .enumerate()
    {
        first.push((1_000 + i as i64, e));
    }
    ch.insert_events(&first).await.unwrap();
    ch.insert_events(&first).await.unwrap(); // the retry after a lost acknowledgement

    // Nothing rolled up yet: the report merges the handoffs.
    let now = Timestamp::now().as_millis();
    both_ways(&app, &filters(fx.id("A"), now)).await;
    settle(&app, T0 - DAY, now).await;
    let now = Timestamp::now().as_millis();
    let settled = both_ways(&app, &filters(fx.id("A"), now)).await;
    assert_eq!(settled[0].totals.requested, 7, "the fixture's week");
    assert_eq!(settled[0].totals.rehandoffs, 1);
    assert_eq!(settled[8].totals.requested, 2, "r1 and r2 in the last week");

    // Late events: h5, waiting since Tuesday 11:15, is assigned on Thursday; and c6 asks for
    // a person again on Wednesday 09:00 (h8), within 24 h of h6's release on Tuesday 10:33,
    // which makes h6 a re-handoff (its hour is in the rollup already). Shipped twice.
    let h5 = of("h5", HandoffEventKind::Requested);
    let mut h5_assigned = event(&h5, HandoffEventKind::Assigned, T0 + 3 * DAY + 9 * HOUR);
    h5_assigned.agent_id = Some(agent_b);
    let h8 = new_handoff(
        &of("h7", HandoffEventKind::Requested),
        T0 + 2 * DAY + 9 * HOUR,
    );
    let late = vec![
        (2_000, h5_assigned),
        (2_001, h8.clone()),
        (
            2_002,
            event(&h8, HandoffEventKind::Queued, T0 + 2 * DAY + 9 * HOUR),
        ),
    ];
    ch.insert_events(&late).await.unwrap();
    // One pass follows the new request to h6's hour; the report then merges that hour from
    // the handoffs until the rollup has it again.
    rollup::refresh(ch, &SLA, Timestamp::now().as_millis(), 0)
        .await
        .unwrap();
    // The same filters (and "now") from here on, so that the reports can be compared too.
    let fs = filters(fx.id("A"), Timestamp::now().as_millis());
    let late_seen = both_ways(&app, &fs).await;
    assert_eq!(late_seen[0].totals.requested, 8, "h8 is in the week");
    assert_eq!(late_seen[0].totals.rehandoffs, 2, "h4 and now h6");
    ch.insert_events(&late).await.unwrap();
    ch.insert_events(&first).await.unwrap();
    assert_eq!(both_ways(&app, &fs).await, late_seen);
    settle(&app, T0 - DAY, Timestamp::now().as_millis()).await;
    assert_eq!(both_ways(&app, &fs).await, late_seen);

    // Superseded versions go; the report stays the same.
    let deleted = rollup::cleanup(ch, &SLA, Timestamp::now().as_millis(), 0)
        .await
        .unwrap();
    assert!(deleted > 0, "the late events superseded versions");
    crate::helpers::eventually("the cleanup to finish", || async {
        let pending: u64 = ch
            .client()
            .query(
                "SELECT count() FROM system.mutations
                 WHERE database = currentDatabase() AND is_done = 0",
            )
            .fetch_one()
            .await
            .unwrap();
        (pending == 0).then_some(())
    })
    .await;
    assert_eq!(both_ways(&app, &fs).await, late_seen);

    // The report reads the rollup for the hours it covers: without the handoffs' states, the
    // fixture's week (whole days, all covered) keeps every figure.
    ch.client()
        .query("TRUNCATE TABLE handoff_summary")
        .execute()
        .await
        .unwrap();
    let week = &fs[0];
    let store = app.services.store.as_ref();
    let from_rollup = reports::summary_with(ch, store, week, &SLA, true)
        .await
        .unwrap();
    assert_eq!(from_rollup.totals, late_seen[0].totals);
    assert_eq!(from_rollup.by_agent, late_seen[0].by_agent);
    assert_eq!(from_rollup.heatmap, late_seen[0].heatmap);
    assert_eq!(
        from_rollup.reasons_over_time,
        late_seen[0].reasons_over_time
    );
    let direct = reports::summary_with(ch, store, week, &SLA, false)
        .await
        .unwrap();
    assert_eq!(direct.totals.requested, 0, "no handoff states left");
}

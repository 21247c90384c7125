#!/usr/bin/env python3
"""Runs Baton's ClickHouse migrations and report queries on a current ClickHouse engine.

The tests run against Debian's clickhouse-server 18.16 (the only one installable here); users
run a current release. chdb embeds a current engine, so this script proves the same SQL files
also work there, and that every report query gives the hand-computed figures on known event
sets that were inserted twice (as a re-shipped batch would be).

The events go in once before the migrations that add handoff_summary run (so their backfill is
checked), and once more after (so the materialized view sees the replay); then every handoff's
merged summary must equal the same figures computed from the raw events with FINAL. Then the
rollup (migration 0004, src/analytics/rollup.rs) is computed the way its worker does, and the
period report must give the same figures with it as without it, and the hand-computed ones.

Usage: python3 scripts/check_modern_clickhouse.py   (pip install chdb first)
       python3 scripts/check_modern_clickhouse.py --http http://127.0.0.1:8123
         runs the same checks on a running server instead (e.g. a private 18.16), in a
         throw-away database.
"""
import csv
import io
import json
import math
import pathlib
import re
import sys
import tempfile
import urllib.request
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIGRATIONS = sorted((ROOT / "migrations" / "clickhouse").glob("*.sql"))
QUERIES = sorted((ROOT / "src" / "analytics" / "queries").glob("*.sql"))
FIXTURE = ROOT / "tests" / "fixtures" / "report_events.csv"

# The fixture's times are seconds after T0, Monday 2026-03-02 00:00:00 UTC.
T0_MS = 1772409600 * 1000
WEEK_MS = 7 * 86400 * 1000
COLUMNS = ("event_id, event_type, handoff_id, conversation_id, channel, reason, priority, "
           "agent_id, occurred_at, occurred_at_ms, wait_ms, seq, team, detail")


def bucket_of(ms):
    """A duration's histogram bucket (src/analytics/histogram.rs)."""
    return 0 if ms < 1 else min(2047, math.ceil(math.log(ms) / math.log(1.02)) + 1)


def buckets(*values):
    return [bucket_of(v) for v in values]


def percentiles(hist):
    """The buckets of p50, p90, p99 of {bucket: count}: the value at index floor(level * n)."""
    n = sum(hist.values())
    if n == 0:
        return []
    out = []
    for level in (0.5, 0.9, 0.99):
        rank, seen = min(int(level * n), n - 1), 0
        for b in sorted(hist):
            seen += hist[b]
            if seen > rank:
                out.append(b)
                break
    return out


def statements(sql: str):
    """Same rule as the gateway: strip -- comments, a ';' at a line end ends a statement."""
    out, current = [], []
    for line in sql.splitlines():
        line = line.split("--", 1)[0]
        current.append(line)
        if line.rstrip().endswith(";"):
            stmt = "\n".join(current).strip().rstrip(";").strip()
            if stmt:
                out.append(stmt)
            current = []
    rest = "\n".join(current).strip()
    if rest:
        out.append(rest)
    return out


def literal(value):
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(literal(v) for v in value) + "]"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def bind(sql: str, values: dict) -> str:
    """Binds the `?` placeholders as the gateway does: in the order the `-- params:` line names
    them, each name looked up in `values`."""
    m = re.search(r"^-- params: (.*)$", sql, re.M)
    names = [n.strip() for n in m.group(1).split(",")] if m else []
    parts = sql.split("?")
    assert len(parts) - 1 == len(names), f"{len(parts) - 1} placeholders, {len(names)} params"
    out = parts[0]
    for name, rest in zip(names, parts[1:]):
        out += literal(values[name]) + rest
    return out


class Chdb:
    def __init__(self, tmp):
        from chdb import session
        self.s = session.Session(tmp)
        self.s.query("CREATE DATABASE IF NOT EXISTS baton_check")
        self.s.query("USE baton_check")

    def run(self, sql):
        return str(self.s.query(sql, "CSVWithNames"))

    def execute(self, sql):
        self.s.query(sql)


class Http:
    def __init__(self, url):
        self.url = url.rstrip("/")
        self.db = "baton_check_" + uuid.uuid4().hex[:12]
        self.post(f"CREATE DATABASE {self.db}", db=None)

    def post(self, sql, db="self"):
        url = self.url + "/" + (f"?database={self.db}" if db else "")
        req = urllib.request.Request(url, data=sql.encode(), method="POST")
        try:
            with urllib.request.urlopen(req) as r:
                return r.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(e.read().decode()) from None

    def run(self, sql):
        return self.post(sql + "\nFORMAT CSVWithNames")

    def execute(self, sql):
        self.post(sql)

    def close(self):
        self.post(f"DROP DATABASE {self.db}", db=None)


def rows(engine, sql):
    return list(csv.DictReader(io.StringIO(engine.run(sql))))


def event_values(events):
    """events: (handoff, kind, occurred_ms, wait_ms, conversation, channel, reason, priority,
    agent, team) -> a VALUES list with fresh event ids and increasing seq."""
    out = []
    for seq, (h, kind, at, wait, conv, channel, reason, prio, agent, team) in enumerate(events, 1):
        out.append(
            f"('{uuid.uuid4()}', '{kind}', '{h}', '{conv}', '{channel}', '{reason}', '{prio}', "
            f"'{agent}', toDateTime({at // 1000}), {at}, {wait}, {seq}, '{team}', '')"
        )
    return ",".join(out)


def insert_once(engine, events):
    """Inserts the events; returns their ids, for replay()."""
    before = {r["event_id"] for r in rows(engine, "SELECT event_id FROM handoff_events")}
    engine.execute(f"INSERT INTO handoff_events ({COLUMNS}) VALUES {event_values(events)}")
    return [r["event_id"] for r in rows(engine, "SELECT event_id FROM handoff_events")
            if r["event_id"] not in before]


def replay(engine, ids):
    """The same rows again, with the same event ids: what a retried shipment does."""
    engine.execute(f"INSERT INTO handoff_events ({COLUMNS}) SELECT {COLUMNS} FROM handoff_events "
                   "WHERE event_id IN (" + ",".join(f"'{e}'" for e in ids) + ")")


# Per handoff, every value the reports take from handoff_summary, computed from the raw events
# with FINAL (the way the reports computed them before the summary existed), and from the
# summary's merged states. They must be equal for every handoff.
PER_HANDOFF_RAW = """
SELECT handoff_id, any(conversation_id) AS conversation, any(channel) AS channel,
    any(reason) AS reason, argMin(priority, seq) AS priority, argMax(team, seq) AS team,
    argMaxIf(agent_id, seq, event_type = 'assigned') AS agent,
    countIf(event_type = 'requested') > 0 AS requested,
    minIf(occurred_at_ms, event_type = 'requested') AS requested_at,
    argMax(event_type, seq) AS last,
    countIf(event_type = 'assigned') > 0 AS assigned,
    minIf(wait_ms, event_type = 'assigned') AS assign_wait,
    countIf(event_type = 'first_agent_reply') > 0 AS replied,
    minIf(wait_ms, event_type = 'first_agent_reply') AS reply_wait,
    countIf(event_type = 'accepted') > 0 AS accepted,
    minIf(wait_ms, event_type = 'accepted') AS accept_wait,
    arraySort(groupUniqArrayIf(wait_ms, event_type = 'offered')) AS offer_waits,
    countIf(event_type = 'offered') AS offers, countIf(event_type = 'declined') AS declines,
    countIf(event_type = 'offer_timed_out') AS timeouts,
    countIf(event_type = 'transferred') AS transfers,
    argMaxIf(event_type, seq, event_type IN ('resolved', 'released', 'abandoned')) AS outcome,
    minIf(wait_ms, event_type IN ('resolved', 'released', 'abandoned')) AS closed_wait,
    minIf(occurred_at_ms, event_type IN ('resolved', 'released', 'abandoned')) AS closed_at
FROM handoff_events FINAL
GROUP BY handoff_id
ORDER BY handoff_id
"""
PER_HANDOFF_SUMMARY = """
SELECT handoff_id, anyMerge(s_conversation) AS conversation, anyMerge(s_channel) AS channel,
    anyMerge(s_reason) AS reason, argMinMerge(s_priority) AS priority,
    argMaxMerge(s_team) AS team, argMaxIfMerge(s_agent) AS agent,
    maxIfMerge(s_requested) = 1 AS requested, minIfMerge(s_requested_at) AS requested_at,
    argMaxMerge(s_last) AS last,
    maxIfMerge(s_assigned) = 1 AS assigned, minIfMerge(s_assign_wait) AS assign_wait,
    maxIfMerge(s_replied) = 1 AS replied, minIfMerge(s_reply_wait) AS reply_wait,
    maxIfMerge(s_accepted) = 1 AS accepted, minIfMerge(s_accept_wait) AS accept_wait,
    arraySort(groupUniqArrayIfMerge(s_offer_waits)) AS offer_waits,
    uniqExactIfMerge(s_offers) AS offers, uniqExactIfMerge(s_declines) AS declines,
    uniqExactIfMerge(s_timeouts) AS timeouts, uniqExactIfMerge(s_transfers) AS transfers,
    argMaxIfMerge(s_outcome) AS outcome, minIfMerge(s_closed_wait) AS closed_wait,
    minIfMerge(s_closed_at) AS closed_at
FROM handoff_summary
GROUP BY handoff_id
ORDER BY handoff_id
"""


def fixture_events():
    """The report fixture (tests/fixtures/report_events.csv), shared with the Rust tests."""
    with open(FIXTURE) as f:
        lines = list(csv.DictReader(f))
    requested = {l["handoff"]: int(l["at_s"]) for l in lines if l["event"] == "requested"}
    ids = {}

    def uid(name):
        return ids.setdefault(name, str(uuid.uuid4())) if name else ""
    events = []
    for l in lines:
        at = T0_MS + int(l["at_s"]) * 1000
        wait = (int(l["at_s"]) - requested[l["handoff"]]) * 1000
        events.append((uid(l["handoff"]), l["event"], at, wait, uid(l["conversation"]), l["channel"],
                       l["reason"], l["priority"], uid(l["agent"]), l["team"]))
    return events, ids


def main() -> int:
    failures = []
    http = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--http" else None
    with tempfile.TemporaryDirectory() as tmp:
        engine = Http(http) if http else Chdb(tmp)
        print("engine:", engine.run("SELECT version() AS v").splitlines()[1])
        def migrate(paths):
            for path in paths:
                for stmt in statements(path.read_text()):
                    engine.execute(stmt)
                print("migration ok:", path.name)
        # The events table as it was before handoff_summary, then the events once, then the
        # rest of the migrations (backfilling the summary), then the events again.
        migrate([p for p in MIGRATIONS if p.name < "0003"])

        # "Today" set: three handoffs on web chat just now; a and b offered after 1 s and 3 s;
        # c still waiting.
        now_ms = int(rows(engine, "SELECT toUInt64(toUnixTimestamp(now())) * 1000 AS n")[0]["n"])
        a, b, c = (str(uuid.uuid4()) for _ in range(3))
        today = [(a, "requested", 0), (a, "queued", 0), (b, "requested", 0), (b, "queued", 0),
                 (c, "requested", 0), (c, "queued", 0), (a, "offered", 1000), (b, "offered", 3000)]
        inserted = insert_once(engine, [(h, k, now_ms, w, str(uuid.uuid4()), "web_chat",
                                         "customer_request", "normal", "", "") for h, k, w in today])
        # The report fixture, a week in March 2026 (hand computations in tests/api/reports.rs).
        events, ids = fixture_events()
        inserted += insert_once(engine, events)

        def check(name, got, want):
            ok = got == want
            print(f"{'ok' if ok else 'MISMATCH'}: {name} -> {got}")
            if not ok:
                failures.append(f"{name}: expected {want}, got {got}")

        def check_summary(when):
            from_raw = rows(engine, PER_HANDOFF_RAW)
            from_summary = rows(engine, PER_HANDOFF_SUMMARY)
            check(f"handoffs in handoff_summary ({when})", len(from_summary), 11)
            for a, b in zip(from_raw, from_summary):
                if a != b:
                    failures.append(f"handoff_summary differs from the raw events: {a} != {b}")
            check(f"every handoff's summary equals its raw events ({when})",
                  from_raw == from_summary, True)

        migrate([p for p in MIGRATIONS if p.name >= "0003"])
        check_summary("backfilled")
        replay(engine, inserted)
        check_summary("replayed through the view")
        raw = int(rows(engine, "SELECT count() AS n FROM handoff_events")[0]["n"])
        print("raw rows (before merges):", raw)
        summary_rows = int(rows(engine, "SELECT count() AS n FROM handoff_summary")[0]["n"])
        print("handoff_summary rows (before merges):", summary_rows)

        name_of = {v: k for k, v in ids.items()}
        week = {
            "from_s": T0_MS // 1000, "from_ms": T0_MS, "to_ms": T0_MS + WEEK_MS,
            "channel": "", "team": "", "agent": "", "reason": "", "priority": "",
            "now_ms": now_ms, "sla_assignment_ms": 120000, "sla_first_reply_ms": 300000,
            "bucket_ms": 86400000, "drill": "sla_breached", "limit": 1000,
            "since_s": now_ms // 1000 - 3600, "use_rollup": 1,
        }

        # The rollup, as src/analytics/rollup.rs computes it: the touches the view noted, the
        # releases that later requests make re-handoffs, the hours, then the days.
        touched = int(rows(engine, "SELECT count() AS n FROM handoff_touches")[0]["n"])
        check("hours touched by the inserts (view and backfill)", touched > 0, True)
        report = {p.stem: p.read_text() for p in QUERIES}

        def rollup_pass(since_s):
            import time
            time.sleep(7)  # the touches must be quiet for a version to count
            snap = int(rows(engine, "SELECT toUInt32(now()) AS s")[0]["s"])
            now = snap * 1000
            sla = {"sla_assignment_ms": 120000, "sla_first_reply_ms": 300000, "now_ms": now}
            engine.execute(bind(report["rollup_rehandoffs"], {"since_s": since_s}))
            hours = [int(r["hour_ms"]) for r in rows(engine, bind(
                report["rollup_dirty_hours"], {**sla, "snapshot_s": snap}))]
            for i, h in enumerate(hours):
                version = now * 1000 + i
                engine.execute(bind(report["rollup_refresh"], {
                    **sla, "version": version, "from_ms": h, "to_ms": h + 3600000,
                    "from_s": h // 1000, "channel": "", "team": "", "agent": "", "reason": "",
                    "priority": ""}))
                engine.execute(bind(report["rollup_dims"], {
                    **sla, "span_ms": 3600000, "version": version}))
                engine.execute(bind(report["rollup_commit"], {
                    **sla, "span_ms": 3600000, "starts": [h], "version": version,
                    "snapshot_s": snap}))
            day_snap = int(rows(engine, "SELECT toUInt32(now()) AS s")[0]["s"])
            days = [int(r["day_ms"]) for r in rows(engine, bind(report["rollup_ready_days"], sla))]
            for i, d in enumerate(days):
                version = now * 1000 + 500 + i
                engine.execute(bind(report["rollup_days"], {
                    **sla, "version": version, "from_ms": d, "to_ms": d + 86400000}))
                engine.execute(bind(report["rollup_dims"], {
                    **sla, "span_ms": 86400000, "version": version}))
                engine.execute(bind(report["rollup_commit"], {
                    **sla, "span_ms": 86400000, "starts": [d], "version": version,
                    "snapshot_s": day_snap}))
            print(f"rollup pass: {len(hours)} hours, {len(days)} days")
            return snap, len(hours), len(days)

        # The first passes touch h4's hour again (h5's request makes h4 a re-handoff), which
        # is computed once quiet; then its day.
        snap, hours, _ = rollup_pass(0)
        check("rollup: hours computed", hours > 0, True)
        for _ in range(3):
            snap, hours, days = rollup_pass(snap - 10)
        spans = {r["span_ms"]: int(r["n"]) for r in rows(
            engine, "SELECT span_ms, count() AS n FROM handoff_rollup_commits GROUP BY span_ms")}
        # Sunday (h0), Monday, Tuesday, Wednesday.
        check("rollup: days of the fixture merged", spans.get("86400000", 0), 4)
        def filtered(params):
            return int(any(params.get(k) for k in ("channel", "team", "agent", "reason", "priority")))

        def covered_of(params):
            hours, spans = [0], [0]
            if params.get("use_rollup", 1):
                cov = rows(engine, bind(report["rollup_covered"], params))
                hours += [int(r["hour_ms"]) for r in cov]
                spans += sorted({int(r["span_key"]) for r in cov})
            return hours, spans

        def metrics_sql(params):
            """handoff_metrics bound as the gateway binds it: the covered hours first."""
            hours, spans = covered_of(params)
            run, best, start = sorted(hours[1:]), (0, 0), 0
            for i, h in enumerate(run):  # the longest run of covered hours, as reports.rs
                if i == 0 or run[i - 1] + 3600000 != h:
                    start = h
                if h + 3600000 - start > best[1] - best[0]:
                    best = (start, h + 3600000)
            return bind(report["handoff_metrics"], {
                **params, "covered_hours": hours, "covered_run_from_ms": best[0],
                "covered_run_to_ms": best[1]})

        def report_rows(params):
            """The report as src/analytics/reports.rs adds it up: handoff_metrics' combinations
            (each in its six rows) plus, unfiltered, handoff_metrics_dims' rows; percentiles as
            histogram buckets (src/analytics/histogram.rs)."""
            hours, spans = covered_of(params)
            counts = ("requested", "assigned", "resolved", "released", "abandoned", "open",
                      "waiting", "offered", "reoffered", "offers", "declines", "offer_timeouts",
                      "transfers", "transferred", "rehandoffs", "sla_assignment_breaches",
                      "sla_first_reply_breaches")
            out = {}

            # The twenty counts every report query returns, in order.
            twenty = ("requested", "assigned", "replied", "accepted", "handled", "resolved",
                      "released", "abandoned", "open", "waiting", "offered", "reoffered",
                      "offers", "declines", "offer_timeouts", "transfers", "transferred",
                      "rehandoffs", "sla_assignment_breaches", "sla_first_reply_breaches")

            def add(dim, key, values, buckets, heat):
                """Adds counts (the twenty, in order), chart buckets and heat cells to a row."""
                r = out.setdefault((dim, key), {
                    "counts": {c: 0 for c in counts}, "hist": [dict() for _ in range(4)],
                    "buckets": {}, "heat": {}})
                named = dict(zip(twenty, values))
                for c in counts:
                    r["counts"][c] += int(named[c])
                for into, (ks, vs) in ((r["buckets"], buckets), (r["heat"], heat)):
                    for k, v in zip(json.loads(ks), json.loads(vs)):
                        into[k] = into.get(k, 0) + int(v)
                return r

            combos = rows(engine, metrics_sql(params))
            if filtered(params) and len(spans) > 1:
                combos += rows(engine, bind(report["handoff_metrics_covered"],
                                            {**params, "covered_spans": spans}))
            for src in combos:
                # Columns by position: five attributes, the twenty counts, the histogram keys,
                # the chart buckets, the heat cells.
                v = list(src.values())
                ch, team, agent, reason, prio = v[:5]
                for d in [("all", ""), ("channel", ch), ("team", team), ("agent", agent),
                          ("reason", reason), ("priority", prio)]:
                    r = add(*d, v[5:25], (v[26], v[27]), (v[28], v[29]))
                    for k in json.loads(v[25]):
                        h = r["hist"][k // 2048]
                        h[k % 2048] = h.get(k % 2048, 0) + 1
            if not filtered(params) and len(spans) > 1:
                for src in rows(engine, bind(report["handoff_metrics_dims"],
                                             {**params, "covered_spans": spans})):
                    v = list(src.values())
                    r = add(v[0], v[1], v[2:22], (v[22], v[23]), (v[24], v[25]))
                    for kind, counted in enumerate(v[26:30]):
                        for b, n in enumerate(json.loads(counted)):
                            if int(n):
                                r["hist"][kind][b] = r["hist"][kind].get(b, 0) + int(n)
            report_out = {}
            for key, r in out.items():
                flat = {c: str(v) for c, v in r["counts"].items()}
                for kind, name in enumerate(("assign_wait_q", "reply_wait_q", "accept_q",
                                             "handle_q")):
                    flat[name] = percentiles(r["hist"][kind])
                # The chart reads the 'reason' rows' buckets, the heatmap the 'all' row's
                # cells; buckets and cells of 0 (sums over the rollup) are left out, as empty.
                flat["buckets"] = sorted(
                    (k, v) for k, v in r["buckets"].items() if v and key[0] == "reason")
                flat["heat"] = sorted((k, v) for k, v in r["heat"].items() if v and key[0] == "all")
                report_out[key] = flat
            return report_out

        ragged_day = {**week, "from_ms": T0_MS + 86400000 + 34200000,
                      "to_ms": T0_MS + 2 * 86400000 + 34200000, "bucket_ms": 3600000,
                      "from_s": (T0_MS + 86400000 + 34200000) // 1000}
        for label, params in [("week", week), ("week, channel=api", {**week, "channel": "api"}),
                              ("ragged day", ragged_day)]:
            covered = len(rows(engine, bind(report["rollup_covered"], params)))
            check(f"hours the rollup covers ({label})", covered > 0, True)
            check(f"handoff_metrics with the rollup equals without ({label})",
                  report_rows(params) == report_rows({**params, "use_rollup": 0}), True)
        q = lambda p, s: f"[{p},{s}]"
        expected = {
            "handoffs_today_by_channel": [{"channel": "web_chat", "handoffs": "3"}],
            "queued_now": [{"queued": "1"}],
            "wait_to_assignment_today": [{"assigned": "2", "median_wait": "3000"}],
            "requested_recently": [{"last_5m": "3", "last_15m": "3", "last_60m": "3"}],
        }
        # Mon 00h h1, 01h h2, 02h h3; Tue 10h h4 h6, 11h h5; Wed 11h h7 (weekday * 100 + hour).
        heatmap = [(100, 1), (101, 1), (102, 1), (210, 2), (211, 1), (311, 1)]
        # Day buckets. Mon: h1 h3 customer_request, h2 bot_failure; Tue: h4 h5 frustration,
        # h6 customer_request; Wed: h7.
        reasons_over_time = sorted(
            (T0_MS + d * 86400000, r, n)
            for d, r, n in [(0, "bot_failure", 1), (0, "customer_request", 2),
                            (1, "customer_request", 1), (1, "frustration", 2),
                            (2, "customer_request", 1)])

        for path in QUERIES:
            name = path.stem
            if name.startswith("rollup_") or name in ("handoff_metrics_dims",
                                                      "handoff_metrics_covered"):
                continue  # run above
            if name == "handoff_metrics":
                by = {(d, name_of.get(k, k)): r for (d, k), r in report_rows(week).items()}
                total = by[("all", "")]
                check(name + " (all)", {k: total[k] for k in (
                    "requested", "assigned", "assign_wait_q", "reply_wait_q",
                    "accept_q", "handle_q", "resolved", "released",
                    "abandoned", "open", "waiting", "offered", "reoffered", "offers", "declines",
                    "offer_timeouts", "transfers", "transferred", "rehandoffs",
                    "sla_assignment_breaches", "sla_first_reply_breaches")}, {
                    "requested": "7", "assigned": "5",
                    "assign_wait_q": buckets(15000, 205000, 205000),
                    "reply_wait_q": buckets(100000, 300000, 300000),
                    "accept_q": buckets(5000, 20000, 20000),
                    "handle_q": buckets(285000, 700000, 700000),
                    "resolved": "3", "released": "2", "abandoned": "1", "open": "1",
                    "waiting": "1", "offered": "6", "reoffered": "1", "offers": "8",
                    "declines": "1", "offer_timeouts": "1", "transfers": "1",
                    "transferred": "1", "rehandoffs": "1", "sla_assignment_breaches": "3",
                    "sla_first_reply_breaches": "3"})
                check(name + " (heatmap, from 'all')", total["heat"], heatmap)
                check(name + " (reasons over time, from 'reason')", sorted(
                    (start, k, n) for (d, k), r in by.items() if d == "reason"
                    for start, n in r["buckets"]), reasons_over_time)
                check(name + " (breakdowns)", sorted(
                    (d, k, r["requested"]) for (d, k), r in by.items() if d != "all"), sorted([
                        ("agent", "", "2"), ("agent", "A", "3"), ("agent", "B", "2"),
                        ("channel", "api", "3"), ("channel", "web_chat", "4"),
                        ("priority", "high", "1"), ("priority", "low", "1"),
                        ("priority", "normal", "3"), ("priority", "urgent", "2"),
                        ("reason", "bot_failure", "1"), ("reason", "customer_request", "4"),
                        ("reason", "frustration", "2"), ("team", "general", "4"),
                        ("team", "billing", "3")]))
                api_all = report_rows({**week, "channel": "api"})[("all", "")]
                check(name + " (channel=api)", {k: api_all[k] for k in (
                    "requested", "assigned", "abandoned", "released", "rehandoffs",
                    "sla_assignment_breaches")}, {"requested": "3", "assigned": "1",
                    "abandoned": "1", "released": "1", "rehandoffs": "1",
                    "sla_assignment_breaches": "3"})
            elif name == "handoff_list":
                got = rows(engine, bind(path.read_text(), week))
                got_names = [name_of[r["handoff_id"]] for r in got]
                check(name + " (sla_breached)", got_names, ["h5", "h4", "h3"])
                for drill, want in [("rehandoff", ["h4"]), ("transferred", ["h2"]),
                                    ("abandoned", ["h3"]), ("waiting", ["h5"]),
                                    ("requested", ["h7", "h5", "h6", "h4", "h3", "h2", "h1"])]:
                    got = rows(engine, bind(path.read_text(), {**week, "drill": drill}))
                    check(f"{name} ({drill})", [name_of[r["handoff_id"]] for r in got], want)
            else:
                got = rows(engine, bind(path.read_text(), week))
                want = expected.get(name)
                if want is None:
                    failures.append(f"{name}: no expected result in this script; add one")
                check(name, got, want)
        if http:
            engine.close()
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    print("ClickHouse report check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

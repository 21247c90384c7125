#!/usr/bin/env python3
"""Runs Baton's ClickHouse migrations and dashboard queries on a current ClickHouse engine.

The tests run against Debian's clickhouse-server 18.16 (the only one installable here); users
run a current release. chdb embeds a current engine, so this script proves the same SQL files
also work there, and that the reports give the hand-computed figures on a known event set
that was inserted twice (as a re-shipped batch would be).

Usage: python3 scripts/check_modern_clickhouse.py   (pip install chdb first)
"""
import csv
import io
import pathlib
import sys
import tempfile
import uuid

from chdb import session

ROOT = pathlib.Path(__file__).resolve().parent.parent
MIGRATIONS = sorted((ROOT / "migrations" / "clickhouse").glob("*.sql"))
QUERIES = sorted((ROOT / "src" / "analytics" / "queries").glob("*.sql"))


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


def rows(s, sql):
    text = str(s.query(sql, "CSVWithNames"))
    return list(csv.DictReader(io.StringIO(text)))


def main() -> int:
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        s = session.Session(tmp)
        print("engine:", str(s.query("SELECT version()", "CSV")).strip())
        s.query("CREATE DATABASE IF NOT EXISTS baton_check")
        s.query("USE baton_check")
        for path in MIGRATIONS:
            for stmt in statements(path.read_text()):
                s.query(stmt)
            print("migration ok:", path.name)

        # Three handoffs on web chat; a and b offered after 1 s and 3 s; c still waiting.
        a, b, c = (str(uuid.uuid4()) for _ in range(3))
        events = [
            (a, "requested", 0), (a, "queued", 0), (b, "requested", 0), (b, "queued", 0),
            (c, "requested", 0), (c, "queued", 0), (a, "offered", 1000), (b, "offered", 3000),
        ]
        values = ",".join(
            f"('{uuid.uuid4()}', '{kind}', '{h}', '{uuid.uuid4()}', 'web_chat', 'customer_request', 'normal', '', "
            f"now(), toUInt64(toUnixTimestamp(now())) * 1000, {wait}, {seq})"
            for seq, (h, kind, wait) in enumerate(events, start=1)
        )
        columns = ("event_id, event_type, handoff_id, conversation_id, channel, reason, priority, "
                   "agent_id, occurred_at, occurred_at_ms, wait_ms, seq")
        insert = f"INSERT INTO handoff_events ({columns}) VALUES {values}"
        # The same rows twice, with the same event ids: what a retried shipment does.
        s.query(insert)
        duplicated = rows(s, "SELECT event_id FROM handoff_events")
        s.query(
            "INSERT INTO handoff_events SELECT * FROM handoff_events WHERE event_id IN ("
            + ",".join(f"'{r['event_id']}'" for r in duplicated)
            + ")"
        )
        raw = int(rows(s, "SELECT count() AS n FROM handoff_events")[0]["n"])
        print("raw rows (before merges):", raw)

        expected = {
            "handoffs_today_by_channel": [{"channel": "web_chat", "handoffs": "3"}],
            "queued_now": [{"queued": "1"}],
            "wait_to_assignment_today": [{"assigned": "2", "median_wait": "3000"}],
        }
        for path in QUERIES:
            name = path.stem
            got = rows(s, path.read_text())
            want = expected.get(name)
            status = "ok" if want is None or got == want else "MISMATCH"
            print(f"query {status}: {name} -> {got}")
            if status != "ok":
                failures.append(f"{name}: expected {want}, got {got}")
            if want is None:
                failures.append(f"{name}: no expected result in this script; add one")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    print("modern ClickHouse check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

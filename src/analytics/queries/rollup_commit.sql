-- Records versions of the rollup as whole: one row per span, written after the version's rows.
-- params: sla_assignment_ms, sla_first_reply_ms, span_ms, starts, version, snapshot_s
INSERT INTO handoff_rollup_commits
SELECT toUInt64(?), toUInt64(?), toUInt64(?), toUInt64(arrayJoin(?)), toUInt64(?), toDateTime(?)

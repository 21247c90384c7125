-- The per-breakdown-row rollup (handoff_rollup_dims, migrations/clickhouse/0005) of the spans
-- of one version, from that version's combination rows in handoff_rollup: each combination
-- counts in the six rows of the report ('all' and one per dimension), its counts summed
-- there and its histogram keys counted per kind of duration and bucket. The caller
-- (src/analytics/rollup.rs) runs it after the version's combination rows and before its
-- commit, so a committed version is whole in both tables.
-- params: sla_assignment_ms, sla_first_reply_ms, span_ms, version, sla_assignment_ms, sla_first_reply_ms, span_ms, version
INSERT INTO handoff_rollup_dims
SELECT
    sla_assignment_ms, sla_first_reply_ms, span_ms, start_ms, version, dimension, key,
    u_requested, u_assigned, u_replied, u_accepted, u_handled, u_resolved, u_released, u_abandoned, u_open, u_waiting, u_offered, u_reoffered, u_offers, u_declines, u_offer_timeouts, u_transfers, u_transferred, u_rehandoffs, u_sla_assignment_breaches, u_sla_first_reply_breaches,
    u_hours, lo_assign_wait, h_assign_wait, lo_reply_wait, h_reply_wait, lo_accept, h_accept,
    lo_handle, h_handle
FROM
(
    SELECT
        sla_assignment_ms, sla_first_reply_ms, span_ms, start_ms, version,
        tupleElement(d, 1) AS dimension,
        tupleElement(d, 2) AS key,
        sum(c_requested) AS u_requested,
        sum(c_assigned) AS u_assigned,
        sum(c_replied) AS u_replied,
        sum(c_accepted) AS u_accepted,
        sum(c_handled) AS u_handled,
        sum(c_resolved) AS u_resolved,
        sum(c_released) AS u_released,
        sum(c_abandoned) AS u_abandoned,
        sum(c_open) AS u_open,
        sum(c_waiting) AS u_waiting,
        sum(c_offered) AS u_offered,
        sum(c_reoffered) AS u_reoffered,
        sum(c_offers) AS u_offers,
        sum(c_declines) AS u_declines,
        sum(c_offer_timeouts) AS u_offer_timeouts,
        sum(c_transfers) AS u_transfers,
        sum(c_transferred) AS u_transferred,
        sum(c_rehandoffs) AS u_rehandoffs,
        sum(c_sla_assignment_breaches) AS u_sla_assignment_breaches,
        sum(c_sla_first_reply_breaches) AS u_sla_first_reply_breaches,
        sumForEach(c_hours) AS u_hours
    FROM
    (
        SELECT
            *,
            arrayJoin([('all', ''), ('channel', channel), ('team', team), ('agent', agent),
                       ('reason', reason), ('priority', priority)]) AS d
        FROM handoff_rollup
        PREWHERE sla_assignment_ms = ? AND sla_first_reply_ms = ? AND span_ms = ? AND version = ?
    )
    GROUP BY sla_assignment_ms, sla_first_reply_ms, span_ms, start_ms, version, dimension, key
) AS counts
ANY LEFT JOIN
(
    -- Per row and kind (key / 2048), from the first bucket (key % 2048) with a count: how
    -- many durations in each.
    SELECT
        start_ms, dimension, key,
        anyIf(lo, kind = 0) AS lo_assign_wait, anyIf(h, kind = 0) AS h_assign_wait,
        anyIf(lo, kind = 1) AS lo_reply_wait, anyIf(h, kind = 1) AS h_reply_wait,
        anyIf(lo, kind = 2) AS lo_accept, anyIf(h, kind = 2) AS h_accept,
        anyIf(lo, kind = 3) AS lo_handle, anyIf(h, kind = 3) AS h_handle
    FROM
    (
        SELECT
            start_ms, dimension, key, intDiv(hk, 2048) AS kind, toUInt16(min(hk % 2048)) AS lo,
            arraySlice(groupArrayInsertAt(toUInt32(n), toUInt32(hk % 2048)), lo + 1) AS h
        FROM
        (
            SELECT start_ms, tupleElement(d, 1) AS dimension, tupleElement(d, 2) AS key, hk, count() AS n
            FROM
            (
                SELECT
                    start_ms, hk,
                    arrayJoin([('all', ''), ('channel', channel), ('team', team), ('agent', agent),
                               ('reason', reason), ('priority', priority)]) AS d
                FROM handoff_rollup
                ARRAY JOIN q_hist AS hk
                PREWHERE sla_assignment_ms = ? AND sla_first_reply_ms = ? AND span_ms = ? AND version = ?
            )
            GROUP BY start_ms, dimension, key, hk
        )
        GROUP BY start_ms, dimension, key, kind
    )
    GROUP BY start_ms, dimension, key
) AS hists USING (start_ms, dimension, key)

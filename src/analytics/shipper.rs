//! Ships handoff events from the store's outbox to ClickHouse.
//!
//! At least once: an event leaves the outbox only after ClickHouse confirmed the INSERT that
//! carried it, so a crash or an outage in between ships it again, and the table's
//! deduplication on the event id (reports read it with `FINAL`) keeps every figure exact.
//!
//! The worker streams rows into the `clickhouse` crate's [`Inserter`], which ends an INSERT
//! once it holds `batch_size` rows or [`MAX_INSERT_BYTES`], or once `interval` has passed. The
//! crate checks those limits only inside `commit()` and never retries, and an inserter whose
//! write failed must not be used again, so after any error the worker drops it (aborting the
//! open INSERT), leaves the events in the outbox, backs off with jitter and starts over.
//!
//! A batch ClickHouse refuses as bad data (see [`AnalyticsError::is_bad_data`]) would fail
//! forever and block every event behind it: the worker splits it in halves until each refused
//! event stands alone, ships the rest, and moves the refused ones, with ClickHouse's error, to
//! the store's dead letters. Outbox rows whose payload no longer parses go there too.

use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ::clickhouse::inserter::Inserter;
use rand::Rng;
use tokio::sync::{Notify, watch};

use super::clickhouse::EventRow;
use super::{AnalyticsError, ClickHouse};
use crate::store::{OutboxEntry, SharedStore, StoreError};

/// The most uncompressed bytes one INSERT carries, whatever `batch_size` says (events are a
/// few hundred bytes each, so this only binds for huge batch sizes).
pub const MAX_INSERT_BYTES: u64 = 16 * 1024 * 1024;

/// Why a shipment did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// Reading or trimming the outbox failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// ClickHouse refused or could not be reached.
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
}

impl From<::clickhouse::error::Error> for ShipError {
    fn from(e: ::clickhouse::error::Error) -> Self {
        Self::Analytics(e.into())
    }
}

/// What the shipper has done since the gateway started (for `/metrics`).
#[derive(Debug, Default)]
pub struct ShipStats {
    shipped: AtomicU64,
    failures: AtomicU64,
}

impl ShipStats {
    /// Events ClickHouse confirmed (a re-shipped event counts again).
    pub fn shipped(&self) -> u64 {
        self.shipped.load(Ordering::Relaxed)
    }

    /// Shipments that failed and wait for a retry.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn add_shipped(&self, n: usize) {
        self.shipped.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The event shipper. Cheap to clone.
#[derive(Clone)]
pub struct Shipper {
    store: SharedStore,
    clickhouse: ClickHouse,
    batch_size: u32,
    interval: Duration,
    schema_ready: Arc<AtomicBool>,
    kick: Arc<Notify>,
    stats: Arc<ShipStats>,
}

/// Outbox rows in outbox order: their positions and the rows they make.
#[derive(Default)]
struct Batch {
    seqs: Vec<i64>,
    rows: Vec<EventRow>,
}

impl Batch {
    fn push(&mut self, seq: i64, row: EventRow) {
        self.seqs.push(seq);
        self.rows.push(row);
    }
}

/// The worker's open INSERT and the outbox rows written into it.
#[derive(Default)]
struct Open {
    inserter: Option<Inserter<EventRow>>,
    batch: Batch,
}

impl Shipper {
    /// A shipper sending up to `batch_size` events per INSERT, every `interval` at the latest.
    pub fn new(
        store: SharedStore,
        clickhouse: ClickHouse,
        batch_size: u32,
        interval: Duration,
    ) -> Self {
        Self {
            store,
            clickhouse,
            batch_size: batch_size.max(1),
            interval,
            schema_ready: Arc::new(AtomicBool::new(false)),
            kick: Arc::new(Notify::new()),
            stats: Arc::default(),
        }
    }

    /// Asks the worker to look at the outbox now rather than at the next tick.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Counters since start.
    pub fn stats(&self) -> &ShipStats {
        &self.stats
    }

    async fn ensure_schema(&self) -> Result<(), ShipError> {
        if !self.schema_ready.load(Ordering::Acquire) {
            self.clickhouse.migrate().await?;
            self.schema_ready.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Notes a failure; a vanished table makes the next attempt run the migrations again.
    fn failed(&self, e: &ShipError) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        if let ShipError::Analytics(a) = e
            && a.is_missing_schema()
        {
            self.schema_ready.store(false, Ordering::Release);
        }
    }

    /// Reads up to `limit` events after `after`; rows that no longer parse go straight to the
    /// dead letters. Also returns how many outbox rows were read.
    async fn read(&self, after: i64, limit: u32) -> Result<(Batch, usize), ShipError> {
        let entries = self.store.outbox_batch(after, limit).await?;
        let read = entries.len();
        let mut rows = Batch::default();
        let mut broken = Vec::new();
        for OutboxEntry { seq, event } in entries {
            match event {
                Ok(e) => rows.push(seq, EventRow::from_event(seq, &e)),
                Err(why) => broken.push((seq, why)),
            }
        }
        if !broken.is_empty() {
            tracing::error!(
                count = broken.len(),
                "outbox rows do not parse; moved to the event dead letters"
            );
            self.store.outbox_dead_letter(broken).await?;
        }
        Ok((rows, read))
    }

    /// Acknowledges rows ClickHouse confirmed.
    async fn ack(&self, seqs: Vec<i64>) -> Result<(), ShipError> {
        let n = seqs.len();
        self.store.outbox_ack(seqs).await?;
        self.stats.add_shipped(n);
        Ok(())
    }

    /// A batch ClickHouse refused as bad data: ships what it takes, dead-letters the events it
    /// refuses one by one. A failure that is not about the data stops this; the rows stay in
    /// the outbox (those already inserted ship again later, deduplicated).
    async fn set_aside_refused(
        &self,
        batch: Batch,
        error: &AnalyticsError,
    ) -> Result<(), ShipError> {
        let clickhouse = &self.clickhouse;
        let refused = isolate_refused(&batch.rows, error.to_string(), |part| {
            Box::pin(clickhouse.insert_rows(part))
        })
        .await?;
        let mut letters = Vec::with_capacity(refused.len());
        let mut shipped = Vec::with_capacity(batch.seqs.len() - refused.len());
        let mut refused = refused.into_iter().peekable();
        for (i, seq) in batch.seqs.into_iter().enumerate() {
            match refused.next_if(|(r, _)| *r == i) {
                Some((_, why)) => letters.push((seq, why)),
                None => shipped.push(seq),
            }
        }
        tracing::error!(
            refused = letters.len(),
            shipped = shipped.len(),
            "ClickHouse refused events as bad data; moved them to the event dead letters"
        );
        self.store.outbox_dead_letter(letters).await?;
        self.ack(shipped).await
    }

    /// One shipment of the oldest waiting events in a single INSERT, outside the worker.
    /// Returns how many events left the outbox (shipped or dead-lettered).
    pub async fn ship_once(&self) -> Result<usize, ShipError> {
        let result = self.try_ship_once().await;
        if let Err(e) = &result {
            self.failed(e);
        }
        result
    }

    async fn try_ship_once(&self) -> Result<usize, ShipError> {
        self.ensure_schema().await?;
        let (batch, entries) = self.read(0, self.batch_size).await?;
        if batch.rows.is_empty() {
            return Ok(entries);
        }
        match self.clickhouse.insert_rows(&batch.rows).await {
            Ok(()) => self.ack(batch.seqs).await?,
            Err(e) if e.is_bad_data() => self.set_aside_refused(batch, &e).await?,
            Err(e) => return Err(e.into()),
        }
        Ok(entries)
    }

    /// Ships everything waiting (used at shutdown and by tests). Stops at the first error.
    pub async fn drain(&self) -> Result<usize, ShipError> {
        let mut total = 0;
        loop {
            let n = self.ship_once().await?;
            total += n;
            if n < self.batch_size as usize {
                return Ok(total);
            }
        }
    }

    /// One step of the worker: reads what fits into the open INSERT, then lets the inserter
    /// decide whether to end it, or ends it at once when `retrying` (those events have waited
    /// long enough). Returns how long to wait before the next step.
    async fn step(&self, open: &mut Open, retrying: bool) -> Result<Duration, ShipError> {
        self.ensure_schema().await?;
        let room = self.batch_size.saturating_sub(open.batch.seqs.len() as u32);
        let mut backlog = false;
        if room > 0 {
            let after = open.batch.seqs.last().copied().unwrap_or(0);
            let (read_batch, read) = self.read(after, room).await?;
            backlog = read == room as usize;
            let inserter = open.inserter.get_or_insert_with(|| {
                self.clickhouse.event_inserter(
                    self.batch_size as u64,
                    MAX_INSERT_BYTES,
                    self.interval,
                )
            });
            for (seq, row) in read_batch.seqs.into_iter().zip(read_batch.rows) {
                if let Err(e) = inserter.write(&row).await {
                    let e = AnalyticsError::from(e);
                    *open = Open::default();
                    if e.is_bad_data() {
                        // Only serializing this row can fail before the INSERT ends.
                        self.store
                            .outbox_dead_letter(vec![(seq, e.to_string())])
                            .await?;
                        return Ok(Duration::ZERO);
                    }
                    return Err(e.into());
                }
                open.batch.push(seq, row);
            }
        }
        let Some(inserter) = open.inserter.as_mut() else {
            return Ok(self.interval);
        };
        let ended = if retrying && !open.batch.seqs.is_empty() {
            inserter.force_commit().await
        } else {
            inserter.commit().await
        };
        match ended {
            Ok(q) if q.rows > 0 => {
                let batch = std::mem::take(&mut open.batch);
                self.ack(batch.seqs).await?;
            }
            Ok(_) => {}
            Err(e) => {
                let e = AnalyticsError::from(e);
                let batch = std::mem::take(&mut open.batch);
                *open = Open::default();
                if !e.is_bad_data() {
                    return Err(e.into());
                }
                self.set_aside_refused(batch, &e).await?;
                return Ok(Duration::ZERO);
            }
        }
        if backlog && open.batch.seqs.is_empty() {
            return Ok(Duration::ZERO);
        }
        // The inserter's clock says when the period ends; at least a little pause so an
        // idle worker never spins.
        let wait = inserter.time_left().unwrap_or(self.interval);
        Ok(wait.clamp(
            Duration::from_millis(5),
            self.interval.max(Duration::from_millis(5)),
        ))
    }

    /// Runs until `shutdown` turns true, then ends the open INSERT and makes one last attempt
    /// to drain the outbox.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut open = Open::default();
        let mut failures: u32 = 0;
        loop {
            let wait = match self.step(&mut open, failures > 0).await {
                Ok(wait) => {
                    // Buffered rows prove nothing about ClickHouse: only once nothing waits
                    // in the inserter has it taken everything (or had nothing to take).
                    if open.batch.seqs.is_empty() {
                        failures = 0;
                    }
                    wait
                }
                Err(e) => {
                    // The crate never retries and a failed inserter must not be reused: start
                    // over from the outbox, where every unconfirmed event still is.
                    open = Open::default();
                    self.failed(&e);
                    failures = failures.saturating_add(1);
                    let backoff = backoff(failures);
                    let backlog = self.store.outbox_len().await.unwrap_or(0);
                    tracing::warn!(error = %e, backlog, retry_in_ms = backoff.as_millis() as u64,
                        "shipping events to ClickHouse failed; they wait in the outbox");
                    backoff
                }
            };
            if wait.is_zero() {
                if *shutdown.borrow() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.kick.notified(), if failures == 0 => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Some(inserter) = open.inserter.take() {
            match inserter.end().await {
                Ok(_) => {
                    if let Err(e) = self.ack(std::mem::take(&mut open.batch.seqs)).await {
                        tracing::warn!(error = %e, "could not acknowledge the last shipment; it ships again next start");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "final INSERT failed; its events stay in the outbox")
                }
            }
        }
        if let Err(e) = self.drain().await {
            tracing::warn!(error = %e, "final event shipment failed; events stay in the outbox for next start");
        }
    }
}

/// Finds the rows ClickHouse refuses in a batch it refused as a whole with `error`: splits it
/// in halves, inserts each half (those ClickHouse takes are in), and splits again what it
/// refuses as bad data until each refused row stands alone. Returns the refused rows' indexes,
/// ascending, with the error each got. A failure that is not about the data ends the search
/// with that error. One bad row in n costs about 2·log2(n) INSERTs.
async fn isolate_refused<'a, T, F>(
    rows: &'a [T],
    error: String,
    mut insert: F,
) -> Result<Vec<(usize, String)>, AnalyticsError>
where
    // A boxed future: with a plain generic one the worker's future stops being provably
    // `Send` (rustc's higher-ranked lifetime limitation with closures returning futures).
    F: FnMut(&'a [T]) -> BoxFuture<'a, Result<(), AnalyticsError>>,
{
    let mut refused = Vec::new();
    // Ranges still to try, the next one last; a known error means "already refused".
    let mut todo = vec![(0, rows.len(), Some(error))];
    while let Some((lo, hi, known)) = todo.pop() {
        let error = match known {
            Some(e) => e,
            None => match insert(&rows[lo..hi]).await {
                Ok(()) => continue,
                Err(e) if e.is_bad_data() => e.to_string(),
                Err(e) => return Err(e),
            },
        };
        if hi - lo <= 1 {
            if hi > lo {
                refused.push((lo, error));
            }
            continue;
        }
        let mid = lo + (hi - lo) / 2;
        todo.push((mid, hi, None));
        todo.push((lo, mid, None));
    }
    Ok(refused)
}

/// 0.5 s doubling to a 30 s cap, each wait drawn from its upper half ("equal jitter"): it
/// keeps growing while ClickHouse stays down, and gateways that failed together do not retry
/// together.
fn backoff(failures: u32) -> Duration {
    let cap = (500u64 << failures.saturating_sub(1).min(6)).min(30_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(text: &str) -> AnalyticsError {
        AnalyticsError::ClickHouse(::clickhouse::error::Error::BadResponse(text.to_owned()))
    }

    const PARSE_ERROR: &str = "Code: 27, e.displayText() = DB::Exception: Cannot parse input";

    /// A pretend ClickHouse that refuses any INSERT holding a negative number.
    async fn isolate(rows: &[i32], calls: &std::cell::Cell<u32>) -> Vec<usize> {
        isolate_refused(rows, PARSE_ERROR.into(), |part| {
            calls.set(calls.get() + 1);
            let bad = part.iter().any(|v| *v < 0);
            Box::pin(async move {
                if bad {
                    Err(refuse(PARSE_ERROR))
                } else {
                    Ok(())
                }
            })
        })
        .await
        .unwrap()
        .into_iter()
        .map(|(i, e)| {
            assert!(e.contains("Cannot parse input"));
            i
        })
        .collect()
    }

    #[tokio::test]
    async fn bisection_finds_every_refused_row_and_inserts_the_rest() {
        let calls = std::cell::Cell::new(0);
        let rows: Vec<i32> = (0..1000)
            .map(|i| if i == 17 || i == 998 { -1 } else { i })
            .collect();
        assert_eq!(isolate(&rows, &calls).await, vec![17, 998]);
        assert!(
            calls.get() <= 4 * 10,
            "about 2·log2(n) INSERTs per bad row, not n: {}",
            calls.get()
        );

        assert_eq!(isolate(&[-1], &calls).await, vec![0]);
        assert_eq!(isolate(&[-1, -2, -3], &calls).await, vec![0, 1, 2]);
        assert_eq!(isolate(&[], &calls).await, Vec::<usize>::new());
    }

    #[tokio::test]
    async fn bisection_stops_at_an_outage_instead_of_dead_lettering_good_rows() {
        let result = isolate_refused(&[1, -1, 3, 4], PARSE_ERROR.into(), |_| {
            Box::pin(async {
                Err(AnalyticsError::ClickHouse(
                    ::clickhouse::error::Error::TimedOut,
                ))
            })
        })
        .await;
        assert!(matches!(result, Err(e) if !e.is_bad_data()));
    }

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
            let third = backoff(3);
            assert!(third >= Duration::from_millis(1000) && third <= Duration::from_millis(2000));
            let late = backoff(50);
            assert!(late >= Duration::from_secs(15) && late <= Duration::from_secs(30));
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| backoff(6)).collect();
        assert!(draws.len() > 1, "jittered");
    }
}

//! Ships handoff events from the store's outbox to ClickHouse.
//!
//! At least once: an event leaves the outbox only after ClickHouse confirmed the INSERT that
//! carried it, so a crash or an outage in between ships it again, and the table's
//! deduplication on the event id (reports read it with `FINAL`) keeps every figure exact.
//!
//! The worker is a pipeline of three stages that overlap, so that ClickHouse is kept busy
//! while the gateway reads and trims its outbox:
//!
//! - it reads the outbox in chunks of [`READ_CHUNK`] from a cursor (the last position it
//!   sent), the next chunk while the last one is written, and streams the rows into an open
//!   INSERT, which ClickHouse parses as they come;
//! - it ends that INSERT once it holds `batch_size` rows or [`MAX_INSERT_BYTES`], or at the
//!   next tick of `interval`, and opens the next one while ClickHouse finishes the last (one
//!   INSERT finishing at a time, so they are confirmed in order);
//! - a background task deletes confirmed events from the outbox, in order, several
//!   shipments at once when they queue up or while more are coming (see `ACK_HOLD`).
//!
//! After any error the worker aborts what is in flight (a failed INSERT must not be used
//! again), backs off with jitter and starts over from the start of the outbox, where every
//! unconfirmed event still is. A failed acknowledgement does the same: the events it did not
//! delete ship again, which the deduplication makes harmless.
//!
//! A batch ClickHouse refuses as bad data (see [`AnalyticsError::is_bad_data`]) would fail
//! forever and block every event behind it: the worker splits it in halves until each refused
//! event stands alone, ships the rest, and moves the refused ones, with ClickHouse's error, to
//! the store's dead letters. Outbox rows whose payload no longer parses go there too.

use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::clickhouse::insert::Insert;
use rand::Rng;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::clickhouse::EventRow;
use super::{AnalyticsError, ClickHouse};
use crate::store::{OutboxEntry, SharedStore, StoreError};

/// The most uncompressed bytes one INSERT carries, whatever `batch_size` says. Events are
/// about 250 bytes each on the wire, so the default 100,000 take ~25 MB; this binds only for
/// long details or huge batch sizes, and bounds the block ClickHouse holds in memory.
pub const MAX_INSERT_BYTES: u64 = 64 * 1024 * 1024;

/// The most outbox rows one read takes. Reading costs little per row from a few thousand
/// rows on, and a chunk that is small next to an INSERT lets ClickHouse parse the first rows
/// while the next ones are read.
pub const READ_CHUNK: u32 = 5_000;

/// Why a shipment did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// Reading or trimming the outbox failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// ClickHouse refused or could not be reached.
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    /// The task ending an INSERT panicked or was cancelled; whether ClickHouse took the rows
    /// is unknown, so they ship again.
    #[error("the task ending an INSERT failed: {0}")]
    Task(#[from] JoinError),
    /// A step took longer than [`STEP_DEADLINE`]: a connection that swallows requests without
    /// answering (a hung proxy, a half-dead server) must not hold the shipper forever.
    #[error("a shipping step made no progress for {0:?}")]
    Stalled(Duration),
}

/// The longest one worker step may take, reads, INSERTs and schema checks included. The
/// crate's own send and end timeouts bound the usual cases; this bounds everything else.
pub const STEP_DEADLINE: Duration = Duration::from_secs(45);

/// The longest ClickHouse may take to answer an INSERT once its rows are sent.
pub const INSERT_DEADLINE: Duration = Duration::from_secs(40);

/// Ends an INSERT within [`INSERT_DEADLINE`], whatever the connection does.
async fn end_within_deadline<T>(
    insert: impl std::future::Future<Output = Result<T, ::clickhouse::error::Error>>,
) -> Result<T, ::clickhouse::error::Error> {
    tokio::time::timeout(INSERT_DEADLINE, insert)
        .await
        .unwrap_or(Err(::clickhouse::error::Error::TimedOut))
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
    inserts: AtomicU64,
    insert_micros: AtomicU64,
    last_insert_micros: AtomicU64,
}

impl ShipStats {
    /// Events ClickHouse confirmed and the outbox let go (a re-shipped event counts again).
    pub fn shipped(&self) -> u64 {
        self.shipped.load(Ordering::Relaxed)
    }

    /// Shipments that failed and wait for a retry.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// INSERTs ClickHouse confirmed, and the seconds it took in all from the end of their rows
    /// to its answer: the ship latency's sum and count (a Prometheus summary).
    pub fn inserts(&self) -> (u64, f64) {
        (
            self.inserts.load(Ordering::Relaxed),
            self.insert_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// How long ClickHouse took to confirm the latest INSERT, in seconds.
    pub fn last_insert_seconds(&self) -> f64 {
        self.last_insert_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn add_shipped(&self, n: usize) {
        self.shipped.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn record_insert(&self, took: Duration) {
        let micros = took.as_micros().min(u64::MAX as u128) as u64;
        self.inserts.fetch_add(1, Ordering::Relaxed);
        self.insert_micros.fetch_add(micros, Ordering::Relaxed);
        self.last_insert_micros.store(micros, Ordering::Relaxed);
    }
}

/// Ends an INSERT within the deadline and records how long ClickHouse took to confirm it.
async fn end_timed<T>(
    stats: Arc<ShipStats>,
    end: impl std::future::Future<Output = Result<T, ::clickhouse::error::Error>>,
) -> Result<T, ::clickhouse::error::Error> {
    let started = Instant::now();
    let result = end_within_deadline(end).await;
    if result.is_ok() {
        stats.record_insert(started.elapsed());
    }
    result
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

/// What one read of the outbox found.
struct Read {
    /// The rows that decode.
    batch: Batch,
    /// How many outbox rows were read, those that went to the dead letters included.
    rows: usize,
    /// The last position read: the next read starts after it.
    last: Option<i64>,
}

/// The INSERT the worker is writing rows into.
struct Open {
    insert: Insert<EventRow>,
    /// The outbox positions of the rows written, ascending.
    seqs: Vec<i64>,
    /// About how many bytes the rows take on the wire, uncompressed.
    bytes: u64,
}

/// An INSERT that was ended, while ClickHouse writes it.
struct Ending {
    /// The outbox positions of its rows, ascending.
    seqs: Vec<i64>,
    /// Ends the INSERT: a task, so that ClickHouse's work overlaps the worker's next reads.
    task: JoinHandle<Result<(), ::clickhouse::error::Error>>,
    /// The task's outcome, when `run` saw it finish while waiting for something else.
    outcome: Option<Result<Result<(), ::clickhouse::error::Error>, JoinError>>,
}

impl Ending {
    fn finished(&self) -> bool {
        self.outcome.is_some() || self.task.is_finished()
    }

    /// ClickHouse's answer, waiting for it if need be.
    async fn answer(&mut self) -> Result<(), ShipError> {
        let outcome = match self.outcome.take() {
            Some(outcome) => outcome,
            None => (&mut self.task).await,
        };
        Ok(outcome??)
    }
}

/// The worker's shipments in flight and where it reads next.
struct Flight {
    /// The last outbox position written into an INSERT; 0 reads from the start.
    cursor: i64,
    open: Option<Open>,
    ending: Option<Ending>,
    /// The next chunk of the outbox, being read while the last one is written.
    next: Option<JoinHandle<Result<Read, ShipError>>>,
    /// When the open INSERT ends at the latest (rows wait at most about one `interval`).
    tick: Instant,
    /// Set when ClickHouse confirmed an INSERT since the worker last looked: it is up.
    confirmed: bool,
}

impl Flight {
    /// Nothing in flight yet; the first INSERT ends at `tick` at the latest, like any other
    /// (a backlog waiting at start-up goes in full INSERTs, not a first one of one chunk).
    fn new(tick: Instant) -> Self {
        Self {
            cursor: 0,
            open: None,
            ending: None,
            next: None,
            tick,
            confirmed: false,
        }
    }

    /// Whether every row read has been confirmed (or nothing was read).
    fn idle(&self) -> bool {
        self.open.is_none() && self.ending.is_none()
    }

    /// Drops whatever is in flight (dropping an unfinished INSERT aborts it) and reads from
    /// the start of the outbox next: every event not yet confirmed is still there.
    fn abandon(&mut self) {
        self.open = None;
        if let Some(ending) = self.ending.take() {
            ending.task.abort();
        }
        self.drop_prefetch();
        self.cursor = 0;
    }

    /// Forgets the chunk being read ahead: it starts after a cursor that is no longer right.
    fn drop_prefetch(&mut self) {
        if let Some(next) = self.next.take() {
            next.abort();
        }
    }

    /// Waits until the INSERT ClickHouse is finishing has an answer; forever if there is
    /// none. Cancel-safe: the answer stays in the task until it is taken.
    async fn answered(&mut self) {
        match &mut self.ending {
            Some(ending) if ending.outcome.is_none() => {
                ending.outcome = Some((&mut ending.task).await);
            }
            _ => std::future::pending().await,
        }
    }
}

/// How long confirmed events may wait to be deleted while the worker says more are coming.
/// The store empties an outbox whose events are all confirmed far more cheaply than it takes
/// the same events out in steps (see `Store::outbox_ack`), so a backlog that drains within
/// this time is trimmed in one go; a longer one is trimmed at this pace. The wait costs
/// nothing but a little re-shipping after a crash (deduplicated).
const ACK_HOLD: Duration = Duration::from_secs(5);

/// Work for the acknowledging task.
enum AckJob {
    /// Delete these positions: ClickHouse confirmed them. `more`: the worker has further
    /// events on their way (an INSERT open or a backlog), which may join this DELETE.
    Ack { seqs: Vec<i64>, more: bool },
    /// Say when everything queued before is done.
    Flush(oneshot::Sender<()>),
}

/// Acknowledgements gathered for one DELETE.
#[derive(Default)]
struct AckBatch {
    seqs: Vec<i64>,
    /// What the latest acknowledgement said about more coming.
    more: bool,
    flushes: Vec<oneshot::Sender<()>>,
}

impl AckBatch {
    fn take(&mut self, job: AckJob) {
        match job {
            AckJob::Ack { mut seqs, more } => {
                self.seqs.append(&mut seqs);
                self.more = more;
            }
            AckJob::Flush(done) => self.flushes.push(done),
        }
    }

    /// Whether to wait for more before deleting.
    fn hold(&self) -> bool {
        self.more && self.flushes.is_empty()
    }
}

/// Deletes confirmed events from the outbox in the background, in the order they were
/// confirmed. Acknowledgements that queue up while a DELETE runs, or that come while the
/// worker says more are coming (up to [`ACK_HOLD`]), go together in the next one.
struct Acker {
    queue: mpsc::Sender<AckJob>,
    /// The last acknowledgement that failed, for the worker to start over.
    failed: Arc<Mutex<Option<StoreError>>>,
    task: JoinHandle<()>,
}

impl Acker {
    fn start(store: SharedStore, stats: Arc<ShipStats>) -> Self {
        // A few shipments may wait; beyond that the worker waits too, rather than pile up
        // confirmed events faster than the store forgets them.
        let (queue, mut jobs) = mpsc::channel::<AckJob>(4);
        let failed = Arc::new(Mutex::new(None));
        let task = tokio::spawn({
            let failed = failed.clone();
            async move {
                while let Some(first) = jobs.recv().await {
                    let mut batch = AckBatch::default();
                    batch.take(first);
                    let hold_until = Instant::now() + ACK_HOLD;
                    loop {
                        while let Ok(job) = jobs.try_recv() {
                            batch.take(job);
                        }
                        if !batch.hold() {
                            break;
                        }
                        match tokio::time::timeout_at(hold_until, jobs.recv()).await {
                            Ok(Some(job)) => batch.take(job),
                            // Stopping, or held long enough.
                            Ok(None) | Err(_) => break,
                        }
                    }
                    let n = batch.seqs.len();
                    if n > 0 {
                        match store.outbox_ack(batch.seqs).await {
                            Ok(()) => stats.add_shipped(n),
                            Err(e) => {
                                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            }
                        }
                    }
                    for done in batch.flushes {
                        let _ = done.send(());
                    }
                }
            }
        });
        Self {
            queue,
            failed,
            task,
        }
    }

    /// Queues confirmed events; `more`: further ones are on their way.
    async fn ack(&self, seqs: Vec<i64>, more: bool) {
        // The task only ends once the queue is dropped, in `stop`.
        let _ = self.queue.send(AckJob::Ack { seqs, more }).await;
    }

    /// Waits until every acknowledgement queued so far is done (or failed).
    async fn flush(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(AckJob::Flush(done)).await.is_ok() {
            let _ = finished.await;
        }
    }

    /// The error of an acknowledgement that failed since the last call.
    fn take_failure(&self) -> Option<StoreError> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Finishes the queued acknowledgements and stops.
    async fn stop(self) {
        drop(self.queue);
        let _ = self.task.await;
    }
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
            // Bounded: at shutdown this runs outside the worker's step deadline.
            tokio::time::timeout(INSERT_DEADLINE, self.clickhouse.migrate())
                .await
                .map_err(|_| ShipError::Stalled(INSERT_DEADLINE))??;
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
    /// dead letters.
    async fn read(&self, after: i64, limit: u32) -> Result<Read, ShipError> {
        let entries = self.store.outbox_batch(after, limit).await?;
        let rows = entries.len();
        let last = entries.last().map(|e| e.seq);
        let mut batch = Batch::default();
        let mut broken = Vec::new();
        for OutboxEntry { seq, event } in entries {
            match event {
                Ok(e) => batch.push(seq, EventRow::from_owned(seq, e)),
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
        Ok(Read { batch, rows, last })
    }

    /// Reads again the events at `seqs` (ascending), for a shipment whose rows the worker
    /// did not keep. Positions no longer in the outbox are left out.
    async fn reread(&self, seqs: &[i64]) -> Result<Batch, ShipError> {
        let mut batch = Batch::default();
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(batch);
        };
        let mut after = first - 1;
        while after < last {
            let read = self.read(after, READ_CHUNK).await?;
            for (seq, row) in read.batch.seqs.into_iter().zip(read.batch.rows) {
                if seq <= last && seqs.binary_search(&seq).is_ok() {
                    batch.push(seq, row);
                }
            }
            match read.last {
                Some(seq) if read.rows == READ_CHUNK as usize => after = seq,
                _ => break,
            }
        }
        Ok(batch)
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
        let read = self.read(0, self.batch_size).await?;
        let batch = read.batch;
        if batch.rows.is_empty() {
            return Ok(read.rows);
        }
        match self.clickhouse.insert_rows(&batch.rows).await {
            Ok(()) => self.ack(batch.seqs).await?,
            Err(e) if e.is_bad_data() => self.set_aside_refused(batch, &e).await?,
            Err(e) => return Err(e.into()),
        }
        Ok(read.rows)
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

    /// The next time an open INSERT must end: one `interval` on, give or take a tenth, so
    /// that gateways sharing a ClickHouse do not insert in lockstep.
    fn next_tick(&self) -> Instant {
        Instant::now() + self.interval.mul_f64(rand::rng().random_range(0.9..=1.1))
    }

    /// Takes ClickHouse's answer for the INSERT it was finishing, waiting for it if need be:
    /// confirmed events go to the acknowledging task; a batch refused as bad data is read
    /// again and bisected.
    async fn settle(&self, flight: &mut Flight, acker: &Acker) -> Result<(), ShipError> {
        let Some(mut ending) = flight.ending.take() else {
            return Ok(());
        };
        match ending.answer().await {
            Ok(()) => {
                flight.confirmed = true;
                let more = flight.open.is_some() || flight.next.is_some();
                acker.ack(ending.seqs, more).await;
                Ok(())
            }
            Err(ShipError::Analytics(e)) if e.is_bad_data() => {
                let batch = self.reread(&ending.seqs).await?;
                self.set_aside_refused(batch, &e).await
            }
            Err(e) => Err(e),
        }
    }

    /// Ends the open INSERT; ClickHouse finishes it in a task while the worker goes on. Takes
    /// the answer for the one before first: one finishing at a time keeps the answers, and so
    /// the acknowledgements, in order.
    async fn end_open(&self, flight: &mut Flight, acker: &Acker) -> Result<(), ShipError> {
        self.settle(flight, acker).await?;
        if let Some(Open { insert, seqs, .. }) = flight.open.take() {
            flight.ending = Some(Ending {
                seqs,
                task: tokio::spawn(end_timed(self.stats.clone(), insert.end())),
                outcome: None,
            });
        }
        flight.tick = self.next_tick();
        Ok(())
    }

    /// One step of the worker: takes ClickHouse's answer for the INSERT it was finishing if
    /// it has come, writes the next chunk of the outbox into the open INSERT (ending it each
    /// time it is full), and ends that INSERT when its tick has come, or once the outbox has
    /// no more for it, or at once when `retrying` (those events have waited long enough).
    /// Returns how long to wait before the next step.
    async fn step(
        &self,
        flight: &mut Flight,
        acker: &Acker,
        retrying: bool,
    ) -> Result<Duration, ShipError> {
        if let Some(e) = acker.take_failure() {
            // The events it did not delete are behind the cursor: read them again.
            return Err(e.into());
        }
        self.ensure_schema().await?;
        if flight.ending.as_ref().is_some_and(Ending::finished) {
            self.settle(flight, acker).await?;
        }

        let read = match flight.next.take() {
            Some(prefetched) => prefetched.await??,
            None => self.read(flight.cursor, READ_CHUNK).await?,
        };
        let backlog = read.rows == READ_CHUNK as usize;
        flight.cursor = read.last.unwrap_or(flight.cursor);
        if backlog {
            // Read (and decode) the next chunk while this one is written: SQLite, serde and
            // ClickHouse then work side by side.
            let (shipper, after) = (self.clone(), flight.cursor);
            flight.next = Some(tokio::spawn(async move {
                shipper.read(after, READ_CHUNK).await
            }));
        }
        for (seq, row) in read.batch.seqs.into_iter().zip(read.batch.rows) {
            let open = match &mut flight.open {
                Some(open) => open,
                None => flight.open.insert(Open {
                    insert: self.clickhouse.event_insert().await?,
                    seqs: Vec::new(),
                    bytes: 0,
                }),
            };
            if let Err(e) = open.insert.write(&row).await {
                let e = AnalyticsError::from(e);
                // The crate aborted the INSERT: read its rows again, from its first one (or
                // from this one), and the rows after them.
                flight.cursor = open.seqs.first().unwrap_or(&seq) - 1;
                flight.open = None;
                flight.drop_prefetch();
                if e.is_bad_data() {
                    // Only serializing this row can fail before the INSERT ends.
                    self.store
                        .outbox_dead_letter(vec![(seq, e.to_string())])
                        .await?;
                    return Ok(Duration::ZERO);
                }
                return Err(e.into());
            }
            open.seqs.push(seq);
            open.bytes += row.wire_bytes();
            if open.seqs.len() >= self.batch_size as usize || open.bytes >= MAX_INSERT_BYTES {
                self.end_open(flight, acker).await?;
            }
        }

        let now = Instant::now();
        if let Some(open) = &flight.open {
            // The tick is there to gather a trickle of events into few INSERTs; one that
            // already holds a whole chunk is worth its cost to ClickHouse, and once the
            // outbox has nothing to add, waiting would only delay it (the end of a backlog).
            let big_enough = !backlog && open.seqs.len() >= READ_CHUNK as usize;
            if big_enough || now >= flight.tick || retrying {
                self.end_open(flight, acker).await?;
            }
        } else if now >= flight.tick {
            flight.tick = self.next_tick();
        }
        if backlog {
            return Ok(Duration::ZERO);
        }
        // At least a little pause so an idle worker never spins.
        Ok(flight.tick.saturating_duration_since(now).clamp(
            Duration::from_millis(5),
            self.interval.max(Duration::from_millis(5)),
        ))
    }

    /// Lands what is in flight at shutdown: ends the open INSERT and acknowledges what
    /// ClickHouse confirms. Whatever fails stays in the outbox.
    async fn land(&self, flight: &mut Flight, acker: &Acker) -> Result<(), ShipError> {
        flight.drop_prefetch();
        self.settle(flight, acker).await?;
        if let Some(Open { insert, seqs, .. }) = flight.open.take() {
            end_timed(self.stats.clone(), insert.end()).await?;
            acker.ack(seqs, false).await;
        }
        Ok(())
    }

    /// Runs until `shutdown` turns true, then ends what is in flight and makes one last
    /// attempt to drain the outbox.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let acker = Acker::start(self.store.clone(), self.stats.clone());
        let mut flight = Flight::new(self.next_tick());
        let mut failures: u32 = 0;
        loop {
            let step =
                tokio::time::timeout(STEP_DEADLINE, self.step(&mut flight, &acker, failures > 0))
                    .await
                    .unwrap_or(Err(ShipError::Stalled(STEP_DEADLINE)));
            let wait = match step {
                Ok(wait) => {
                    // Rows in flight prove nothing about ClickHouse: only an INSERT it
                    // confirmed does, or having nothing to send.
                    if std::mem::take(&mut flight.confirmed) || flight.idle() {
                        failures = 0;
                    }
                    wait
                }
                Err(e) => {
                    // The crate never retries and a failed INSERT must not be reused: start
                    // over from the outbox, where every unconfirmed event still is, once the
                    // confirmed ones are deleted (so they do not ship twice).
                    flight.abandon();
                    acker.flush().await;
                    // Reading from the start covers whatever those acknowledgements missed.
                    let _ = acker.take_failure();
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
                // ClickHouse answered: acknowledge now rather than at the next tick.
                _ = flight.answered() => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Err(e) = self.land(&mut flight, &acker).await {
            flight.abandon();
            tracing::warn!(error = %e, "final INSERT failed; its events stay in the outbox");
        }
        acker.stop().await;
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

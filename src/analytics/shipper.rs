//! Ships handoff events from the store's outbox to ClickHouse.
//!
//! At least once: a batch is deleted from the outbox only after ClickHouse accepted it, so a
//! crash or an outage in between ships it again, and the table's deduplication on the event
//! id keeps every report exact. While ClickHouse is down, events wait in the outbox and the
//! shipper backs off with jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, watch};

use super::{AnalyticsError, ClickHouse};
use crate::store::{SharedStore, StoreError};

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

/// The event shipper. Cheap to clone.
#[derive(Clone)]
pub struct Shipper {
    store: SharedStore,
    clickhouse: ClickHouse,
    batch_size: u32,
    interval: Duration,
    schema_ready: Arc<AtomicBool>,
    kick: Arc<Notify>,
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
        }
    }

    /// Asks the worker to ship now rather than at the next tick.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// One step: ships one batch. Returns how many events were shipped.
    pub async fn ship_once(&self) -> Result<usize, ShipError> {
        if !self.schema_ready.load(Ordering::Acquire) {
            self.clickhouse.migrate().await?;
            self.schema_ready.store(true, Ordering::Release);
        }
        let batch = self.store.outbox_batch(self.batch_size).await?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            return Ok(0);
        };
        let rows: Vec<_> = batch.into_iter().map(|e| (e.seq, e.event)).collect();
        self.clickhouse.insert_events(&rows).await?;
        self.store.outbox_ack(last).await?;
        Ok(rows.len())
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

    /// Runs until `shutdown` turns true, then makes one last attempt to drain the outbox.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            let wait = match self.ship_once().await {
                Ok(n) if n == self.batch_size as usize => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    self.interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let backoff = backoff(failures);
                    let backlog = self.store.outbox_len().await.unwrap_or(0);
                    tracing::warn!(error = %e, backlog, retry_in_ms = backoff.as_millis() as u64,
                        "shipping events to ClickHouse failed; they wait in the outbox");
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.kick.notified(), if failures == 0 => {}
                _ = shutdown.changed() => {
                    if let Err(e) = self.drain().await {
                        tracing::warn!(error = %e, "final event shipment failed; events stay in the outbox for next start");
                    }
                    return;
                }
            }
        }
    }
}

/// 0.5 s doubling to a 30 s cap, with jitter so several gateways do not retry together.
fn backoff(failures: u32) -> Duration {
    let cap = (500u64 << failures.min(6)).min(30_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

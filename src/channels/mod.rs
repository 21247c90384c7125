//! Channels: one connector per channel behind the [`Connector`] trait, and the [`Dispatcher`]
//! that delivers stored outbound messages through them, retrying with backoff.
//!
//! Outbound messages are stored first (status `pending`) and delivered afterwards, so a reply
//! is never lost when a channel is down: it waits in the store and is retried.

pub mod api;
pub mod email;
pub mod meta;
pub mod platform;
pub mod signature;
pub mod telegram;
pub mod twilio;
pub mod webchat;
pub mod webhook;
pub mod whatsapp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use tokio::sync::{Notify, watch};

use crate::model::{ChannelKind, Timestamp};
use crate::store::{Delivery, DeliveryOutcome, SharedStore, StoreError};

/// Why a send failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A timeout, a 5xx, a 429, a dropped connection: try again later.
    #[error("temporary failure: {0}")]
    Retryable(String),
    /// The platform asked us to wait (HTTP 429 with `Retry-After`, Telegram's `retry_after`):
    /// the next attempt comes no sooner than that, whatever the backoff says.
    #[error("rate limited: {why}")]
    Throttled {
        /// What the platform said.
        why: String,
        /// How long it asked us to wait.
        retry_after: Duration,
    },
    /// The channel refused the message for good (bad recipient, window closed, 4xx).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl From<StoreError> for SendError {
    /// A store failure while preparing a send: missing or broken data is permanent (retrying
    /// cannot fix it), an unavailable database is worth retrying.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::Conflict(_) | StoreError::Corrupt(_) => {
                SendError::Permanent(e.to_string())
            }
            other => SendError::Retryable(other.to_string()),
        }
    }
}

/// Sends messages out through one channel.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The channel this connector serves.
    fn kind(&self) -> ChannelKind;

    /// Sends one stored outbound message to the customer. Returns the platform's id for the
    /// sent message, when it gives one, so its delivery receipts can find it.
    async fn send(&self, delivery: &Delivery) -> Result<Option<String>, SendError>;
}

/// The connectors available, by channel.
#[derive(Clone, Default)]
pub struct Channels {
    connectors: HashMap<ChannelKind, Arc<dyn Connector>>,
}

impl Channels {
    /// Adds (or replaces) the connector for its channel.
    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.connectors.insert(connector.kind(), connector);
    }

    /// The connector for a channel, if one is configured.
    pub fn get(&self, kind: ChannelKind) -> Option<&Arc<dyn Connector>> {
        self.connectors.get(&kind)
    }
}

/// Attempts before a message is marked failed (about a day with the backoff below).
pub const MAX_DELIVERY_ATTEMPTS: u32 = 16;

/// Delivers pending outbound messages. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    store: SharedStore,
    channels: Channels,
    kick: Arc<Notify>,
    counters: Arc<crate::telemetry::ChannelCounters>,
}

impl Dispatcher {
    /// A dispatcher over a store and its connectors.
    pub fn new(
        store: SharedStore,
        channels: Channels,
        counters: Arc<crate::telemetry::ChannelCounters>,
    ) -> Self {
        Self {
            store,
            channels,
            kick: Arc::new(Notify::new()),
            counters,
        }
    }

    /// The per-channel counters this dispatcher (and the ingest pipeline) keep.
    pub fn counters(&self) -> &crate::telemetry::ChannelCounters {
        &self.counters
    }

    /// Asks the worker to look for due messages now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// One step: tries every message that is due. Returns how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let due = self.store.due_deliveries(Timestamp::now(), 200).await?;
        let mut outcomes = Vec::with_capacity(due.len());
        for delivery in &due {
            let outcome = self.attempt(delivery).await;
            match &outcome {
                DeliveryOutcome::Sent(_) => self.counters.sent(delivery.channel),
                _ => self.counters.send_failed(delivery.channel),
            }
            if let DeliveryOutcome::Failed(why) = &outcome {
                tracing::error!(message_id = %delivery.message.id, channel = %delivery.channel, error = %why,
                    "delivery failed permanently");
            }
            outcomes.push((delivery.message.id, outcome));
        }
        self.store.record_deliveries(outcomes).await?;
        Ok(due.len())
    }

    async fn attempt(&self, delivery: &Delivery) -> DeliveryOutcome {
        let Some(connector) = self.channels.get(delivery.channel) else {
            return DeliveryOutcome::Failed(format!(
                "no connector configured for {}",
                delivery.channel
            ));
        };
        let outcome = delivery_outcome(
            delivery.attempts,
            connector.send(delivery).await,
            Timestamp::now(),
        );
        if let DeliveryOutcome::RetryAt(at, why) = &outcome {
            tracing::warn!(message_id = %delivery.message.id, channel = %delivery.channel,
                attempt = delivery.attempts + 1, retry_at_ms = at.as_millis(), error = %why,
                "delivery failed; will retry");
        }
        outcome
    }

    /// Runs until `shutdown` turns true: delivers on every kick and at least once a second
    /// (retries fall due with time, not with kicks).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.deliver_due().await {
                Ok(200) => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "delivery step failed"),
            }
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The longest a platform's `retry_after` can hold a message back per attempt; a bogus
/// answer of "wait a week" must not park a customer's reply for a week.
pub const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(60 * 60);

/// What one send attempt means for the stored message, `attempts` being the failed attempts
/// before this one.
pub fn delivery_outcome(
    attempts: u32,
    result: Result<Option<String>, SendError>,
    now: Timestamp,
) -> DeliveryOutcome {
    let (why, wait) = match result {
        Ok(external_id) => return DeliveryOutcome::Sent(external_id),
        Err(SendError::Permanent(why)) => return DeliveryOutcome::Failed(why),
        Err(SendError::Retryable(why)) => (why, retry_delay(attempts)),
        Err(SendError::Throttled { why, retry_after }) => (
            why,
            retry_delay(attempts).max(retry_after.min(MAX_THROTTLE_WAIT)),
        ),
    };
    if attempts + 1 >= MAX_DELIVERY_ATTEMPTS {
        return DeliveryOutcome::Failed(format!(
            "gave up after {MAX_DELIVERY_ATTEMPTS} attempts: {why}"
        ));
    }
    let at = now.as_millis().saturating_add(wait.as_millis() as i64);
    DeliveryOutcome::RetryAt(Timestamp::from_millis(at), why)
}

/// Exponential backoff with full jitter: up to 2^attempts seconds, capped at 30 minutes, so
/// many failing messages do not retry in lockstep.
pub fn retry_delay(attempts: u32) -> Duration {
    let cap_ms = (1_000u64 << attempts.min(11)).min(30 * 60 * 1_000);
    let ms = rand::rng().random_range(cap_ms / 2..=cap_ms);
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stay_capped() {
        assert!(retry_delay(0) <= Duration::from_secs(1));
        assert!(retry_delay(3) >= Duration::from_secs(4));
        assert!(retry_delay(40) <= Duration::from_secs(30 * 60));
    }

    fn retry_at(outcome: DeliveryOutcome) -> i64 {
        match outcome {
            DeliveryOutcome::RetryAt(at, _) => at.as_millis(),
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn a_platform_that_asks_to_wait_is_not_retried_sooner() {
        let now = Timestamp::from_millis(1_000_000);
        let throttled = SendError::Throttled {
            why: "Too Many Requests".into(),
            retry_after: Duration::from_secs(30),
        };
        let at = retry_at(delivery_outcome(0, Err(throttled), now));
        assert!(at >= 1_000_000 + 30_000, "{at}");
        // A longer backoff than the platform asked for still applies.
        let late = SendError::Throttled {
            why: "slow down".into(),
            retry_after: Duration::from_secs(1),
        };
        // After five failures the backoff is 16 to 32 s: more than the 1 s asked for.
        assert!(retry_at(delivery_outcome(5, Err(late), now)) >= 1_000_000 + 16_000);
    }

    #[test]
    fn a_retry_after_of_a_week_is_capped_at_an_hour() {
        let now = Timestamp::from_millis(0);
        let err = SendError::Throttled {
            why: "wait".into(),
            retry_after: Duration::from_secs(7 * 24 * 3600),
        };
        assert!(retry_at(delivery_outcome(0, Err(err), now)) <= 3_600_000);
    }

    #[test]
    fn throttling_counts_toward_giving_up() {
        let err = SendError::Throttled {
            why: "wait".into(),
            retry_after: Duration::from_secs(1),
        };
        let outcome = delivery_outcome(MAX_DELIVERY_ATTEMPTS - 1, Err(err), Timestamp::now());
        assert!(matches!(outcome, DeliveryOutcome::Failed(why) if why.contains("gave up")));
    }
}

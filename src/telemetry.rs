//! Structured logging with `tracing`.

use tracing_subscriber::{EnvFilter, fmt};

/// An error and all its causes, `: `-separated, for logs and error messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `format` is `text` or
/// `json`. Safe to call more than once; later calls do nothing.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Counters per channel since start, for `/metrics`: messages taken in, replies sent, send
/// attempts that failed (to be retried or for good). One per gateway instance, shared by the
/// ingest pipeline and the outbound dispatcher.
#[derive(Debug, Default)]
pub struct ChannelCounters {
    ingested: [std::sync::atomic::AtomicU64; 8],
    sent: [std::sync::atomic::AtomicU64; 8],
    send_failures: [std::sync::atomic::AtomicU64; 8],
}

impl ChannelCounters {
    fn slot(channel: crate::model::ChannelKind) -> usize {
        crate::model::ChannelKind::ALL
            .iter()
            .position(|c| *c == channel)
            .unwrap_or(0)
    }

    /// A new inbound message was stored.
    pub fn ingested(&self, channel: crate::model::ChannelKind) {
        self.ingested[Self::slot(channel)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A reply left through its channel.
    pub fn sent(&self, channel: crate::model::ChannelKind) {
        self.sent[Self::slot(channel)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A send attempt failed.
    pub fn send_failed(&self, channel: crate::model::ChannelKind) {
        self.send_failures[Self::slot(channel)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// (channel, ingested, sent, send failures) for every channel.
    pub fn snapshot(&self) -> Vec<(crate::model::ChannelKind, u64, u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        crate::model::ChannelKind::ALL
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    *c,
                    self.ingested[i].load(Relaxed),
                    self.sent[i].load(Relaxed),
                    self.send_failures[i].load(Relaxed),
                )
            })
            .collect()
    }
}

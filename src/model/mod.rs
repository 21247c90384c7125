//! The conversation model: pure types shared by every layer, with no I/O.
//!
//! Everything that crosses the edge of Baton (a webhook body, an API request, a row read back
//! from the store) is parsed into these types first, so the core never handles raw strings
//! where a domain type exists.

mod agent;
mod conversation;
mod customer;
mod email;
mod event;
mod handoff;
pub mod hours;
mod ids;
mod message;
mod user;

pub use agent::{Agent, Presence, Skill, Team, WorkCapacity};
pub use conversation::{ChannelKind, Conversation, ConversationStatus, IllegalTransition};
pub use customer::{Customer, EmailAddress, Identity, IdentityKind, PhoneNumber};
pub use email::{Automated, ReopenPolicy, ThreadMatch, ThreadSignals};
pub use event::{HandoffEvent, HandoffEventKind};
pub use handoff::{Handoff, HandoffReason, HandoffStatus, Priority};
pub use hours::BusinessHours;
pub use ids::{AgentId, ConversationId, CustomerId, HandoffId, MessageId, UserId};
pub use message::{
    Attachment, AuthorKind, DeliveryStatus, Direction, Message, MessageTemplate, MessageText,
};
pub use user::{Password, User, UserRole};

/// A value that failed to parse into a domain type, with the reason in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {why}")]
pub struct ParseError {
    /// Which kind of value was being parsed ("email address", "channel", ...).
    pub what: &'static str,
    /// Why it was rejected.
    pub why: String,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, why: impl Into<String>) -> Self {
        Self {
            what,
            why: why.into(),
        }
    }
}

/// Milliseconds since the Unix epoch, UTC: the one time representation stored and shipped.
///
/// Integer milliseconds keep ordering exact in SQLite and ClickHouse alike (ClickHouse 18.16
/// has no DateTime64), and convert to RFC 3339 only at the HTTP edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// From milliseconds since the epoch.
    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, clamped into ClickHouse's `DateTime` range.
    pub fn as_unix_seconds_u32(self) -> u32 {
        (self.0.div_euclid(1000)).clamp(0, u32::MAX as i64) as u32
    }

    /// Milliseconds elapsed from `earlier` to `self`, never negative.
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        (self.0 - earlier.0).max(0)
    }

    /// As a `time` value, for formatting.
    pub fn to_offset_datetime(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    /// RFC 3339 text, e.g. `2026-11-23T22:17:51.123Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_offset_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }

    /// Parses an RFC 3339 timestamp.
    pub fn parse_rfc3339(s: &str) -> Result<Self, ParseError> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| ParseError::new("timestamp", e.to_string()))?;
        Ok(Self((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_rfc3339_to_the_millisecond() {
        let t = Timestamp::from_millis(1_795_000_000_123);
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
    }

    #[test]
    fn elapsed_time_is_never_negative() {
        let a = Timestamp::from_millis(10);
        let b = Timestamp::from_millis(5);
        assert_eq!(b.millis_since(a), 0);
        assert_eq!(a.millis_since(b), 5);
    }
}

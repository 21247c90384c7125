//! Typed identifiers, so a conversation id can never be passed where an agent id belongs.

use std::fmt;
use std::str::FromStr;

use super::ParseError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7), so new rows append to the end of indexes.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| ParseError::new($what, "not a UUID"))
            }
        }
    };
}

id_type!(
    /// Identifies a [`Customer`](super::Customer).
    CustomerId,
    "customer id"
);
id_type!(
    /// Identifies a [`Conversation`](super::Conversation).
    ConversationId,
    "conversation id"
);
id_type!(
    /// Identifies a [`Message`](super::Message).
    MessageId,
    "message id"
);
id_type!(
    /// Identifies a [`Handoff`](super::Handoff) ticket.
    HandoffId,
    "handoff id"
);
id_type!(
    /// Identifies an [`Agent`](super::Agent).
    AgentId,
    "agent id"
);

id_type!(
    /// Identifies a [`User`](super::User): someone who signs in. An agent's user id is their
    /// agent id.
    UserId,
    "user id"
);

impl From<AgentId> for UserId {
    fn from(agent: AgentId) -> Self {
        Self(agent.as_uuid())
    }
}

impl From<UserId> for AgentId {
    fn from(user: UserId) -> Self {
        Self(user.as_uuid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_back_from_their_display_form() {
        let id = ConversationId::new();
        assert_eq!(id.to_string().parse::<ConversationId>().unwrap(), id);
    }

    #[test]
    fn garbage_is_not_an_id() {
        assert!("../../etc/passwd".parse::<AgentId>().is_err());
    }
}

//! Agents: the people who take handoffs.

use super::customer::EmailAddress;
use super::message::str_enum;
use super::{AgentId, ParseError, Timestamp};
use std::fmt;
use std::str::FromStr;

/// Whether an agent can take new tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Takes new tickets.
    Online,
    /// Keeps their tickets, takes no new ones.
    Away,
    /// Not working.
    Offline,
}

str_enum!(Presence, "presence", {
    Presence::Online => "online",
    Presence::Away => "away",
    Presence::Offline => "offline",
});

macro_rules! tag_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses and lower-cases a tag: 1 to 64 of a-z, 0-9 and `-_:.`.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                let s = s.trim().to_ascii_lowercase();
                if s.is_empty() || s.len() > 64 {
                    return Err(ParseError::new($what, "must be 1 to 64 characters"));
                }
                if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')) {
                    return Err(ParseError::new($what, "may contain only a-z, 0-9 and - _ : ."));
                }
                Ok(Self(s))
            }

            /// The tag.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

tag_type!(
    /// A skill tag such as `billing` or `lang:es`.
    Skill,
    "skill"
);
tag_type!(
    /// A team an agent belongs to, such as `support-tier-1`.
    Team,
    "team"
);

/// How much of each kind of work an agent takes at once: a few live chats, more messaging
/// threads (customers answer slowly), many emails. A kind left out is limited only by the
/// agent's overall `max_concurrent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkCapacity {
    /// Live chats (web chat, API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<u32>,
    /// Messaging apps and SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging: Option<u32>,
    /// Email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<u32>,
}

/// A person who answers handoffs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Agent {
    /// Their id.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// Login and notification address.
    pub email: EmailAddress,
    /// What they can handle.
    pub skills: Vec<Skill>,
    /// The teams they work in.
    pub teams: Vec<Team>,
    /// How many conversations they take at once, all kinds together.
    pub max_concurrent: u32,
    /// How many of each kind of work they take at once (each capped by `max_concurrent`).
    pub capacity: WorkCapacity,
    /// Their working hours; outside them they get no new tickets. `None`: whenever online.
    pub hours: Option<super::BusinessHours>,
    /// Whether they take new tickets now.
    pub presence: Presence,
    /// When the account was created.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_are_lower_cased_tags() {
        assert_eq!(Skill::parse(" Billing ").unwrap().as_str(), "billing");
        assert_eq!(Skill::parse("lang:es").unwrap().as_str(), "lang:es");
        assert!(Skill::parse("drop table;").is_err());
        assert_eq!(Team::parse("Tier-1").unwrap().as_str(), "tier-1");
    }
}

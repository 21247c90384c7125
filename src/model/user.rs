//! People who sign in to Baton: agents answer tickets, managers watch their teams, admins
//! configure everything.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use super::customer::EmailAddress;
use super::message::str_enum;
use super::{AgentId, ParseError, Team, Timestamp, UserId};

/// What a user may do. Ordered by power: every manager right is also an admin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Answers the tickets of their teams and their own.
    Agent,
    /// Watches the dashboard and the tickets of the teams they manage.
    Manager,
    /// Everything, including users, queues, rules and the audit log.
    Admin,
}

str_enum!(UserRole, "role", {
    UserRole::Agent => "agent",
    UserRole::Manager => "manager",
    UserRole::Admin => "admin",
});

/// A password as typed, checked for length only (NIST SP 800-63B: long passphrases welcome,
/// no composition rules). Never printed: `Debug` shows a placeholder.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    /// The shortest password accepted.
    pub const MIN_CHARS: usize = 10;
    /// Longer inputs are refused before hashing, so a huge body cannot make Argon2 chew on it.
    pub const MAX_BYTES: usize = 1024;

    /// Checks the length of a new password.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(ParseError::new(
                "password",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        Self::for_login(raw)
    }

    /// A password presented at login: only the upper bound applies (the stored hash decides).
    pub fn for_login(raw: &str) -> Result<Self, ParseError> {
        if raw.len() > Self::MAX_BYTES {
            return Err(ParseError::new(
                "password",
                format!("must be at most {} bytes", Self::MAX_BYTES),
            ));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    /// The password's text, for hashing.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(****)")
    }
}

/// Someone who signs in.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct User {
    /// Their id (for an agent, also their agent id).
    pub id: UserId,
    /// Sign-in address, lower-cased.
    pub email: EmailAddress,
    /// Display name.
    pub name: String,
    /// What they may do.
    pub role: UserRole,
    /// The teams whose tickets they see: an agent's teams, or the teams a manager manages.
    pub teams: Vec<Team>,
    /// Whether they can sign in with a password (otherwise API tokens only).
    pub has_password: bool,
    /// Set when an admin disabled the account: no sign-in, no token works.
    pub disabled: bool,
    /// When the account was created.
    pub created_at: Timestamp,
}

impl User {
    /// The agent this user is, if they answer tickets.
    pub fn agent_id(&self) -> Option<AgentId> {
        (self.role == UserRole::Agent).then(|| self.id.into())
    }
}

impl FromStr for Password {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_their_names_and_rank_admin_highest() {
        assert_eq!("manager".parse::<UserRole>().unwrap(), UserRole::Manager);
        assert!("root".parse::<UserRole>().is_err());
        assert!(UserRole::Admin > UserRole::Manager && UserRole::Manager > UserRole::Agent);
    }

    #[test]
    fn a_short_password_is_refused_and_a_long_one_never_reaches_the_hasher() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("correct horse battery").is_ok());
        assert!(Password::parse(&"x".repeat(2000)).is_err());
        assert!(Password::for_login(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let p = Password::parse("correct horse battery").unwrap();
        assert_eq!(format!("{p:?}"), "Password(****)");
    }
}

//! Customers and the identities that tie one person together across channels.

use std::fmt;

use super::{ChannelKind, CustomerId, ParseError, Timestamp};

/// A syntactically valid email address, normalized for comparison (domain lower-cased).
///
/// Deliberately strict about what can hurt (whitespace, control characters, missing parts,
/// absurd lengths) and lenient about the rest: RFC 5321 allows far more than anyone sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses and normalizes an address such as `Jane.Doe@Example.COM`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let err = |why: &str| ParseError::new("email address", why);
        if s.is_empty() {
            return Err(err("is empty"));
        }
        if s.len() > 254 {
            return Err(err("is longer than 254 characters"));
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
        {
            return Err(err("contains whitespace, control or separator characters"));
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(|| err("has no @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(err("has an empty or over-long local part"));
        }
        if domain.is_empty()
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(err("has an invalid domain"));
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in E.164 form (`+` and 8 to 15 digits), the form every SMS and WhatsApp
/// API uses. Spaces, dashes, dots and parentheses are removed when parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses `+1 (555) 010-0000` as `+15550100000`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let err = |why: &str| ParseError::new("phone number", why);
        let compact: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact
            .strip_prefix('+')
            .ok_or_else(|| err("must start with + and a country code"))?;
        if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("must have 8 to 15 digits"));
        }
        Ok(Self(compact))
    }

    /// The number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What kind of handle an [`Identity`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKind {
    /// An email address; shared across channels, so it links customers.
    Email,
    /// A phone number; shared across channels, so it links customers.
    Phone,
    /// A user id that only means something on one channel (a PSID, a Telegram chat id, ...).
    Channel(ChannelKind),
}

impl IdentityKind {
    /// The stable name stored in the database: `email`, `phone`, or the channel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Email => "email",
            IdentityKind::Phone => "phone",
            IdentityKind::Channel(c) => c.as_str(),
        }
    }

    /// The inverse of [`IdentityKind::as_str`].
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "email" => Ok(IdentityKind::Email),
            "phone" => Ok(IdentityKind::Phone),
            other => other.parse().map(IdentityKind::Channel),
        }
    }
}

impl serde::Serialize for IdentityKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One handle by which a customer can be reached or recognized.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Identity {
    /// What kind of handle.
    pub kind: IdentityKind,
    /// The handle itself, normalized.
    pub value: String,
}

impl Identity {
    /// An email identity.
    pub fn email(addr: &EmailAddress) -> Self {
        Self {
            kind: IdentityKind::Email,
            value: addr.as_str().to_owned(),
        }
    }

    /// A phone identity.
    pub fn phone(number: &PhoneNumber) -> Self {
        Self {
            kind: IdentityKind::Phone,
            value: number.as_str().to_owned(),
        }
    }

    /// A channel-specific user id. Empty or over-long ids are rejected.
    pub fn channel(channel: ChannelKind, external_id: &str) -> Result<Self, ParseError> {
        let value = external_id.trim();
        if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
            return Err(ParseError::new(
                "sender id",
                "must be 1 to 256 characters without control characters",
            ));
        }
        Ok(Self {
            kind: IdentityKind::Channel(channel),
            value: value.to_owned(),
        })
    }
}

/// One person, however many channels they use.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Customer {
    /// Their id.
    pub id: CustomerId,
    /// The name they gave or the platform reported.
    pub display_name: Option<String>,
    /// Every handle known for them.
    pub identities: Vec<Identity>,
    /// Tags (`vip`, ...) that escalation rules can match.
    pub tags: Vec<String>,
    /// When Baton first saw them.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_domains_are_lower_cased_but_local_parts_are_kept() {
        assert_eq!(
            EmailAddress::parse(" Jane.Doe@Example.COM ")
                .unwrap()
                .as_str(),
            "Jane.Doe@example.com"
        );
    }

    #[test]
    fn malformed_email_addresses_are_rejected() {
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@.com",
            "ja ne@x.org",
            "a@b..c",
            "x@y\r\nBcc: z@w",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn phone_numbers_are_normalized_to_e164() {
        assert_eq!(
            PhoneNumber::parse("+1 (555) 010-0000").unwrap().as_str(),
            "+15550100000"
        );
        assert!(PhoneNumber::parse("555-0100").is_err());
        assert!(PhoneNumber::parse("+12ab34567").is_err());
    }

    #[test]
    fn identity_kinds_round_trip() {
        for kind in [
            IdentityKind::Email,
            IdentityKind::Phone,
            IdentityKind::Channel(ChannelKind::Telegram),
        ] {
            assert_eq!(IdentityKind::parse(kind.as_str()).unwrap(), kind);
        }
    }

    #[test]
    fn channel_identities_must_not_be_empty() {
        assert!(Identity::channel(ChannelKind::Api, "  ").is_err());
        assert!(Identity::channel(ChannelKind::Api, "user-1").is_ok());
    }
}

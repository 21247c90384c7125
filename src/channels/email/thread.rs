//! Which conversation does a mail belong to? The signals, parsed out of the mail here; the
//! store looks them up, strongest first, inside the write that stores the mail.

use crate::model::EmailAddress;
pub use crate::model::{ThreadMatch, ThreadSignals};

/// The support mailbox and the per-conversation reply addresses derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportAddress {
    address: EmailAddress,
    local: String,
    domain: String,
}

impl SupportAddress {
    /// Wraps the support address (e.g. support@example.com).
    pub fn new(address: EmailAddress) -> Self {
        let (local, domain) = address
            .as_str()
            .rsplit_once('@')
            .map(|(l, d)| (l.to_owned(), d.to_owned()))
            .unwrap_or_default();
        Self {
            address,
            local,
            domain,
        }
    }

    /// The address itself.
    pub fn address(&self) -> &EmailAddress {
        &self.address
    }

    /// The domain, for Message-IDs.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The reply address of a conversation: support+<token>@domain.
    pub fn reply_address(&self, token: &str) -> String {
        format!("{}+{}@{}", self.local, token, self.domain)
    }

    /// The token of a reply address, if `addr` is one of ours. Local parts compare without
    /// case: mail systems and people change it freely, and tokens are lower-case hex.
    pub fn token_of(&self, addr: &str) -> Option<String> {
        let (local, domain) = addr.trim().rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        let (base, token) = local.split_once('+')?;
        if !base.eq_ignore_ascii_case(&self.local) {
            return None;
        }
        let token = token.to_ascii_lowercase();
        (is_token(&token)).then_some(token)
    }

    /// Whether `addr` is the support address or one of its reply addresses (mail from there is
    /// our own, looped back).
    pub fn is_ours(&self, addr: &str) -> bool {
        addr.trim().eq_ignore_ascii_case(self.address.as_str()) || self.token_of(addr).is_some()
    }
}

/// Reply tokens are 24 lower-case hex digits (96 random bits: guessing one would let a
/// stranger write into someone's conversation).
pub const TOKEN_LEN: usize = 24;

fn is_token(s: &str) -> bool {
    s.len() == TOKEN_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new random reply token.
pub fn new_reply_token() -> String {
    let bytes: [u8; TOKEN_LEN / 2] = rand::random();
    hex::encode(bytes)
}

/// Reply and forward prefixes in the languages mail clients commonly write them in.
const PREFIXES: &[&str] = &[
    "re", "fw", "fwd", "aw", "wg", "sv", "vs", "antw", "doorst", "tr", "rif", "r", "ref", "res",
    "enc", "odp", "pd", "ynt", "İlt", "atb", "vá", "ΑΠ", "ΣΧΕΤ", "ΠΡΘ", "回复", "转发", "答复",
];

/// The subject as a threading key: reply/forward prefixes ("Re:", "Fwd:", "AW:", "SV:",
/// "Re[2]:", ...), ticket tags ("[#123]", "[Ticket #123]") and bracketed list tags removed,
/// whitespace collapsed, lower-cased. None when nothing is left: an empty subject matches
/// nothing.
pub fn subject_key(subject: &str) -> Option<String> {
    let mut s = subject.trim();
    loop {
        let before = s;
        s = strip_tag(s).trim_start();
        s = strip_prefix(s).trim_start();
        if s == before {
            break;
        }
    }
    // Tags may also trail the subject: "Printer broken [#42]".
    let mut s = s.to_owned();
    while let Some(start) = s.rfind('[') {
        if s.ends_with(']') && is_ticket_tag(&s[start..]) {
            s.truncate(start);
            s = s.trim_end().to_owned();
        } else {
            break;
        }
    }
    let key = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    (!key.is_empty()).then_some(key)
}

fn strip_prefix(s: &str) -> &str {
    // A prefix is a word from PREFIXES, optionally "[n]" or "(n)", then ':' (or the full-width ：).
    let Some((head, rest)) = s.split_once([':', '：']) else {
        return s;
    };
    let word = head.trim_end();
    let word = match word.find(['[', '(']) {
        Some(i)
            if word.ends_with([']', ')'])
                && word[i + 1..word.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            &word[..i]
        }
        _ => word,
    };
    if PREFIXES
        .iter()
        .any(|p| p.to_lowercase() == word.to_lowercase())
    {
        rest
    } else {
        s
    }
}

fn strip_tag(s: &str) -> &str {
    if s.starts_with('[')
        && let Some(end) = s.find(']')
        && end < 64
    {
        return &s[end + 1..];
    }
    s
}

fn is_ticket_tag(tag: &str) -> bool {
    // "[#123]", "[Ticket #123]", "[Case 00123]": a short tag that ends in a number.
    let inner = tag.trim_start_matches('[').trim_end_matches(']');
    inner.len() < 40 && inner.ends_with(|c: char| c.is_ascii_digit())
}

/// Message-ids from a header's values: angle brackets and whitespace removed, empty and
/// overlong ones dropped, each once.
pub fn clean_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        let id = id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        if id.is_empty() || id.len() > 998 || out.iter().any(|o| o == id) {
            continue;
        }
        out.push(id.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn support() -> SupportAddress {
        SupportAddress::new(EmailAddress::parse("support@example.com").unwrap())
    }

    #[test]
    fn reply_and_forward_prefixes_in_several_languages_are_removed() {
        for s in [
            "Re: Printer broken",
            "RE: Re: Printer broken",
            "Fwd: printer broken",
            "AW: Printer broken",
            "SV: Printer  broken",
            "Re[2]: Printer broken",
            "Re: [#123] Printer broken",
            "[Ticket #77] Re: Printer broken",
            "Printer broken [#42]",
            "  printer BROKEN ",
        ] {
            assert_eq!(subject_key(s).as_deref(), Some("printer broken"), "{s}");
        }
    }

    #[test]
    fn a_subject_of_only_prefixes_is_no_key() {
        assert_eq!(subject_key("Re: "), None);
        assert_eq!(subject_key(""), None);
        assert_eq!(subject_key("[#1]"), None);
    }

    #[test]
    fn words_that_only_look_like_prefixes_stay() {
        assert_eq!(
            subject_key("Reason: refund").as_deref(),
            Some("reason: refund")
        );
        assert_eq!(
            subject_key("Note: re-send").as_deref(),
            Some("note: re-send")
        );
    }

    #[test]
    fn reply_addresses_carry_their_token_and_nothing_else_does() {
        let s = support();
        let token = new_reply_token();
        let addr = s.reply_address(&token);
        assert_eq!(s.token_of(&addr), Some(token.clone()));
        assert_eq!(s.token_of(&addr.to_uppercase()), Some(token));
        assert_eq!(s.token_of("support@example.com"), None);
        assert_eq!(s.token_of("support+short@example.com"), None);
        assert_eq!(
            s.token_of(&format!("other+{}@example.com", "a".repeat(24))),
            None
        );
        assert_eq!(
            s.token_of(&format!("support+{}@evil.com", "a".repeat(24))),
            None
        );
        assert!(s.is_ours("SUPPORT@example.com"));
    }

    #[test]
    fn message_ids_lose_brackets_and_repeats() {
        assert_eq!(
            clean_ids(["<a@x>", " <b@x> ", "<a@x>", "<>", ""]),
            vec!["a@x".to_owned(), "b@x".to_owned()]
        );
    }
}

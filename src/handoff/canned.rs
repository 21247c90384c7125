//! Canned responses: texts agents send often, with variables filled in from the ticket.

use serde::{Deserialize, Serialize};

/// One canned response (`[[canned_responses]]` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedResponse {
    /// What agents pick it by.
    pub name: String,
    /// The text, with `{customer_name}`, `{agent_name}` and `{ticket}` filled in on use.
    pub text: String,
}

/// What the variables stand for in one ticket.
#[derive(Debug, Clone, Default)]
pub struct Variables<'a> {
    /// The customer's name (or "there" when unknown: "Hi there").
    pub customer_name: Option<&'a str>,
    /// The agent's name.
    pub agent_name: &'a str,
    /// A short ticket reference.
    pub ticket: &'a str,
}

impl CannedResponse {
    /// The text with its variables filled in; unknown `{...}` stay as written.
    pub fn expand(&self, v: &Variables<'_>) -> String {
        self.text
            .replace("{customer_name}", v.customer_name.unwrap_or("there"))
            .replace("{agent_name}", v.agent_name)
            .replace("{ticket}", v.ticket)
    }

    /// The responses a fresh install offers.
    pub fn defaults() -> Vec<CannedResponse> {
        [
            (
                "greeting",
                "Hi {customer_name}, I'm {agent_name} and I'll take it from here. I have read your conversation so far.",
            ),
            (
                "need-a-moment",
                "Thanks for your patience, {customer_name}. I'm checking this now and will be back with you in a few minutes.",
            ),
            (
                "closing",
                "Glad I could help, {customer_name}. If anything else comes up, just write here (reference {ticket}).",
            ),
        ]
        .into_iter()
        .map(|(name, text)| CannedResponse {
            name: name.into(),
            text: text.into(),
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_filled_in_and_an_unknown_name_reads_naturally() {
        let greeting = &CannedResponse::defaults()[0];
        let text = greeting.expand(&Variables {
            customer_name: Some("Maya"),
            agent_name: "Ada",
            ticket: "T-1",
        });
        assert!(text.starts_with("Hi Maya, I'm Ada"), "{text}");
        let anonymous = greeting.expand(&Variables {
            customer_name: None,
            agent_name: "Ada",
            ticket: "T-1",
        });
        assert!(anonymous.starts_with("Hi there, I'm Ada"), "{anonymous}");
    }

    #[test]
    fn text_that_only_looks_like_a_variable_is_left_alone() {
        let c = CannedResponse {
            name: "x".into(),
            text: "Use {code} and {customer_name}".into(),
        };
        assert_eq!(
            c.expand(&Variables {
                customer_name: Some("Li"),
                ..Default::default()
            }),
            "Use {code} and Li"
        );
    }
}

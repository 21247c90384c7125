//! Does the customer ask for a person? Phrase matching on normalized words.
//!
//! Matching is on whole words, so "agentic" or "humane" never fire, and a few
//! negations ("not a human", "no agent") are excluded. The router issue widens this to
//! more languages and misspellings with a table of positive and negative phrases.

/// Lower-cased words, punctuation dropped, apostrophes kept inside words.
pub fn normalize(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Whether `phrase` (one or more words) appears as consecutive whole words.
pub fn contains_phrase(words: &[String], phrase: &str) -> bool {
    let needle: Vec<&str> = phrase.split_whitespace().collect();
    !needle.is_empty()
        && words
            .windows(needle.len())
            .any(|w| w.iter().zip(&needle).all(|(a, b)| a == b))
}

const ASKS: &[&str] = &[
    "agent",
    "human",
    "real person",
    "a person",
    "live person",
    "someone",
    "somebody",
    "representative",
    "operator",
    "customer service",
    "support team",
    "speak to",
    "talk to",
];

/// Phrases in which the words above do not ask for anyone.
const NOT_ASKING: &[&str] = &[
    "not a robot",
    "not a bot",
    "not a human",
    "i am human",
    "i'm human",
    "i am a human",
    "i'm a human",
    "no agent",
    "don't need an agent",
    "don't need a human",
    "someone else's",
    "user agent",
    "travel agent",
    "real estate agent",
];

/// Whether the text asks for a person.
pub fn asks_for_human(text: &str) -> bool {
    let words = normalize(text);
    if NOT_ASKING.iter().any(|p| contains_phrase(&words, p)) {
        return false;
    }
    // "talk to"/"speak to" alone ("talk to me about pricing") are weak; they count only with
    // a person-word nearby, which the other phrases already cover, or at the end of a request.
    ASKS.iter()
        .filter(|p| !matches!(**p, "speak to" | "talk to"))
        .any(|p| contains_phrase(&words, p))
        || [
            "talk to a person",
            "speak to a person",
            "talk to someone",
            "speak with someone",
        ]
        .iter()
        .any(|p| contains_phrase(&words, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_asking_for_a_person_are_recognized() {
        for text in [
            "I want to talk to a human",
            "AGENT!!!",
            "Can I speak to a real person please?",
            "get me a representative",
            "operator",
            "can someone help me",
            "talk to someone",
        ] {
            assert!(asks_for_human(text), "{text:?} asks for a person");
        }
    }

    #[test]
    fn ordinary_messages_and_negations_do_not_trigger_a_handoff() {
        for text in [
            "I am not a robot",
            "What are your opening hours?",
            "my user agent string is weird",
            "the agentic workflow broke",
            "that's humane",
            "I'm human, why the captcha?",
            "talk to me about pricing",
        ] {
            assert!(!asks_for_human(text), "{text:?} does not ask for a person");
        }
    }
}

/// Placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Language {
    /// English.
    En,
}

impl Language {
    /// Code.
    pub fn as_str(self) -> &'static str {
        "en"
    }
}

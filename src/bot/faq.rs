//! The built-in FAQ bot: answers a handful of common questions by keyword, so Baton works
//! with nothing else running. Operators with a real bot point `bot_webhook_url` at it.

use async_trait::async_trait;

use super::{Bot, BotError, BotReply, BotTurn};

struct Entry {
    keywords: &'static [&'static str],
    answer: &'static str,
}

const ENTRIES: &[Entry] = &[
    Entry {
        keywords: &["hours", "open", "opening", "closed", "when are you"],
        answer: "Our support team is available Monday to Friday, 9:00 to 18:00 (UTC). I'm here around the clock.",
    },
    Entry {
        keywords: &[
            "password",
            "reset",
            "log in",
            "login",
            "sign in",
            "locked out",
        ],
        answer: "To reset your password, use \"Forgot password\" on the sign-in page; the link we email you is valid for one hour.",
    },
    Entry {
        keywords: &["refund", "money back", "return"],
        answer: "Refunds are possible within 30 days of purchase. Tell me your order number and I'll check it, or ask for a person.",
    },
    Entry {
        keywords: &[
            "shipping", "delivery", "deliver", "track", "tracking", "package", "parcel",
        ],
        answer: "Orders ship within 2 business days; you'll get a tracking link by email as soon as your parcel leaves.",
    },
    Entry {
        keywords: &["price", "pricing", "cost", "plan", "plans", "subscription"],
        answer: "Our plans start at $10 per month; every plan can be cancelled at any time.",
    },
    Entry {
        keywords: &["hello", "hi", "hey", "good morning", "good evening"],
        answer: "Hello! I'm the support bot. Ask me about opening hours, passwords, refunds, shipping or pricing, or ask for a person at any time.",
    },
];

const FALLBACK: &str = "I'm not sure I understood. I can help with opening hours, passwords, refunds, shipping and pricing. \
                        If you'd rather talk to a person, just say so.";

/// The built-in keyword bot.
#[derive(Debug, Default, Clone, Copy)]
pub struct FaqBot;

impl FaqBot {
    /// The answer for a text, if a topic matches.
    pub fn answer(text: &str) -> Option<&'static str> {
        let words = crate::handoff::intent::normalize(text);
        ENTRIES
            .iter()
            .find(|e| {
                e.keywords
                    .iter()
                    .any(|k| crate::handoff::intent::contains_phrase(&words, k))
            })
            .map(|e| e.answer)
    }
}

#[async_trait]
impl Bot for FaqBot {
    fn context_messages(&self) -> u32 {
        0
    }

    async fn respond(&self, turn: BotTurn<'_>) -> Result<BotReply, BotError> {
        let answer = Self::answer(&turn.message.text);
        Ok(BotReply {
            messages: vec![answer.unwrap_or(FALLBACK).to_owned()],
            fallback: answer.is_none(),
            ..BotReply::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_faq_bot_answers_questions_it_knows() {
        assert!(
            FaqBot::answer("What are your opening hours?")
                .unwrap()
                .contains("Monday")
        );
        assert!(
            FaqBot::answer("I forgot my PASSWORD")
                .unwrap()
                .contains("reset")
        );
    }

    #[test]
    fn the_faq_bot_does_not_match_inside_words() {
        // "this" contains "hi", "shipping" is not "ship"; only whole words count.
        assert_eq!(FaqBot::answer("this"), None);
    }
}

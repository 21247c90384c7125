//! Honest waiting: what a customer is told while their ticket waits for a person.
//!
//! When the handoff starts, the customer learns that a person is coming, their place in line
//! and, when Baton has seen enough recent handoffs of that queue to say, about how long it
//! takes. Later updates go out only when the news changed materially (see
//! [`worth_telling`]), so a busy queue does not spam everyone in it. Outside the queue's
//! business hours they are told when people are back.
//!
//! The estimate comes from recent actual waits of the same queue: with `n` tickets accepted
//! in the last hour, the queue moves about `n` places an hour, so position `p` waits about
//! `p / n` hours; the median recent wait is the floor (nobody waits less than the typical
//! wait just because the line moved fast once). With no accepted ticket in the last hour
//! there is no honest number, and the message says so without one.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The texts for one language. Placeholders: `{position}`, `{minutes}`, `{opens}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitingTexts {
    /// Queued, with an estimate.
    pub queued: String,
    /// Queued, no estimate available.
    pub queued_no_estimate: String,
    /// First in line (or already being offered to someone).
    pub next: String,
    /// The queue is closed; it opens at `{opens}`.
    pub closed: String,
    /// The queue is closed and no opening time is known.
    pub closed_no_time: String,
}

/// The built-in texts, in English, Spanish, French, German and Portuguese.
pub fn default_texts() -> BTreeMap<String, WaitingTexts> {
    let t =
        |queued: &str, none: &str, next: &str, closed: &str, closed_no_time: &str| WaitingTexts {
            queued: queued.into(),
            queued_no_estimate: none.into(),
            next: next.into(),
            closed: closed.into(),
            closed_no_time: closed_no_time.into(),
        };
    BTreeMap::from([
        (
            "en".into(),
            t(
                "A person from our team will take over. You are number {position} in line; the wait is about {minutes} min.",
                "A person from our team will take over. You are number {position} in line.",
                "You're next: a person from our team will be with you in a moment.",
                "Our team is away right now and back {opens}. Your message is in the queue and a person will answer then.",
                "Our team is away right now. Your message is in the queue and a person will answer as soon as they are back.",
            ),
        ),
        (
            "es".into(),
            t(
                "Una persona de nuestro equipo te atenderá. Eres el número {position} en la fila; la espera es de unos {minutes} min.",
                "Una persona de nuestro equipo te atenderá. Eres el número {position} en la fila.",
                "Eres el siguiente: una persona de nuestro equipo te atenderá en un momento.",
                "Nuestro equipo no está disponible ahora y vuelve {opens}. Tu mensaje está en la cola y te responderán entonces.",
                "Nuestro equipo no está disponible ahora. Tu mensaje está en la cola y te responderán en cuanto vuelvan.",
            ),
        ),
        (
            "fr".into(),
            t(
                "Une personne de notre équipe va prendre le relais. Vous êtes numéro {position} dans la file ; l'attente est d'environ {minutes} min.",
                "Une personne de notre équipe va prendre le relais. Vous êtes numéro {position} dans la file.",
                "C'est bientôt à vous : une personne de notre équipe arrive dans un instant.",
                "Notre équipe est absente pour le moment et revient {opens}. Votre message est dans la file ; une personne vous répondra à ce moment-là.",
                "Notre équipe est absente pour le moment. Votre message est dans la file ; une personne vous répondra dès son retour.",
            ),
        ),
        (
            "de".into(),
            t(
                "Eine Person aus unserem Team übernimmt. Sie sind Nummer {position} in der Warteschlange; die Wartezeit beträgt etwa {minutes} Min.",
                "Eine Person aus unserem Team übernimmt. Sie sind Nummer {position} in der Warteschlange.",
                "Sie sind als Nächstes dran: Gleich meldet sich eine Person aus unserem Team.",
                "Unser Team ist gerade nicht da und ab {opens} wieder erreichbar. Ihre Nachricht ist in der Warteschlange und wird dann beantwortet.",
                "Unser Team ist gerade nicht da. Ihre Nachricht ist in der Warteschlange und wird beantwortet, sobald jemand zurück ist.",
            ),
        ),
        (
            "pt".into(),
            t(
                "Uma pessoa da nossa equipe vai assumir. Você é o número {position} na fila; a espera é de cerca de {minutes} min.",
                "Uma pessoa da nossa equipe vai assumir. Você é o número {position} na fila.",
                "Você é o próximo: uma pessoa da nossa equipe falará com você em instantes.",
                "Nossa equipe está ausente agora e volta {opens}. Sua mensagem está na fila e será respondida nesse momento.",
                "Nossa equipe está ausente agora. Sua mensagem está na fila e será respondida assim que voltarem.",
            ),
        ),
    ])
}

/// Where the customer stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// In line at `position`, with an estimate if there is one.
    InLine {
        /// 1-based.
        position: u32,
        /// Estimated wait.
        wait_ms: Option<i64>,
    },
    /// Being offered to an agent now, or first in line.
    Next,
    /// The queue is closed until then (if known).
    Closed {
        /// When it opens, epoch ms.
        opens_at_ms: Option<i64>,
        /// The queue's time zone, for telling the time.
        tz: Option<jiff::tz::TimeZone>,
    },
}

/// The estimate: `position` places at the rate the queue moved in the last hour, never below
/// the median recent wait. `None` without a ticket accepted in the last hour.
pub fn estimate(
    position: u32,
    accepted_last_hour: u32,
    median_wait_ms: Option<i64>,
) -> Option<i64> {
    if accepted_last_hour == 0 {
        return None;
    }
    let by_rate = 3_600_000i64 * i64::from(position) / i64::from(accepted_last_hour);
    Some(by_rate.max(median_wait_ms.unwrap_or(0)).min(24 * 3_600_000))
}

/// The message for a standing, in `language` (falling back to English).
pub fn message(
    texts: &BTreeMap<String, WaitingTexts>,
    language: Option<&str>,
    s: &Standing,
) -> String {
    let t = language
        .and_then(|l| texts.get(l))
        .or_else(|| texts.get("en"))
        .or_else(|| texts.values().next());
    let Some(t) = t else {
        return String::new();
    };
    match s {
        Standing::Next | Standing::InLine { position: 1, .. } => t.next.clone(),
        Standing::InLine {
            position,
            wait_ms: Some(ms),
        } => t
            .queued
            .replace("{position}", &position.to_string())
            .replace("{minutes}", &minutes(*ms).to_string()),
        Standing::InLine { position, .. } => t
            .queued_no_estimate
            .replace("{position}", &position.to_string()),
        Standing::Closed {
            opens_at_ms: Some(at),
            tz,
        } => t.closed.replace("{opens}", &when(*at, tz.as_ref())),
        Standing::Closed { .. } => t.closed_no_time.clone(),
    }
}

/// Whole minutes, rounded up, at least 1.
fn minutes(ms: i64) -> i64 {
    ((ms + 59_999) / 60_000).max(1)
}

/// An opening time the customer can read: ISO date and time in the queue's zone, with the
/// zone's name (e.g. `2026-11-25 09:00 Europe/Berlin`), which reads the same in any language.
fn when(at_ms: i64, tz: Option<&jiff::tz::TimeZone>) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(at_ms) else {
        return String::new();
    };
    let tz = tz.cloned().unwrap_or(jiff::tz::TimeZone::UTC);
    let zoned = ts.to_zoned(tz.clone());
    let name = tz.iana_name().unwrap_or("UTC");
    format!("{} {name}", zoned.strftime("%Y-%m-%d %H:%M"))
}

/// Whether a new standing is worth a message, given what the customer was last told: they
/// moved to the front, the queue closed, or the estimate changed by at least half and at
/// least two minutes, at most once every `min_gap_ms`.
pub fn worth_telling(
    told_position: Option<u32>,
    told_wait_ms: Option<i64>,
    told_ago_ms: i64,
    now: &Standing,
    min_gap_ms: i64,
) -> bool {
    match now {
        Standing::Next | Standing::InLine { position: 1, .. } => told_position != Some(1),
        Standing::Closed { .. } => false,
        Standing::InLine { position, wait_ms } => {
            if told_ago_ms < min_gap_ms {
                return false;
            }
            match (told_wait_ms, wait_ms) {
                (Some(old), Some(new)) => {
                    let diff = (new - old).abs();
                    diff >= 120_000 && diff * 2 >= old
                }
                (None, Some(_)) => true,
                _ => told_position.is_some_and(|p| *position * 2 <= p),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_how_fast_the_queue_moved_and_never_undercuts_the_median() {
        assert_eq!(estimate(3, 0, Some(60_000)), None, "no honest number");
        // 12 accepted in the last hour: five minutes a place.
        assert_eq!(estimate(3, 12, None), Some(15 * 60_000));
        assert_eq!(estimate(1, 60, Some(4 * 60_000)), Some(4 * 60_000));
        assert_eq!(
            estimate(100_000, 1, None),
            Some(24 * 3_600_000),
            "capped at a day"
        );
    }

    #[test]
    fn messages_name_the_position_and_minutes_in_the_customers_language() {
        let texts = default_texts();
        let s = Standing::InLine {
            position: 3,
            wait_ms: Some(7 * 60_000 + 1),
        };
        assert!(
            message(&texts, Some("en"), &s).contains("number 3 in line; the wait is about 8 min")
        );
        assert!(message(&texts, Some("es"), &s).contains("número 3"));
        assert!(
            message(&texts, Some("xx"), &s).contains("number 3"),
            "falls back to English"
        );
        let none = Standing::InLine {
            position: 4,
            wait_ms: None,
        };
        assert!(!message(&texts, Some("de"), &none).contains("{minutes}"));
        assert!(message(&texts, Some("fr"), &Standing::Next).contains("bientôt"));
    }

    #[test]
    fn a_closed_queue_says_when_people_are_back_in_the_queues_time_zone() {
        let texts = default_texts();
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        // 2026-11-25 08:00 UTC is 09:00 in Berlin.
        let at = jiff::Timestamp::from_second(1_795_593_600)
            .unwrap()
            .as_millisecond();
        let s = Standing::Closed {
            opens_at_ms: Some(at),
            tz: Some(berlin),
        };
        let m = message(&texts, Some("en"), &s);
        assert!(m.contains("2026-11-25 09:00 Europe/Berlin"), "{m}");
    }

    #[test]
    fn updates_go_out_only_when_the_news_changed_materially() {
        let minute = 60_000;
        let line = |position, wait| Standing::InLine {
            position,
            wait_ms: Some(wait * minute),
        };
        // Reaching the front is always worth saying, once.
        assert!(worth_telling(
            Some(5),
            Some(10 * minute),
            0,
            &Standing::Next,
            5 * minute
        ));
        assert!(!worth_telling(
            Some(1),
            None,
            0,
            &Standing::Next,
            5 * minute
        ));
        // Ten minutes to nine is not news; ten to four is, but not twice in a minute.
        assert!(!worth_telling(
            Some(5),
            Some(10 * minute),
            10 * minute,
            &line(4, 9),
            5 * minute
        ));
        assert!(worth_telling(
            Some(5),
            Some(10 * minute),
            10 * minute,
            &line(2, 4),
            5 * minute
        ));
        assert!(!worth_telling(
            Some(5),
            Some(10 * minute),
            minute,
            &line(2, 4),
            5 * minute
        ));
    }
}

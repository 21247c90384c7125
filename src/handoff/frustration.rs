//! How frustrated is the customer? A score from 0 to 1 over their recent messages, with the
//! signals that made it, so a handoff can record why it happened.
//!
//! # Approach
//!
//! Each message is read on its own for five signals ([`FrustrationSignals::detect`]), with
//! these weights:
//!
//! - [`Signal::Profanity`], 0.45, +0.1 per further swear word, at most 0.6: whole words in
//!   en/es/fr/de/pt ("wtf", "mierda", "merde", "Scheiße", "porra"), censored ones ("f*ck",
//!   "sh**") and 🤬;
//! - [`Signal::NegativeWords`], 0.4, +0.1 per further word, at most 0.6: "useless",
//!   "not helpful", "doesn't work", "inútil", "nul", "nutzlos", "péssimo", 😡, 👎, ...;
//! - [`Signal::AllCaps`], 0.35: at least 8 cased letters of which at least 70 % are upper
//!   case, or capitalised words in a row with 8 letters or more ("THIS IS USELESS! I ...");
//!   acronyms ("OK", "USA") and codes with digits do not count;
//! - [`Signal::AlreadySaid`], 0.3: "I already told you", "how many times do I", "ya te dije",
//!   "je vous l'ai déjà dit", "schon gesagt", "já falei";
//! - [`Signal::RepeatedPunctuation`], 0.25: three or more `!`/`?` in a row ("!!!", "???",
//!   "?!?!").
//!
//! The conversation is read for one more:
//!
//! - [`Signal::RepeatedQuestion`], 0.35 for one repeat, +0.2 per further repeat, at most 0.75:
//!   a message repeats an earlier one when it has the same words (two or more), or when their
//!   word sets have a Jaccard similarity of at least 0.8 (three words or more each).
//!
//! A message's weights add up (capped at 1), the message `n` steps back from the latest counts
//! [`DECAY`]`^n` (0.6: the latest message counts fully, the one before 0.6, then 0.36, ...),
//! the messages' values and the repetition's (decayed by the age of the latest repeat) add up,
//! and the sum is capped at 1.
//!
//! # Why these weights
//!
//! With [`DEFAULT_THRESHOLD`] at 0.6, **one signal is a hint and two are a pattern**: no
//! single signal reaches the threshold by itself (a lone "damn, I forgot my password", a
//! customer who types in capitals, "thanks!!!", a "terrible" about the weather), while any two
//! in one message do ("useless!!!" is 0.65, "THIS IS USELESS" 0.75), except the two weakest,
//! repeated punctuation and "I already said" (0.55), which need a third. Profanity weighs most
//! because it is the least ambiguous; punctuation least, because enthusiasm uses it too.
//! Asking the same thing twice is 0.35 (the bot may just have misunderstood), three times 0.55
//! and, with any other sign, past the threshold. The decay lets frustration build up over a
//! few annoyed messages but fade once the customer calms down: an angry message followed by
//! two calm ones counts 0.36 of itself.
//!
//! Lexicons are matched on folded text (see [`fold`]), so accents and case do not matter:
//! "inútil" and "INUTIL" are the same word. Everything is a static table built once; a call
//! is linear in the length of the messages (the repetition check compares at most
//! [`MAX_MESSAGES`] messages pairwise), and no input makes it panic.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use super::intent::fold;

/// The score at or above which a conversation should go to a person.
pub const DEFAULT_THRESHOLD: f32 = 0.6;

/// How much a message counts for each step it lies behind the latest one.
pub const DECAY: f32 = 0.6;

/// How many of the latest messages are read; older ones would count less than 1 %.
pub const MAX_MESSAGES: usize = 10;

/// Contributions smaller than this are left out of [`Frustration::signals`].
const MIN_REPORTED: f32 = 0.05;

const PROFANITY_WEIGHT: f32 = 0.45;
const NEGATIVE_WORDS_WEIGHT: f32 = 0.4;
const ALL_CAPS_WEIGHT: f32 = 0.35;
const ALREADY_SAID_WEIGHT: f32 = 0.3;
const REPEATED_PUNCTUATION_WEIGHT: f32 = 0.25;
const REPEATED_QUESTION_WEIGHT: f32 = 0.35;
/// Added for each further word of a lexicon in one message.
const EXTRA_WORD_WEIGHT: f32 = 0.1;
/// The most one lexicon can weigh in one message: a rant is not worth more than two signals.
const MAX_LEXICON_WEIGHT: f32 = 0.6;
/// Added for each further repeat of a question.
const EXTRA_REPEAT_WEIGHT: f32 = 0.2;

/// Something that made the score go up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Complaint words: "useless", "doesn't work", "inútil", "nul", "nutzlos", "péssimo".
    NegativeWords,
    /// Swear words: "wtf", "damn", "mierda", "merde", "Scheiße", "porra".
    Profanity,
    /// A message in capitals.
    AllCaps,
    /// "!!!", "???", "?!?!".
    RepeatedPunctuation,
    /// The same question asked again.
    RepeatedQuestion,
    /// "I already told you", "ya te dije", "schon gesagt".
    AlreadySaid,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 6] = [
        Signal::NegativeWords,
        Signal::Profanity,
        Signal::AllCaps,
        Signal::RepeatedPunctuation,
        Signal::RepeatedQuestion,
        Signal::AlreadySaid,
    ];

    /// A stable snake_case name for logs and handoff reasons: "negative_words", ...
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::NegativeWords => "negative_words",
            Signal::Profanity => "profanity",
            Signal::AllCaps => "all_caps",
            Signal::RepeatedPunctuation => "repeated_punctuation",
            Signal::RepeatedQuestion => "repeated_question",
            Signal::AlreadySaid => "already_said",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of [`score`].
#[derive(Debug, Clone, PartialEq)]
pub struct Frustration {
    /// From 0.0 (calm) to 1.0.
    pub score: f32,
    /// What contributed, largest contribution first; empty when the score is 0.
    pub signals: Vec<Signal>,
}

impl Frustration {
    /// Whether the score reaches `threshold` (see [`DEFAULT_THRESHOLD`]).
    pub fn exceeds(&self, threshold: f32) -> bool {
        self.score >= threshold
    }

    /// The signals as one string for a handoff reason: "negative_words,repeated_punctuation".
    pub fn reason(&self) -> String {
        self.signals
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What one message shows, before weighting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrustrationSignals {
    /// Distinct complaint words and phrases.
    pub negative_words: usize,
    /// Distinct swear words.
    pub profanity: usize,
    /// Written in capitals.
    pub all_caps: bool,
    /// Three or more `!`/`?` in a row.
    pub repeated_punctuation: bool,
    /// Says it was already said ("I already told you").
    pub already_said: bool,
}

impl FrustrationSignals {
    /// Reads one message.
    pub fn detect(message: &str) -> Self {
        let tables = &*TABLES;
        let words = words(message);
        let mut negative = tables.negative.hits(&words);
        let mut profane = tables.profanity.hits(&words);
        if words.contains(&Word::Censored) {
            profane.insert("*");
        }
        for c in message.chars() {
            if NEGATIVE_EMOJI.contains(&c) {
                negative.insert("emoji");
            }
            if PROFANE_EMOJI.contains(&c) {
                profane.insert("emoji");
            }
        }
        Self {
            negative_words: negative.len(),
            profanity: profane.len(),
            all_caps: is_shouting(message),
            repeated_punctuation: has_repeated_punctuation(message),
            already_said: !tables.already_said.hits(&words).is_empty(),
        }
    }

    /// The message's weight: the signals' weights added up, at most 1.
    pub fn weight(&self) -> f32 {
        self.contributions()
            .iter()
            .map(|(_, w)| w)
            .sum::<f32>()
            .min(1.0)
    }

    /// Whether nothing was found.
    pub fn is_calm(&self) -> bool {
        *self == Self::default()
    }

    fn contributions(&self) -> [(Signal, f32); 5] {
        let counted = |n: usize, first: f32| -> f32 {
            match n {
                0 => 0.0,
                n => (first + EXTRA_WORD_WEIGHT * (n - 1) as f32).min(MAX_LEXICON_WEIGHT),
            }
        };
        let flag = |on: bool, w: f32| if on { w } else { 0.0 };
        [
            (Signal::Profanity, counted(self.profanity, PROFANITY_WEIGHT)),
            (
                Signal::NegativeWords,
                counted(self.negative_words, NEGATIVE_WORDS_WEIGHT),
            ),
            (Signal::AllCaps, flag(self.all_caps, ALL_CAPS_WEIGHT)),
            (
                Signal::AlreadySaid,
                flag(self.already_said, ALREADY_SAID_WEIGHT),
            ),
            (
                Signal::RepeatedPunctuation,
                flag(self.repeated_punctuation, REPEATED_PUNCTUATION_WEIGHT),
            ),
        ]
    }
}

/// Scores the customer's recent messages, the most recent last.
///
/// Only the last [`MAX_MESSAGES`] are read. See the module documentation for the weights.
pub fn score(recent_customer_messages: &[&str]) -> Frustration {
    let messages =
        &recent_customer_messages[recent_customer_messages.len().saturating_sub(MAX_MESSAGES)..];
    let mut total = 0.0f32;
    let mut by_signal: HashMap<Signal, f32> = HashMap::new();
    for (age, message) in messages.iter().rev().enumerate() {
        let factor = DECAY.powi(age as i32);
        let signals = FrustrationSignals::detect(message);
        total += factor * signals.weight();
        for (signal, weight) in signals.contributions() {
            *by_signal.entry(signal).or_default() += factor * weight;
        }
    }
    let repeat = repetition(messages);
    total += repeat;
    *by_signal.entry(Signal::RepeatedQuestion).or_default() += repeat;

    let mut signals: Vec<(Signal, f32)> = by_signal
        .into_iter()
        .filter(|&(_, w)| w >= MIN_REPORTED)
        .collect();
    signals.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Frustration {
        score: total.clamp(0.0, 1.0),
        signals: signals.into_iter().map(|(s, _)| s).collect(),
    }
}

/// The repeated-question contribution: how many messages repeat an earlier one, weighted by
/// the age of the latest that does.
fn repetition(messages: &[&str]) -> f32 {
    let words: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            words(m)
                .into_iter()
                .filter_map(|w| match w {
                    Word::Plain(w) => Some(w),
                    Word::Censored => None,
                })
                .collect()
        })
        .collect();
    let sets: Vec<Vec<&str>> = words
        .iter()
        .map(|w| {
            let mut set: Vec<&str> = w.iter().map(String::as_str).collect();
            set.sort_unstable();
            set.dedup();
            set
        })
        .collect();
    let mut repeats = 0;
    let mut latest = None;
    for j in 1..messages.len() {
        if (0..j).any(|i| near_identical(&words[i], &words[j], &sets[i], &sets[j])) {
            repeats += 1;
            latest = Some(j);
        }
    }
    let Some(latest) = latest else {
        return 0.0;
    };
    let age = messages.len() - 1 - latest;
    let weight = (REPEATED_QUESTION_WEIGHT + EXTRA_REPEAT_WEIGHT * (repeats - 1) as f32)
        .min(REPEATED_QUESTION_WEIGHT + 2.0 * EXTRA_REPEAT_WEIGHT);
    weight * DECAY.powi(age as i32)
}

/// Whether two messages say the same: the same words (at least two, so "ok"/"ok" and
/// "yes"/"yes" are not repeats), or word sets overlapping by a Jaccard similarity of 0.8 or
/// more with at least three words each ("where is my order" / "where is my order now").
fn near_identical(a: &[String], b: &[String], set_a: &[&str], set_b: &[&str]) -> bool {
    if a.len() >= 2 && a == b {
        return true;
    }
    if set_a.len() < 3 || set_b.len() < 3 {
        return false;
    }
    let common = intersection_len(set_a, set_b);
    let union = set_a.len() + set_b.len() - common;
    // common / union >= 0.8, in integers.
    5 * common >= 4 * union
}

/// The size of the intersection of two sorted, deduplicated lists.
fn intersection_len(a: &[&str], b: &[&str]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Shouting: at least 8 cased letters of which at least 70 % upper case, or two or more
/// capitalised words in a row with 8 letters or more between them. Words with digits (order
/// numbers, codes) do not count, and capitalised words of up to three letters ("OK", "USA",
/// "I") count only when the message has a longer one, so acronyms alone never shout.
fn is_shouting(message: &str) -> bool {
    struct W {
        cased: usize,
        upper: usize,
    }
    let words: Vec<W> = message
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !w.chars().any(|c| c.is_numeric()))
        .map(|w| W {
            cased: w
                .chars()
                .filter(|c| c.is_uppercase() || c.is_lowercase())
                .count(),
            upper: w.chars().filter(|c| c.is_uppercase()).count(),
        })
        .filter(|w| w.cased > 0)
        .collect();
    let capitalised = |w: &W| w.upper == w.cased;
    let long_capitalised = words.iter().any(|w| capitalised(w) && w.cased >= 4);
    let counted = words
        .iter()
        .filter(|w| long_capitalised || !(capitalised(w) && w.cased <= 3));
    let (cased, upper) = counted.fold((0, 0), |(c, u), w| (c + w.cased, u + w.upper));
    if cased >= 8 && 10 * upper >= 7 * cased {
        return true;
    }
    let (mut run_words, mut run_letters, mut run_long) = (0, 0, false);
    for w in &words {
        if capitalised(w) {
            run_words += 1;
            run_letters += w.cased;
            run_long |= w.cased >= 4;
            if run_words >= 2 && run_letters >= 8 && run_long {
                return true;
            }
        } else {
            (run_words, run_letters, run_long) = (0, 0, false);
        }
    }
    false
}

/// Three or more of `!` and `?` in a row (full-width and Spanish inverted ones too).
fn has_repeated_punctuation(message: &str) -> bool {
    let mut run = 0;
    for c in message.chars() {
        if matches!(
            c,
            '!' | '?' | '！' | '？' | '¡' | '¿' | '‼' | '⁉' | '⁈' | '⁇'
        ) {
            run += if matches!(c, '‼' | '⁉' | '⁈' | '⁇') {
                2
            } else {
                1
            };
            if run >= 3 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

const NEGATIVE_EMOJI: &[char] = &['😡', '😠', '👎', '🙄', '😤', '😒'];
const PROFANE_EMOJI: &[char] = &['🤬', '🖕'];

/// A word of a message: folded text, or a censored swear word ("f*ck", "sh**").
#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Plain(String),
    Censored,
}

impl PartialEq<str> for Word {
    fn eq(&self, other: &str) -> bool {
        matches!(self, Word::Plain(w) if w == other)
    }
}

/// Folded words; apostrophes stay inside words ("doesn't", "t'ai"), stars inside or after
/// letters mark a censored word, and stars around a word (markdown `**bold**`) are dropped.
fn words(message: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut word = String::new();
    let folded = fold(message);
    for c in folded.chars() {
        if c.is_alphanumeric() || c == '*' || (c == '\'' && !word.is_empty()) {
            word.push(c);
        } else {
            push_word(&mut word, &mut out);
        }
    }
    push_word(&mut word, &mut out);
    out
}

fn push_word(word: &mut String, out: &mut Vec<Word>) {
    let trimmed = word.trim_start_matches('*').trim_end_matches('\'');
    let censored = !trimmed.is_empty() && !word.starts_with('*') && is_censored(trimmed);
    if censored {
        out.push(Word::Censored);
    } else {
        let plain: String = trimmed.chars().filter(|&c| c != '*').collect();
        let plain = plain.trim_matches('\'');
        if !plain.is_empty() {
            out.push(Word::Plain(plain.to_owned()));
        }
    }
    word.clear();
}

/// "f*ck", "sh*t", "a**hole" (stars between letters) or "f***", "sh**" (a few letters and
/// two or more stars). "x**2" and a lone trailing star ("5*") are not.
fn is_censored(word: &str) -> bool {
    let chars: Vec<char> = word.chars().collect();
    if !chars.first().is_some_and(|c| c.is_alphabetic()) || !chars.contains(&'*') {
        return false;
    }
    let between_letters = chars
        .windows(2)
        .any(|w| w[0] == '*' && w[1].is_alphabetic());
    let letters = chars.iter().filter(|c| c.is_alphabetic()).count();
    let stars = chars.iter().filter(|&&c| c == '*').count();
    let trailing_stars = chars.last() == Some(&'*');
    between_letters || (trailing_stars && stars >= 2 && letters <= 3)
}

/// One lexicon: single words, and phrases indexed by their first word.
struct Lexicon {
    words: HashSet<&'static str>,
    phrases: HashMap<&'static str, Vec<(&'static str, Vec<&'static str>)>>,
}

impl Lexicon {
    fn new(lists: &[&'static str]) -> Self {
        let mut words = HashSet::new();
        let mut phrases: HashMap<&'static str, Vec<(&'static str, Vec<&'static str>)>> =
            HashMap::new();
        for list in lists {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let parts: Vec<&'static str> = item.split_whitespace().collect();
                if parts.len() == 1 {
                    words.insert(item);
                } else {
                    phrases.entry(parts[0]).or_default().push((item, parts));
                }
            }
        }
        for list in phrases.values_mut() {
            list.sort_by_key(|(_, parts)| std::cmp::Reverse(parts.len()));
        }
        Self { words, phrases }
    }

    /// The distinct entries in `words`. A match uses up its words, longest phrase first, so
    /// "ne marche pas" does not also count as "marche pas".
    fn hits(&self, words: &[Word]) -> HashSet<&'static str> {
        let mut found = HashSet::new();
        let mut i = 0;
        while i < words.len() {
            let Word::Plain(first) = &words[i] else {
                i += 1;
                continue;
            };
            let rest = &words[i..];
            let phrase = self.phrases.get(first.as_str()).and_then(|candidates| {
                candidates.iter().find(|(_, parts)| {
                    rest.len() >= parts.len() && parts.iter().zip(rest).all(|(p, w)| w == *p)
                })
            });
            if let Some((item, parts)) = phrase {
                found.insert(*item);
                i += parts.len();
            } else {
                if let Some(&w) = self.words.get(first.as_str()) {
                    found.insert(w);
                }
                i += 1;
            }
        }
        found
    }
}

struct Tables {
    negative: Lexicon,
    profanity: Lexicon,
    already_said: Lexicon,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| Tables {
    negative: Lexicon::new(NEGATIVE),
    profanity: Lexicon::new(PROFANITY),
    already_said: Lexicon::new(ALREADY_SAID),
});

/// Complaint words and phrases, folded, by language (en, es, fr, de, pt). Words with an
/// everyday calm use ("trash" can, "garbage" collection, "molesto" in "perdone que lo
/// moleste", "unmöglich") are left out.
const NEGATIVE: &[&str] = &[
    "useless, terrible, horrible, awful, ridiculous, worst, stupid, dumb, idiot, idiotic, \
     pathetic, unacceptable, annoying, annoyed, frustrated, frustrating, furious, angry, \
     disgusting, disgraceful, incompetent, scam, joke, unhelpful, not helpful, no help, \
     doesn't work, doesnt work, does not work, not working, isn't working, isnt working, \
     waste of time, fed up, sick of, sick and tired, hate, hopeless, nonsense, absurd, \
     outrageous, pointless, sucks, lousy, shameful, disaster, you don't understand, \
     you dont understand, you do not understand, makes no sense, never works",
    "inutil, inutiles, terrible, horrible, pesimo, pesima, ridiculo, ridicula, absurdo, \
     absurda, estupido, estupida, basura, no sirve, no sirves, no funciona, no ayuda, \
     no me ayuda, no ayudas, no entiendes, no me entiendes, harto, harta, verguenza, \
     vergonzoso, lamentable, idiota, enojado, enojada, enfadado, enfadada, furioso, furiosa, \
     estafa, porqueria, asco, indignante, inaceptable, incompetente, incompetentes, \
     perdida de tiempo, lo peor, desastre, desastroso",
    "nul, nulle, nuls, inutile, inutiles, lamentable, ridicule, pire, stupide, debile, \
     ne marche pas, marche pas, ne fonctionne pas, fonctionne pas, marre, ras le bol, \
     honteux, honte, inadmissible, inacceptable, scandaleux, scandale, arnaque, enerve, \
     enervee, enervant, agace, agacee, agacant, n'importe quoi, sert a rien, servez a rien, \
     perte de temps, comprends rien, comprenez rien, vous ne comprenez pas, \
     tu ne comprends pas, catastrophique, pitoyable, insupportable, incompetents",
    "nutzlos, schrecklich, furchtbar, lacherlich, schlimmste, schlechteste, dumm, doof, blod, \
     blode, bloder, funktioniert nicht, geht nicht, klappt nicht, unverschamt, inakzeptabel, \
     frechheit, keine hilfe, hilft nicht, hilfst nicht, sinnlos, katastrophe, katastrophal, \
     argerlich, wutend, sauer, genervt, nervt, nervig, mies, unfahig, betrug, abzocke, \
     zeitverschwendung, verstehst nicht, verstehst du nicht, saftladen",
    "inuteis, pessimo, pessima, horrivel, nao funciona, nao serve, nao ajuda, nao entende, \
     nao me entende, lixo, vergonha, palhacada, saco cheio, irritado, irritada, pior, \
     perda de tempo, porcaria, raiva, revoltado, revoltada, descaso, que saco, cansei, \
     desgraca",
];

/// Swear words, folded, by language. Only words that are swearing in every use: "con"
/// (French for idiot, Spanish for "with") and "droga" (Portuguese "damn", Spanish "drug")
/// are left out.
const PROFANITY: &[&str] = &[
    "fuck, fucking, fucked, fucker, fuckers, fuckin, fck, fcking, fk, fuk, fuking, \
     motherfucker, shit, shitty, bullshit, shite, damn, dammit, damnit, goddamn, goddamnit, \
     crap, crappy, wtf, ffs, stfu, omfg, asshole, arsehole, bitch, bastard, piss, pissed, \
     bloody, the hell, screw you, screw this",
    "mierda, joder, jodido, jodida, carajo, puta, puto, putada, cabron, cabrona, pendejo, \
     pendeja, chingado, chingada, chingar, verga, hostia, hostias, me cago, gilipollas, \
     cojones, hdp, ctm",
    "merde, merdique, putain, ptn, bordel, connard, connasse, connerie, conneries, chier, \
     encule, salaud, salope, fdp, ta gueule, foutre, je m'en fous",
    "scheisse, scheiss, scheissdreck, mist, verdammt, verdammte, verdammter, verdammtes, \
     arschloch, kacke, fick, ficken, verfickt, verfickte, leck mich, verarschen, verarscht",
    "porra, merda, caralho, krl, crl, foda, fodase, foder, fodido, fodida, cacete, pqp, vsf, \
     bosta",
];

/// Saying it was said before, folded, by language. "How many times" alone is a calm question
/// ("how many times can I change my plan?"), so only its exasperated forms are listed.
const ALREADY_SAID: &[&str] = &[
    "already told, already said, already gave, already explained, already asked, \
     already sent, already provided, already answered, i told you, told you already, \
     as i said, like i said, i said that, how many times do, how many times have, \
     how many times must, how many more times, for the third time, for the second time, \
     again and again, keep asking, keep repeating, repeat myself, repeating myself, \
     you keep saying, you keep asking",
    "ya te dije, ya le dije, ya lo dije, ya dije, ya te lo dije, ya se lo dije, \
     ya lo he dicho, ya te he dicho, ya le he dicho, ya explique, ya te di, ya le di, \
     ya envie, cuantas veces tengo, cuantas veces te, cuantas veces le, cuantas veces lo, \
     como ya dije, como te dije, como le dije, te lo repito, otra vez lo mismo, \
     por tercera vez, por segunda vez",
    "deja dit, deja donne, deja explique, deja envoye, deja repondu, deja fourni, \
     je vous ai dit, je t'ai dit, je vous l'ai dit, je te l'ai dit, comme je l'ai dit, \
     comme je vous l'ai dit, combien de fois je, combien de fois faut, combien de fois dois, \
     combien de fois vais, je repete, pour la troisieme fois, pour la deuxieme fois, \
     toujours la meme chose",
    "schon gesagt, bereits gesagt, schon mal gesagt, schon erklart, bereits erklart, \
     schon geschrieben, bereits geschrieben, schon gegeben, bereits mitgeteilt, \
     schon mitgeteilt, wie oft noch, wie oft denn, wie oft muss ich, wie oft soll ich, \
     zum dritten mal, zum zweiten mal, ich wiederhole, habe ich doch, hab ich doch, \
     sagte ich doch, schon wieder",
    "ja disse, ja falei, ja te disse, ja lhe disse, ja expliquei, ja mandei, ja enviei, \
     ja passei, ja informei, quantas vezes vou, quantas vezes tenho, quantas vezes eu, \
     quantas vezes preciso, como eu disse, como ja disse, de novo isso, pela terceira vez, \
     pela segunda vez, to repetindo, estou repetindo",
];

#[cfg(test)]
mod tests {
    use super::*;

    const CALM: &[&str] = &[
        "Hi, where is my order? It was supposed to arrive yesterday.",
        "Thanks, could you also tell me how to change my delivery address?",
        "Hola, ¿dónde está mi pedido? Debía llegar ayer.",
        "Gracias, ¿me puede decir cómo cambio la dirección de entrega?",
        "Bonjour, où en est ma commande ? Elle devait arriver hier.",
        "Merci, pouvez-vous me dire comment changer mon adresse de livraison ?",
        "Hallo, wo ist meine Bestellung? Sie sollte gestern ankommen.",
        "Danke, können Sie mir sagen, wie ich meine Lieferadresse ändere?",
        "Olá, onde está meu pedido? Era para chegar ontem.",
        "Obrigado, pode me dizer como mudo o endereço de entrega?",
        "My order number is ABC12345 and I live in the USA, OK?",
        "How many times can I change my plan per month?",
    ];

    const ANGRY: &[&str] = &[
        "THIS IS USELESS!!! I already told you my order number",
        "this fucking bot is useless",
        "Esto es una mierda, el bot es inútil!!!",
        "¡¡¡Ya te dije que NO FUNCIONA!!!",
        "C'est nul, ça ne marche pas !!! Putain",
        "Je vous l'ai déjà dit, c'est n'importe quoi",
        "Das ist echt Scheiße, der Bot ist nutzlos!!!",
        "WARUM FUNKTIONIERT DAS NICHT??? Ich habe es schon gesagt",
        "Que porra, esse atendimento é péssimo!!!",
        "JÁ FALEI MIL VEZES, NÃO FUNCIONA",
    ];

    #[test]
    fn calm_messages_in_every_language_stay_below_the_threshold() {
        for &message in CALM {
            let f = score(&[message]);
            assert!(f.score < 0.2, "{message:?} scored {f:?}");
            assert!(!f.exceeds(DEFAULT_THRESHOLD));
        }
        let conversation: Vec<&str> = CALM.to_vec();
        let f = score(&conversation);
        assert!(f.score < 0.2, "the calm conversation scored {f:?}");
    }

    #[test]
    fn angry_messages_in_every_language_go_above_the_threshold() {
        for &message in ANGRY {
            let f = score(&[message]);
            assert!(f.exceeds(DEFAULT_THRESHOLD), "{message:?} scored {f:?}");
        }
    }

    #[test]
    fn the_issue_example_scores_at_least_seven_tenths() {
        let f = score(&["THIS IS USELESS!!! I already told you my order number"]);
        assert!(f.score >= 0.7, "{f:?}");
        for s in [
            Signal::NegativeWords,
            Signal::AllCaps,
            Signal::RepeatedPunctuation,
            Signal::AlreadySaid,
        ] {
            assert!(f.signals.contains(&s), "{s} missing from {f:?}");
        }
    }

    /// Only `signal`, and from one message nothing reaches the threshold.
    fn assert_only(message: &str, signal: Signal) {
        let f = score(&[message]);
        assert_eq!(f.signals, [signal], "{message:?}: {f:?}");
        assert!(
            f.score > 0.0 && f.score < DEFAULT_THRESHOLD,
            "{message:?}: {f:?}"
        );
    }

    #[test]
    fn negative_words_are_detected_on_their_own() {
        assert_only("this bot is useless", Signal::NegativeWords);
        assert_only("es inútil", Signal::NegativeWords);
        assert_only("c'est nul", Signal::NegativeWords);
        assert_only("völlig nutzlos", Signal::NegativeWords);
        assert_only("atendimento péssimo", Signal::NegativeWords);
        assert_only("it doesn't work", Signal::NegativeWords);
        assert_only("not helpful at all 👎", Signal::NegativeWords);
        assert_eq!(
            FrustrationSignals::detect("useless and stupid").negative_words,
            2
        );
        assert_eq!(
            FrustrationSignals::detect("useless, useless").negative_words,
            1
        );
        // "ça ne marche pas" is one complaint, not "ne marche pas" and "marche pas".
        assert_eq!(
            FrustrationSignals::detect("ça ne marche pas").negative_words,
            1
        );
        assert_eq!(
            FrustrationSignals::detect("ça marche pas").negative_words,
            1
        );
    }

    #[test]
    fn profanity_is_detected_on_its_own_as_whole_words() {
        for message in [
            "damn, I forgot my password",
            "wtf",
            "what the f*ck",
            "sh** happens",
            "mierda",
            "merde alors",
            "so eine Scheiße",
            "Scheiße!",
            "porra",
            "🤬",
        ] {
            assert_only(message, Signal::Profanity);
        }
        for message in [
            "scrap the shipment",
            "Hancock",
            "I passed the class",
            "**bold**",
        ] {
            assert_eq!(
                FrustrationSignals::detect(message).profanity,
                0,
                "{message:?}"
            );
        }
    }

    #[test]
    fn all_caps_is_detected_on_its_own_and_acronyms_are_not() {
        assert_only("WHERE IS MY ORDER", Signal::AllCaps);
        assert_only("I NEED HELP", Signal::AllCaps);
        assert_only("PLEASE HELP me with this", Signal::AllCaps);
        for message in [
            "OK",
            "USA",
            "I live in the USA",
            "OK USA FBI",
            "My code is ABCD1234EFGH",
            "Straße",
            "我的订单在哪里",
            "Please CALL me",
        ] {
            assert!(!FrustrationSignals::detect(message).all_caps, "{message:?}");
        }
    }

    #[test]
    fn repeated_punctuation_is_detected_on_its_own() {
        for message in [
            "where is my order???",
            "seriously?!?!",
            "help!!!",
            "¿¿¿dónde???",
        ] {
            assert_only(message, Signal::RepeatedPunctuation);
        }
        for message in ["really?!", "wow!!", "wait... what?", "! ! !"] {
            assert!(
                !FrustrationSignals::detect(message).repeated_punctuation,
                "{message:?}"
            );
        }
    }

    #[test]
    fn already_said_is_detected_on_its_own() {
        for message in [
            "I already told you my order number",
            "ya te dije mi número de pedido",
            "je vous l'ai déjà dit",
            "das habe ich schon gesagt",
            "já falei o número do pedido",
        ] {
            assert_only(message, Signal::AlreadySaid);
        }
    }

    #[test]
    fn the_same_question_asked_three_times_scores_at_least_one_half() {
        let q = "Where is my order?";
        let f = score(&[q, q, q]);
        assert!(f.score >= 0.5, "{f:?}");
        assert_eq!(f.signals, [Signal::RepeatedQuestion]);
        let twice = score(&[q, q]);
        assert_eq!(twice.signals, [Signal::RepeatedQuestion]);
        assert!(twice.score < f.score);
    }

    #[test]
    fn near_identical_questions_count_as_repeats_and_short_or_different_ones_do_not() {
        let near = score(&[
            "how do I reset my password please",
            "How do I reset my password",
        ]);
        assert_eq!(near.signals, [Signal::RepeatedQuestion], "{near:?}");
        for pair in [
            ["yes", "yes"],
            ["ok", "OK"],
            ["where is my order", "how do I return my order"],
            ["", ""],
        ] {
            let f = score(&pair);
            assert!(
                !f.signals.contains(&Signal::RepeatedQuestion),
                "{pair:?}: {f:?}"
            );
        }
    }

    #[test]
    fn an_old_angry_message_decays_below_the_threshold() {
        let angry = "THIS IS USELESS!!! I already told you my order number";
        let calm = "ok, the number is 12345";
        let calm2 = "thanks, what happens next?";
        assert!(score(&[calm, calm2, angry]).exceeds(DEFAULT_THRESHOLD));
        let later = score(&[angry, calm, calm2]);
        assert!(!later.exceeds(DEFAULT_THRESHOLD), "{later:?}");
        assert!(
            later.score > 0.0,
            "an old angry message still counts a little"
        );
        // Each step back counts less.
        let one = score(&[angry, calm]).score;
        let two = later.score;
        assert!(one > two, "{one} > {two}");
    }

    #[test]
    fn the_latest_message_weighs_most() {
        let mild = "this is useless";
        let calm = "where is my order";
        assert!(score(&[calm, mild]).score > score(&[mild, calm]).score);
    }

    #[test]
    fn annoyance_builds_up_over_messages() {
        let f = score(&["this is useless", "it doesn't work", "terrible service"]);
        assert!(f.exceeds(DEFAULT_THRESHOLD), "{f:?}");
    }

    #[test]
    fn the_score_stays_within_zero_and_one() {
        let furious = "FUCK THIS USELESS SHIT!!! I ALREADY TOLD YOU 😡🤬";
        let many = vec![furious; 50];
        let f = score(&many);
        assert!((0.0..=1.0).contains(&f.score), "{f:?}");
        assert_eq!(f.score, 1.0);
        assert_eq!(score(&[]).score, 0.0);
        assert!(score(&[]).signals.is_empty());
    }

    #[test]
    fn signals_are_named_for_the_handoff_reason() {
        let names: HashSet<&str> = Signal::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), Signal::ALL.len());
        assert_eq!(Signal::NegativeWords.as_str(), "negative_words");
        assert_eq!(Signal::RepeatedQuestion.to_string(), "repeated_question");
        let f = score(&["useless!!!"]);
        assert_eq!(f.reason(), "negative_words,repeated_punctuation");
    }

    #[test]
    fn every_lexicon_entry_is_already_folded() {
        for list in NEGATIVE.iter().chain(PROFANITY).chain(ALREADY_SAID) {
            for item in list.split(',').map(str::trim) {
                assert_eq!(fold(item), item, "{item:?} is not folded");
            }
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let long = "where is my order ".repeat(6_000);
        let shouting = "A".repeat(100_000);
        let bangs = "!".repeat(100_000);
        let stars = "*".repeat(10_000);
        let inputs: Vec<&str> = vec![
            "",
            " ",
            "'",
            "*",
            "**",
            "f*",
            "*f",
            "'*'",
            "\u{0}",
            "\u{301}\u{301}",
            "🤬🤬",
            "ﬁ ß ẞ İ",
            "ǅ ǈ ǋ",
            "𝐀𝐁𝐂𝐃𝐄𝐅𝐆𝐇",
            long.as_str(),
            shouting.as_str(),
            bangs.as_str(),
            stars.as_str(),
        ];
        for message in &inputs {
            let f = score(&[message]);
            assert!((0.0..=1.0).contains(&f.score));
            let _ = FrustrationSignals::detect(message);
        }
        let f = score(&inputs);
        assert!((0.0..=1.0).contains(&f.score));
        let started = std::time::Instant::now();
        let _ = score(&[long.as_str(); 4]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}

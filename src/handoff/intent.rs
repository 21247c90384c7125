//! Does the customer ask for a person? Word-class matching over folded text, in English,
//! Spanish, French, German and Portuguese.
//!
//! # Approach
//!
//! The text is *folded* ([`fold`]: compatibility decomposition, accents dropped, lower case,
//! `ß` → `ss`, typographic apostrophes → `'`) and cut into *clauses* at punctuation and at
//! "but"-like conjunctions, then into words. French elisions are split (`l'agent` → `l`,
//! `agent`). Each word is looked up in one static table that gives it a class:
//!
//! - **person**: a word naming someone of the company or a human (`agent`, `human`,
//!   `representative`, `asesor`, `conseiller`, `Mitarbeiter`, `atendente`, ...); multi-word
//!   names (`customer service`, `atención al cliente`, `service client`) are joined into one
//!   person word first;
//! - **someone**: a word for anyone at all (`someone`, `a person`, `alguien`, `quelqu'un`,
//!   `jemand`, `pessoa`, ...);
//! - **cue**: a word for talking to or reaching someone (`talk`, `transfer`, `is there`,
//!   `hablar`, `parler`, `sprechen`, `falar`, ...);
//! - **want**: a word for wanting (`want`, `need`, `get`, `quiero`, `besoin`, `möchte`,
//!   `quero`, ...);
//! - **filler**: a word that may stand between a cue and a person without changing what is
//!   asked (articles, prepositions, `please`, `real`, `live`, `bitte`, `svp`, `por favor`,
//!   `me`, `can`, ...); a subject pronoun (`I`, `yo`, `je`, `ich`, `eu`) is a filler too;
//! - **negator** (`not`, `don't`, `no`, `pas`, `nicht`, `kein`, `não`, ...).
//!
//! A person word counts as a request when, inside its clause, either
//!
//! 1. walking back from it over words of these classes reaches a cue (or, for a person word,
//!    a want), and the word where that walk stops is not a negator ("I want to **talk** to a
//!    real *person*", "ich **möchte** mit einem *Mitarbeiter* sprechen"); a negator in front
//!    of a subject pronoun belongs to something else ("no I want a human"). "I **need**
//!    *someone* to sign for the parcel" is not a request: needing someone is not asking to
//!    talk to them; or
//! 2. the whole clause is made of such words ("*agent*!!!", "*human* please",
//!    "mit einem *Menschen* reden", "*atendente humano*", "a real *person* I can talk to").
//!
//! This is why "I am not a robot", "I'm human", "someone stole my card", "my travel agent
//! booked it" and "the operator of the website" do not fire: a word outside the classes
//! ("am", "stole", "my", "travel", "of") stands in the way. A few follower words undo a
//! person word: "user agent *string*", "*human* resources", "representative *sample*",
//! "agente *de viajes*", "customer service *number*".
//!
//! **Questions about the bot are not requests**: "are you a human?", "is this a real
//! person?", "am I talking to a human?", "¿eres humano?", "bist du ein Mensch?" do not fire,
//! because "you", "this", "talking", "eres" and "bist" are not fillers. The bot should answer
//! them (honestly) and the customer can then ask for a person.
//!
//! Misspellings: besides explicit variants ("hooman", "costumer", "quelquun"), a word that is
//! not in the table is compared with the common person words (and `customer`, `service`,
//! `support`) by optimal-string-alignment distance: up to 1 edit for keywords of 5 to 8
//! letters, 2 for 9 letters or more, none for shorter ones ("rep"), and only if the
//! first letter agrees or the first two are swapped ("gaent"), so "urgent" and "gente" are
//! never "agent" and "agente". Real words that still sit that close to a keyword ("argent",
//! "humane", "perdón", "pessoal", "representation", "mitarbeiten") are listed in
//! `NOT_TYPOS` and never count; the list was made by running every word of the English,
//! Spanish, French, German and Portuguese word lists of Debian's `wamerican`, `wspanish`,
//! `wfrench`, `wngerman`, `wportuguese` and `wbrazilian` through the matcher.
//!
//! Everything is a static table built once ([`LazyLock`]); a call is linear in the length
//! of the text, and no input makes it panic.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lower-cased words, punctuation dropped, apostrophes kept inside words.
///
/// Accents are kept (this is what the FAQ bot matches its keywords on); typographic
/// apostrophes count as `'`. See [`fold`] for the accent-free form the matcher uses.
pub fn normalize(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || is_apostrophe(c)))
        .map(|w| {
            w.chars()
                .map(|c| if is_apostrophe(c) { '\'' } else { c })
                .collect::<String>()
                .trim_matches('\'')
                .to_lowercase()
        })
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

/// Whether the text asks for a person. Same as `human_request(text).is_some()`.
pub fn asks_for_human(text: &str) -> bool {
    human_request(text).is_some()
}

/// The language of the first request for a person in the text, if there is one.
///
/// The language is the one most of the request's words belong to, the person word counting
/// double ("un agent svp" is French, "agent" alone English, "agente" alone Spanish: words
/// shared by several languages go to the first of En, Es, Fr, De, Pt). Use it to pick a
/// language queue, not as a language detector for the whole message.
pub fn human_request(text: &str) -> Option<Language> {
    let clauses = split_clauses(text);
    let only_clause = clauses.len() == 1;
    clauses
        .iter()
        .find_map(|words| clause_request(&classify(words), only_clause))
}

/// Text folded for matching: compatibility-decomposed (so full-width letters and ligatures
/// become plain letters), accents and other combining marks dropped, lower-cased, with
/// `ß` → `ss`, `œ` → `oe`, `æ` → `ae`, `ø` → `o` and typographic apostrophes → `'`.
///
/// "Parler à un CONSEILLER" and "parler a un conseiller" fold to the same text.
pub fn fold(text: &str) -> String {
    if text.is_ascii() {
        // Decomposition leaves ASCII alone; most messages are ASCII and skip it.
        return text
            .bytes()
            .map(|b| match b {
                b'`' => '\'',
                b => char::from(b.to_ascii_lowercase()),
            })
            .collect();
    }
    folded_chars(text).collect()
}

/// A language the matcher knows words of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// English.
    En,
    /// Spanish.
    Es,
    /// French.
    Fr,
    /// German.
    De,
    /// Portuguese.
    Pt,
}

impl Language {
    /// All languages, in the order ties are broken.
    pub const ALL: [Language; 5] = [
        Language::En,
        Language::Es,
        Language::Fr,
        Language::De,
        Language::Pt,
    ];

    /// The ISO 639-1 code: "en", "es", "fr", "de", "pt".
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
            Language::Fr => "fr",
            Language::De => "de",
            Language::Pt => "pt",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Language::En => EN,
            Language::Es => ES,
            Language::Fr => FR,
            Language::De => DE,
            Language::Pt => PT,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const EN: u8 = 1;
const ES: u8 = 2;
const FR: u8 = 4;
const DE: u8 = 8;
const PT: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    // Ordered by precedence: when two languages give one spelling two roles, the later wins.
    Filler,
    Subject,
    Want,
    Cue,
    Negator,
    Someone,
    Person,
}

impl Role {
    fn is_person(self) -> bool {
        matches!(self, Role::Person | Role::Someone)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    canon: &'static str,
    role: Role,
    langs: u8,
}

/// The lexicon: (role, languages, comma-separated folded words or phrases).
const LEXICON: &[(Role, u8, &str)] = &[
    // Who the customer asks for by name: a person of the company, or a human.
    (
        Role::Person,
        EN,
        "human, humans, representative, representatives, rep, reps, operator, operators, \
         advisor, advisors, adviser, customer service, customer services, customer support, \
         customer care, support team, support staff, staff member, help desk, helpdesk, \
         service desk, live chat, live support, live help, human being, human beings",
    ),
    (Role::Person, EN | FR, "agent, agents"),
    (Role::Person, EN | DE | FR, "manager"),
    (Role::Person, EN | ES | PT, "supervisor"),
    (
        Role::Person,
        ES,
        "asesor, asesora, asesores, ejecutivo, ejecutiva, encargado, encargada, \
         servicio al cliente, servicio a clientes, atencion al cliente, atencion a clientes, \
         atencion al usuario",
    ),
    (
        Role::Person,
        ES | PT,
        "agente, agentes, humano, humanos, humana, humanas, operador, operadora, operadores, \
         representante, representantes, gerente, supervisora, ser humano, seres humanos",
    ),
    (
        Role::Person,
        FR,
        "humain, humains, humaine, humaines, conseiller, conseillere, conseillers, \
         conseilleres, operateur, operatrice, operateurs, representant, representante, \
         interlocuteur, interlocutrice, service client, service clients, service clientele, \
         service apres vente, support client, etre humain, etres humains",
    ),
    (Role::Person, FR | ES, "responsable"),
    (
        Role::Person,
        DE,
        "mensch, menschen, mitarbeiter, mitarbeiterin, mitarbeitern, mitarbeitende, \
         mitarbeitenden, servicemitarbeiter, berater, beraterin, kundenberater, \
         kundenberaterin, ansprechpartner, ansprechpartnerin, sachbearbeiter, \
         sachbearbeiterin, kundenservice, kundendienst, kundensupport, kundenbetreuung, \
         kundenbetreuer, kunden service, agenten",
    ),
    (
        Role::Person,
        PT,
        "atendente, atendentes, atendimento ao cliente, atendimento ao consumidor, \
         central de atendimento",
    ),
    // Anyone at all: asked for only with a word for talking ("talk to someone") or alone
    // ("someone please"), since "I need someone to sign for the parcel" asks for no agent.
    (
        Role::Someone,
        EN,
        "persons, people, someone, somebody, anyone, anybody, staff, employee, employees, \
         specialist",
    ),
    (Role::Someone, EN | DE, "person"),
    (Role::Someone, EN | FR, "consultant"),
    (
        Role::Someone,
        ES,
        "persona, personas, alguien, empleado, empleada",
    ),
    (Role::Someone, ES | PT, "especialista"),
    (Role::Someone, FR, "personne, quelqu'un"),
    (Role::Someone, DE, "jemand, jemanden, jemandem, personen"),
    (
        Role::Someone,
        PT,
        "pessoa, pessoas, alguem, consultor, consultora, funcionario, funcionaria",
    ),
    // Words for talking to, or reaching, someone.
    (
        Role::Cue,
        EN,
        "talk, speak, chat, connect, transfer, escalate, forward, redirect, route, pass, hand, \
         put, switch, reach, get, is there, are there, isn't there, isnt there",
    ),
    (
        Role::Cue,
        ES,
        "hablar, comunicarme, comunicar, contactar, chatear, pasame, pasar, pase, paseme, \
         pasen, pasas, pasa, comunicame, comuniqueme, transfiere, transfiereme, transfierame, \
         conectame, conecteme, llame, atienda, atiende, atender, hay, ponme, ponerme",
    ),
    (Role::Cue, ES | PT, "conversar, transferir"),
    (
        Role::Cue,
        FR,
        "parler, discuter, echanger, joindre, contacter, passer, passez, transferer, \
         transferez, relation, y a t il",
    ),
    (
        Role::Cue,
        DE,
        "verbinden, verbinde, verbindet, sprechen, reden, chatten, schreiben, durchstellen, \
         weiterleiten, weiterverbinden, erreiche, erreichen, kontaktieren, gibt es",
    ),
    (
        Role::Cue,
        PT,
        "falar, chama, chamar, chame, transfere, transfira, passa, passe, encaminha, \
         encaminhar, encaminhe, contato, contatar, tem",
    ),
    // Words for wanting: enough for an agent ("I want an agent"), not for anyone.
    (
        Role::Want,
        EN,
        "give, gimme, lemme, let, bring, want, wanna, need, needs, prefer, rather, \
         request, requesting, ask, asking, asked, demand, wait, waiting, where, i'd, i'd like, \
         would like, id like",
    ),
    (
        Role::Want,
        ES,
        "quiero, quisiera, queria, necesito, necesita, deseo, desearia, busco, dame, deme",
    ),
    (Role::Want, ES | PT, "gustaria"),
    (
        Role::Want,
        FR,
        "veux, voudrais, voudrai, souhaite, souhaiterais, souhaiterai, aimerais, aimerai, \
         besoin, avoir, demande, demander, exige, attends",
    ),
    (
        Role::Want,
        DE,
        "mochte, mochten, will, wollen, brauche, brauchen, benotige, hatte, gib, geben, hol, \
         holen, wunsche",
    ),
    (
        Role::Want,
        PT,
        "quero, queria, gostaria, preciso, precisava, desejo, cade, manda",
    ),
    // Subject pronouns: fillers, but a negator before one negates something else.
    (Role::Subject, EN, "i"),
    (Role::Subject, ES, "yo"),
    (Role::Subject, FR, "je, j"),
    (Role::Subject, DE, "ich"),
    (Role::Subject, PT, "eu"),
    // Negators.
    (
        Role::Negator,
        EN,
        "not, don't, dont, doesn't, doesnt, didn't, didnt, won't, wont, never, without, \
         nobody, none, neither, nor, no one",
    ),
    (Role::Negator, EN | ES, "no"),
    (
        Role::Negator,
        ES,
        "nunca, sin, ni, tampoco, ningun, ninguna, ninguno, nadie",
    ),
    (Role::Negator, FR | PT, "jamais, n"),
    (
        Role::Negator,
        FR,
        "ne, pas, sans, aucun, aucune, plus, rien",
    ),
    (
        Role::Negator,
        DE,
        "nicht, nichts, kein, keine, keinen, keinem, keiner, keines, nie, niemals, ohne, \
         weder, niemand, niemanden, niemandem",
    ),
    (
        Role::Negator,
        PT,
        "nao, naum, sem, nem, nenhum, nenhuma, ninguem",
    ),
    // Fillers.
    (
        Role::Filler,
        EN,
        "a, an, the, some, any, one, another, your, ur, to, with, for, from, through, over, in \
         touch, me, us, can, could, may, might, would, can't, cant, cannot, couldn't, please, \
         pls, plz, plez, pleas, pleaze, plse, plss, kindly, now, right, away, asap, \
         immediately, directly, straight, quickly, fast, soon, today, just, only, really, \
         actually, seriously, real, actual, live, living, proper, true, genuine, qualified, \
         competent, friendly, customer, service, support, team, help, assist, else, there, \
         here, available, online, around, is, are, hi, hello, hey, yo, ok, okay, yes, yeah, \
         yep, yup, so, oh, um, uh, hmm, well, again, already, still, thanks, thank you, thx, \
         ty, sir, madam, maam, dear, have, be, call, contact, find, connected, transferred, \
         forwarded, escalated, passed, right now",
    ),
    (
        Role::Filler,
        ES,
        "una, uno, unos, unas, el, los, las, lo, algun, alguna, algunos, otro, otra, con, al, del, \
         para, por, porfa, porfavor, xfa, xfavor, pf, plis, que, ahora, ya, rapido, pronto, \
         urgente, real, reales, verdadero, verdadera, verdad, hola, buenas, buenos, dias, \
         tardes, noches, gracias, si, favor, puedo, podria, podrias, puede, pueden, puedes, su, \
         sus, servicio, atencion, cliente, clientes, soporte, disponible, disponibles, alli, \
         ahi, aqui, contacto, en, ayude, ayuda, ayudar, ayudarme, ahora mismo",
    ),
    (Role::Filler, ES | FR, "un, la"),
    (Role::Filler, ES | FR | PT, "de"),
    (
        Role::Filler,
        FR,
        "une, le, les, l, des, du, d, a, au, aux, avec, pour, par, moi, m, votre, vos, svp, stp, \
         merci, maintenant, vite, rapidement, vrai, vraie, vrais, vraies, veritable, reel, \
         reelle, bonjour, bonsoir, salut, oui, puis, peux, pourrais, pouvez, pourriez, peut, qu, \
         client, clients, clientele, disponible, disponibles, ici, autre, etre, aider, rappele, \
         rappelee, rappeler, rappelez, s il vous plait, \
         s il te plait, tout de suite",
    ),
    (
        Role::Filler,
        DE,
        "ein, eine, einen, einem, einer, eines, den, dem, der, die, mit, zu, zum, zur, an, fur, \
         mich, mir, uns, bitte, danke, jetzt, sofort, gleich, schnell, mal, doch, einfach, \
         endlich, gerne, gern, hallo, ja, kann, konnte, konnten, darf, wurde, wurden, echten, \
         echte, echter, echtem, echtes, richtigen, richtige, richtiger, richtigem, lebenden, \
         menschlichen, menschliche, menschlicher, menschlichem, anderen, andere, anderem, \
         ihrer, ihrem, ihren, ihr, sie, auch, helfen, hilft, support, service, da, hier, ist, \
         verfugbar, erreichbar, online",
    ),
    (
        Role::Filler,
        PT,
        "um, uma, uns, umas, o, a, os, as, ao, aos, com, do, da, para, pra, pro, por, favor, \
         pfv, pf, pfvr, porfavor, me, mim, agora, ja, rapido, logo, ai, ali, aqui, oi, ola, \
         bom, dia, boa, tarde, noite, obrigado, obrigada, sim, ok, posso, poderia, pode, podem, \
         real, verdadeiro, verdadeira, verdade, atendimento, suporte, cliente, clientes, seu, \
         sua, algum, alguma, outro, outra, disponivel, online, que, servico, ajudar, ajude, \
         ajuda",
    ),
];

/// Misspellings and spellings without apostrophe: (canonical word, comma-separated variants).
const VARIANTS: &[(&str, &str)] = &[
    ("human", "hooman, hoomans, hoomen, humen, hmn, hman, huma"),
    ("agent", "agnt, agant, ajent, agentt"),
    ("agente", "ajente, ajentes"),
    ("someone", "some1, sum1, someome, somone"),
    ("somebody", "smbdy"),
    ("anyone", "any1, ne1"),
    (
        "representative",
        "repr, represntative, representitive, representive",
    ),
    ("operator", "oprator, operater"),
    ("customer", "costumer, custumer, costomer, cust"),
    ("people", "ppl"),
    ("person", "prsn, persn"),
    ("talk", "tlak, takl, tallk, tak"),
    ("speak", "speek, spek, spk, speack, speal"),
    ("want", "wnat, whant, wnt"),
    ("wanna", "wana, wnna, wanan"),
    ("need", "nede, nedd"),
    ("please", "pleas, pleae, plox, pleasee"),
    ("don't", "dnt, do'nt"),
    ("i'd", "i'de"),
    ("quelqu'un", "quelquun, qqn, qqun, qq1, quelqun, quelq'un"),
    ("alguien", "alguin, algien, alguen"),
    ("alguem", "algm, aguem"),
    ("mensch", "mench, mensh"),
    ("menschen", "menchen, menshen, mensche"),
    ("jemanden", "jmd, jmdn, jemmanden"),
    ("jemandem", "jmdm, jemmandem"),
    ("mitarbeiter", "mitarbieter, mitarbeier, mitarbeitr"),
    ("mochte", "moechte, mogte, moechten"),
    ("benotige", "benoetige"),
    ("wunsche", "wuensche"),
    ("fur", "fuer"),
    ("konnte", "koennte"),
    ("verfugbar", "verfuegbar"),
    ("nao", "naoo"),
    ("voudrais", "voudrait, voudrez"),
    ("veux", "veut, veus, vx"),
];

/// The words a misspelling is compared with: the person words customers actually type, and
/// the parts of "customer service". Other person words ("encargado", "consultant",
/// "supervisor") have too many real neighbours ("encarnado", "constant", "supervise") to
/// guess at, so they match only as spelled or as listed in [`VARIANTS`].
const FUZZY_KEYWORDS: &str = "agent, agents, human, humans, person, people, someone, somebody, \
     anyone, anybody, representative, operator, customer, service, support, agente, humano, \
     persona, alguien, asesor, operador, representante, humain, conseiller, conseillere, \
     operateur, representant, interlocuteur, mensch, menschen, mitarbeiter, berater, \
     kundenberater, ansprechpartner, jemand, jemanden, jemandem, kundenservice, \
     kundendienst, atendente, pessoa, alguem";

/// Real words within the fuzzy distance of a keyword: these never count as a misspelling.
///
/// Found by running the English, Spanish, French, German and Portuguese word lists through
/// the fuzzy matcher; kept to the words a customer could write.
const NOT_TYPOS: &str = "\
     agence, agende, agenden, agendent, agendes, aguente, aient, aluguem, argent, argente, \
     argents, atendendo, atendesse, atendeste, atente, attendent, beater, berate, berated, \
     beraten, beratet, conseilla, conseille, conseillent, conseillera, conseilles, \
     conseillez, humane, mitarbeit, mitarbeite, mitarbeiten, mitarbeitest, mitarbeitet, \
     mitarbeitete, operado, operados, operate, operated, operates, parson, perdon, \
     perdona, perdone, perdones, persan, personal, pessoal, peuple, representa, \
     representable, representada, representado, representai, representaient, representais, \
     representait, representam, representando, representar, representara, representas, \
     representasse, representaste, representat, representatif, representatifs, \
     representation, representativa, representativas, representativite, representativo, \
     representativos, representava, representent, representing, representons";

/// Words that, right after a person word, show it names something else.
const FOLLOWERS: &str = "\
     number, numbers, phone, email, mail, hours, address, id, ids, string, strings, \
     header, headers, error, errors, resources, rights, nature, race, trafficking, sample, \
     samples, precedence, overloading, overload, orange, smith, license, licence, \
     software, account, login, portal, numero, nummer, telefone, telefono, telephone, \
     horario, horarios, horaires, adresse, direccion, endereco, immobilier, inmobiliario, \
     imobiliario, de viajes, de viaje, de viagens, de viagem, de seguros, de voyage, \
     de voyages, de police, de policia, de transito, de trafico, de bolsa";

/// Conjunctions that start a new clause: "I don't want the bot but a human".
const CLAUSE_WORDS: &[&str] = &["but", "pero", "mais", "aber", "mas", "sondern", "however"];

/// French elided articles and pronouns, split from the word they lean on.
const ELISIONS: &[&str] = &["l", "d", "j", "m", "t", "s", "n", "c", "qu"];

/// A person word that is also an everyday exclamation ("Mensch, das nervt!"): alone in its
/// clause it counts only when the message has no other clause.
const INTERJECTIONS: &[&str] = &["mensch"];

struct Tables {
    words: HashMap<&'static str, Entry>,
    /// Multi-word entries by first word, longest first.
    phrases: HashMap<&'static str, Vec<(Vec<&'static str>, Entry)>>,
    /// Fuzzy keywords by first letter: (letters, entry, allowed edits).
    fuzzy: HashMap<char, Vec<(Vec<char>, Entry, usize)>>,
    not_typos: HashSet<&'static str>,
    followers: HashSet<&'static str>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(build_tables);

fn build_tables() -> Tables {
    let mut words: HashMap<&'static str, Entry> = HashMap::new();
    let mut phrases: HashMap<&'static str, Vec<(Vec<&'static str>, Entry)>> = HashMap::new();
    for &(role, langs, list) in LEXICON {
        for item in items(list) {
            let parts: Vec<&'static str> = item.split_whitespace().collect();
            if parts.len() == 1 {
                merge(&mut words, item, role, langs);
            } else {
                let entry = Entry {
                    canon: item,
                    role,
                    langs,
                };
                phrases.entry(parts[0]).or_default().push((parts, entry));
            }
        }
    }
    for &(canon, list) in VARIANTS {
        let base = if canon.contains(' ') {
            phrases
                .values()
                .flatten()
                .find(|(_, e)| e.canon == canon)
                .map(|(_, e)| *e)
        } else {
            words.get(canon).copied()
        };
        if let Some(base) = base {
            for variant in items(list) {
                words.entry(variant).or_insert(base);
            }
        }
    }
    for list in phrases.values_mut() {
        list.sort_by_key(|(parts, _)| std::cmp::Reverse(parts.len()));
    }
    let mut fuzzy: HashMap<char, Vec<(Vec<char>, Entry, usize)>> = HashMap::new();
    for canon in items(FUZZY_KEYWORDS) {
        let letters: Vec<char> = canon.chars().collect();
        let edits = max_edits(letters.len());
        if edits == 0 {
            continue;
        }
        if let Some(&entry) = words.get(canon) {
            fuzzy
                .entry(letters[0])
                .or_default()
                .push((letters, entry, edits));
        }
    }
    Tables {
        words,
        phrases,
        fuzzy,
        not_typos: items(NOT_TYPOS).collect(),
        followers: items(FOLLOWERS).collect(),
    }
}

/// The items of a comma-separated list.
fn items(list: &'static str) -> impl Iterator<Item = &'static str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn merge(words: &mut HashMap<&'static str, Entry>, word: &'static str, role: Role, langs: u8) {
    let entry = words.entry(word).or_insert(Entry {
        canon: word,
        role,
        langs: 0,
    });
    if role > entry.role {
        // "yo" is a greeting in English and "I" in Spanish: a subject, in Spanish only.
        entry.role = role;
        entry.langs = langs;
    } else if role == entry.role {
        entry.langs |= langs;
    }
}

/// Edits allowed for a keyword of `len` letters: short words must be exact, or "agent"
/// would be "agend" and "human" "humor"... and worse, long ones tolerate two.
fn max_edits(len: usize) -> usize {
    match len {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// A word of a clause after lookup: its key (canonical form, or the word itself) and class.
#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    key: &'a str,
    entry: Option<Entry>,
}

impl Tok<'_> {
    fn role(&self) -> Option<Role> {
        self.entry.map(|e| e.role)
    }

    /// Whether a walk from a person word may pass over this word.
    fn walkable(&self) -> bool {
        matches!(
            self.role(),
            Some(
                Role::Filler
                    | Role::Subject
                    | Role::Want
                    | Role::Cue
                    | Role::Someone
                    | Role::Person
            )
        )
    }
}

/// Classifies the words of one clause and joins multi-word entries.
fn classify(words: &[String]) -> Vec<Tok<'_>> {
    let tables = &*TABLES;
    let single: Vec<Tok<'_>> = words
        .iter()
        .map(|w| {
            let entry = lookup(tables, w);
            Tok {
                key: entry.map_or(w.as_str(), |e| e.canon),
                entry,
            }
        })
        .collect();
    let mut out = Vec::with_capacity(single.len());
    let mut i = 0;
    while i < single.len() {
        let joined = tables.phrases.get(single[i].key).and_then(|candidates| {
            candidates.iter().find(|(parts, _)| {
                single.len() - i >= parts.len()
                    && parts.iter().zip(&single[i..]).all(|(p, t)| *p == t.key)
            })
        });
        match joined {
            Some((parts, entry)) => {
                out.push(Tok {
                    key: entry.canon,
                    entry: Some(*entry),
                });
                i += parts.len();
            }
            None => {
                out.push(single[i]);
                i += 1;
            }
        }
    }
    out
}

fn lookup(tables: &Tables, word: &str) -> Option<Entry> {
    if let Some(e) = tables.words.get(word) {
        return Some(*e);
    }
    // "agentttt", "pleeease", "hoooman": runs of three or more letters are emphasis.
    let two = squash(word, 2);
    if two != word {
        if let Some(e) = tables.words.get(two.as_str()) {
            return Some(*e);
        }
        if let Some(e) = tables.words.get(squash(word, 1).as_str()) {
            return Some(*e);
        }
    }
    fuzzy_lookup(tables, &two)
}

fn squash(word: &str, keep: usize) -> String {
    let mut out = String::with_capacity(word.len());
    let mut last = None;
    let mut run = 0;
    for c in word.chars() {
        if Some(c) == last {
            run += 1;
        } else {
            last = Some(c);
            run = 1;
        }
        if run <= keep {
            out.push(c);
        }
    }
    out
}

/// Longest word compared by edit distance; longer words are not typos of a keyword.
const MAX_FUZZY_LEN: usize = 24;

fn fuzzy_lookup(tables: &Tables, word: &str) -> Option<Entry> {
    if tables.not_typos.contains(word) {
        return None;
    }
    let mut buf = ['\0'; MAX_FUZZY_LEN];
    let mut len = 0;
    for c in word.chars() {
        if len == MAX_FUZZY_LEN || !c.is_alphabetic() {
            return None;
        }
        buf[len] = c;
        len += 1;
    }
    if len < 4 {
        return None;
    }
    let letters = &buf[..len];
    // A typo almost always keeps the first letter; "gaent" swaps the first two.
    let swapped = tables
        .fuzzy
        .get(&letters[1])
        .into_iter()
        .flatten()
        .filter(|(keyword, _, _)| keyword.get(1) == Some(&letters[0]));
    let same = tables.fuzzy.get(&letters[0]).into_iter().flatten();
    same.chain(swapped)
        .filter_map(|(keyword, entry, edits)| {
            osa_distance(letters, keyword, *edits).map(|d| (d, entry.canon, *entry))
        })
        .min_by_key(|&(d, canon, _)| (d, canon))
        .map(|(_, _, entry)| entry)
}

/// The optimal-string-alignment distance (Levenshtein plus adjacent swaps) between `a` and
/// `b`, if it is at most `max`. Words longer than [`MAX_FUZZY_LEN`] letters are never close.
fn osa_distance(a: &[char], b: &[char], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max || a.len() > MAX_FUZZY_LEN || b.len() > MAX_FUZZY_LEN {
        return None;
    }
    let n = b.len();
    let mut before = [0usize; MAX_FUZZY_LEN + 1];
    let mut prev = [0usize; MAX_FUZZY_LEN + 1];
    let mut cur = [0usize; MAX_FUZZY_LEN + 1];
    for (j, cell) in prev.iter_mut().enumerate().take(n + 1) {
        *cell = j;
    }
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=n {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        before = prev;
        prev = cur;
    }
    Some(prev[n]).filter(|&d| d <= max)
}

/// The first person word asked for in a clause, and the request's language.
///
/// Words the walk may pass over form runs; every person word of a run shares the run's
/// bounds, so one left-to-right pass per run gives each person word what a walk back from
/// it would find, and the whole clause costs linear time however it is built.
fn clause_request(toks: &[Tok<'_>], only_clause: bool) -> Option<Language> {
    let mut start = 0;
    while start < toks.len() {
        if !toks[start].walkable() {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < toks.len() && toks[end].walkable() {
            end += 1;
        }
        let run = Run {
            start,
            end,
            after_negator: start > 0 && toks[start - 1].role() == Some(Role::Negator),
            whole_clause: start == 0 && end == toks.len(),
        };
        // What a walk back from the current word would have passed: a word for talking, a
        // word for wanting, and a subject beyond (before) either.
        let mut cue = false;
        let mut want = false;
        let mut subject = false;
        let mut subject_then_ask = false;
        for i in start..end {
            // A negator just before the run negates it, unless a subject stands between.
            let negated = run.after_negator && !subject_then_ask;
            let asked = Asked {
                talking: cue && !negated,
                wanting: (cue || want) && !negated,
            };
            if let Some(lang) = person_request(toks, i, &run, asked, only_clause) {
                return Some(lang);
            }
            match toks[i].role() {
                Some(Role::Cue) => {
                    cue = true;
                    subject_then_ask |= subject;
                }
                Some(Role::Want) => {
                    want = true;
                    subject_then_ask |= subject;
                }
                Some(Role::Subject) => subject = true,
                _ => {}
            }
        }
        start = end;
    }
    None
}

/// Whether the words before a person word in its run ask for them.
#[derive(Debug, Clone, Copy)]
struct Asked {
    /// A word for talking or reaching, not negated: "talk to someone", "is there anyone".
    talking: bool,
    /// That, or a word for wanting, not negated: "I want an agent".
    wanting: bool,
}

/// A maximal stretch of walkable words in a clause.
struct Run {
    start: usize,
    end: usize,
    /// The word before the run is a negator ("don't [want a human]").
    after_negator: bool,
    /// The run is the whole clause ("[human please]").
    whole_clause: bool,
}

/// Whether the word at `i` is a person word that is asked for, or stands in a clause of
/// nothing but fillers.
fn person_request(
    toks: &[Tok<'_>],
    i: usize,
    run: &Run,
    asked: Asked,
    only_clause: bool,
) -> Option<Language> {
    let tables = &*TABLES;
    let person = toks[i].entry.filter(|e| e.role.is_person())?;
    if let Some(next) = toks.get(i + 1).map(|t| t.key) {
        let two = toks.get(i + 2).map(|t| format!("{next} {}", t.key));
        if tables.followers.contains(next)
            || two.is_some_and(|two| tables.followers.contains(two.as_str()))
        {
            return None;
        }
    }
    // French "personne" alone is "nobody" ("je ne veux parler à personne"): a person only
    // with an article ("une (vraie) personne", "la personne").
    if person.canon == "personne"
        && !toks[i.saturating_sub(2)..i]
            .iter()
            .any(|t| matches!(t.key, "une" | "la" | "l" | "cette"))
    {
        return None;
    }
    let interjection = INTERJECTIONS.contains(&person.canon) && toks.len() == 1 && !only_clause;
    let asked = match person.role {
        Role::Someone => asked.talking,
        _ => asked.wanting,
    };
    if !(asked || run.whole_clause && !interjection) {
        return None;
    }
    Some(language_of(&toks[run.start..run.end], person))
}

fn language_of(toks: &[Tok<'_>], person: Entry) -> Language {
    let votes = |lang: Language| -> usize {
        let bit = lang.bit();
        let others = toks
            .iter()
            .filter_map(|t| t.entry)
            .filter(|e| !e.role.is_person() && e.langs & bit != 0)
            .count();
        others + if person.langs & bit != 0 { 2 } else { 0 }
    };
    let mut best = Language::En;
    let mut best_votes = 0;
    for lang in Language::ALL {
        let v = votes(lang);
        if v > best_votes {
            best = lang;
            best_votes = v;
        }
    }
    best
}

fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\'' | '\u{2019}' | '\u{2018}' | '\u{02BC}' | '`' | '\u{00B4}' | '\u{2032}'
    )
}

fn folded_chars(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars()
        .flat_map(|c| {
            let (first, second) = match c {
                c if is_apostrophe(c) => ('\'', None),
                'ß' | 'ẞ' => ('s', Some('s')),
                'œ' | 'Œ' => ('o', Some('e')),
                'æ' | 'Æ' => ('a', Some('e')),
                'ø' | 'Ø' => ('o', None),
                'đ' | 'Đ' => ('d', None),
                'ł' | 'Ł' => ('l', None),
                'ı' => ('i', None),
                c => (c, None),
            };
            std::iter::once(first).chain(second)
        })
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        // "İ" lower-cases to "i" and a combining dot.
        .filter(|c| !is_combining_mark(*c))
}

fn is_clause_break(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | ';'
            | ':'
            | '!'
            | '?'
            | '¡'
            | '¿'
            | '('
            | ')'
            | '['
            | ']'
            | '{'
            | '}'
            | '"'
            | '«'
            | '»'
            | '\n'
            | '\r'
            | '|'
            | '/'
            | '—'
            | '–'
            | '\u{201C}'
            | '\u{201D}'
    )
}

/// Folded words, grouped in clauses.
fn split_clauses(text: &str) -> Vec<Vec<String>> {
    let mut clauses = Vec::new();
    let mut clause = Vec::new();
    let mut word = String::new();
    for c in fold(text).chars() {
        if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
            word.push(c);
            continue;
        }
        end_word(&mut word, &mut clause, &mut clauses);
        if is_clause_break(c) {
            end_clause(&mut clause, &mut clauses);
        }
    }
    end_word(&mut word, &mut clause, &mut clauses);
    end_clause(&mut clause, &mut clauses);
    clauses
}

fn end_clause(clause: &mut Vec<String>, clauses: &mut Vec<Vec<String>>) {
    if !clause.is_empty() {
        clauses.push(std::mem::take(clause));
    }
}

fn end_word(word: &mut String, clause: &mut Vec<String>, clauses: &mut Vec<Vec<String>>) {
    let trimmed = word.trim_end_matches('\'');
    if trimmed.is_empty() {
        word.clear();
        return;
    }
    if CLAUSE_WORDS.contains(&trimmed) {
        end_clause(clause, clauses);
    } else if let Some((head, tail)) = trimmed.split_once('\'')
        && ELISIONS.contains(&head)
        && !tail.is_empty()
    {
        clause.push(head.to_owned());
        clause.push(tail.to_owned());
    } else {
        clause.push(trimmed.to_owned());
    }
    word.clear();
}

#[cfg(test)]
mod tests {
    use super::Language::{De, En, Es, Fr, Pt};
    use super::*;

    /// Messages and whether (in which language) they ask for a person.
    const TABLE: &[(&str, Option<Language>)] = &[
        // English: asking.
        ("agent", Some(En)),
        ("AGENT!!!", Some(En)),
        ("human please", Some(En)),
        ("can I talk to a real person", Some(En)),
        ("speak to someone", Some(En)),
        ("I want a representative", Some(En)),
        ("operator", Some(En)),
        ("customer service", Some(En)),
        ("let me talk to somebody", Some(En)),
        ("live agent", Some(En)),
        ("get me a human", Some(En)),
        ("get me a representative", Some(En)),
        ("I'd rather talk to a person", Some(En)),
        ("still waiting for an agent", Some(En)),
        ("I need a real person", Some(En)),
        ("Can you get someone?", Some(En)),
        ("I want to talk to a human", Some(En)),
        ("Can I speak to a real person please?", Some(En)),
        ("can someone help me", Some(En)),
        ("is there a human I can talk to?", Some(En)),
        ("transfer me to an agent", Some(En)),
        ("connect me with a live agent now", Some(En)),
        ("I need to speak with someone about my order", Some(En)),
        ("no, I want a human", Some(En)),
        ("no I want a human", Some(En)),
        ("I don't want a bot, I want a human", Some(En)),
        ("I don't want the bot but a person", Some(En)),
        ("why can't I talk to a person", Some(En)),
        ("I'd like to speak to your manager", Some(En)),
        ("anyone there?", Some(En)),
        ("put me through to customer support", Some(En)),
        ("a human being please", Some(En)),
        ("please escalate to a human", Some(En)),
        ("I am not a robot, get me an agent", Some(En)),
        ("a real person I can talk to", Some(En)),
        ("Hi. Agent please.", Some(En)),
        ("I’d like an agent", Some(En)),
        ("ＡＧＥＮＴ", Some(En)),
        // English: misspelled.
        ("represenative", Some(En)),
        ("reprasentative please", Some(En)),
        ("opperator", Some(En)),
        ("agnet", Some(En)),
        ("hooman", Some(En)),
        ("real persn", Some(En)),
        ("custmer service", Some(En)),
        ("costumer service pls", Some(En)),
        ("i wanna tlak to a hooman", Some(En)),
        ("agentttt", Some(En)),
        ("let me speak to somone", Some(En)),
        // Spanish.
        ("hablar con un agente", Some(Es)),
        ("quiero hablar con una persona", Some(Es)),
        ("con un humano por favor", Some(Es)),
        ("agente", Some(Es)),
        ("necesito un asesor", Some(Es)),
        ("pásame con un operador", Some(Es)),
        ("quiero atención al cliente", Some(Es)),
        ("¿Hay alguien que me pueda atender?", Some(Es)),
        ("quiero hablar con alguien", Some(Es)),
        ("una persona real por favor", Some(Es)),
        ("quiero hablar con un agnete", Some(Es)),
        ("¿me pasas con alguien?", Some(Es)),
        ("¿alguien me puede ayudar?", Some(Es)),
        ("no, quiero un agente", Some(Es)),
        // French.
        ("parler à un conseiller", Some(Fr)),
        ("parler a un conseiller", Some(Fr)),
        ("je veux parler à quelqu'un", Some(Fr)),
        ("un humain svp", Some(Fr)),
        ("je voudrais parler à une vraie personne", Some(Fr)),
        ("passez-moi un conseiller", Some(Fr)),
        ("j'ai besoin d'un conseiller", Some(Fr)),
        ("service client s'il vous plaît", Some(Fr)),
        ("je veux un humain", Some(Fr)),
        ("y a-t-il un conseiller disponible ?", Some(Fr)),
        ("je veux parler a quelquun", Some(Fr)),
        ("parler à un opérateur", Some(Fr)),
        ("PARLER À UN CONSEILLÈRE", Some(Fr)),
        ("un conseiler svp", Some(Fr)),
        ("je souhaite être rappelé par un conseiller", Some(Fr)),
        ("Quelqu'un peut m'aider ?", Some(Fr)),
        // German.
        ("ich möchte mit einem Mitarbeiter sprechen", Some(De)),
        ("Mensch bitte", Some(De)),
        ("mit einem menschen reden", Some(De)),
        ("kann ich mit jemandem sprechen?", Some(De)),
        ("ich brauche einen echten Menschen", Some(De)),
        ("Kundenservice bitte", Some(De)),
        ("verbinden Sie mich mit einem Berater", Some(De)),
        ("ich will mit einer echten Person reden", Some(De)),
        ("ich moechte mit einem Mitarbieter sprechen", Some(De)),
        ("Mensch!", Some(De)),
        ("gibt es einen Ansprechpartner?", Some(De)),
        ("ist da jemand?", Some(De)),
        ("Gibt es hier auch echte Menschen?", Some(De)),
        ("Kann mir jemand helfen?", Some(De)),
        // Portuguese.
        ("falar com um atendente", Some(Pt)),
        ("quero falar com uma pessoa", Some(Pt)),
        ("atendente humano", Some(Pt)),
        ("quero falar com alguém", Some(Pt)),
        ("preciso de um atendente", Some(Pt)),
        ("me transfere para um atendente por favor", Some(Pt)),
        ("tem alguém aí?", Some(Pt)),
        ("quero atendimento humano", Some(Pt)),
        ("gostaria de falar com um consultor", Some(Pt)),
        ("quero falar com um atendete", Some(Pt)),
        ("Alguém pode me ajudar?", Some(Pt)),
        // English: not asking.
        ("I am not a robot", None),
        ("I'm human", None),
        ("I'm human, why the captcha?", None),
        ("perdón, una pregunta", None),
        ("la personne au téléphone était gentille", None),
        ("Ich möchte mitarbeiten", None),
        ("quero que me agende uma consulta", None),
        ("are you a human?", None),
        ("Are you a real person or a bot?", None),
        ("am I talking to a human?", None),
        ("is this a real person", None),
        ("my travel agent booked it", None),
        ("my user agent string is weird", None),
        ("the operator of the website", None),
        ("no need for an agent", None),
        ("I don't need a human, just tell me the hours", None),
        ("I don't want to talk to anyone", None),
        ("someone stole my card", None),
        ("representative sample", None),
        ("I want a representative sample of the data", None),
        ("agenda", None),
        ("urgent", None),
        ("humanity", None),
        ("that's humane", None),
        ("the agentic workflow broke", None),
        ("talk to me about pricing", None),
        ("What are your customer service hours?", None),
        ("I need the customer service number", None),
        ("the agent was very helpful, thanks", None),
        ("I'm not a bot, I'm human", None),
        ("we are humans", None),
        ("human resources called me", None),
        ("you talk like a real person", None),
        ("there was an agent at the door", None),
        ("What are your opening hours?", None),
        ("I need stuff for my kitchen", None),
        ("I need someone to sign for the parcel", None),
        ("I need a person to fix my router", None),
        // Spanish: not asking.
        ("yo no soy un robot", None),
        ("no soy un robot, soy humano", None),
        ("¿eres humano?", None),
        ("mi agente de viajes lo reservó", None),
        ("no quiero hablar con nadie", None),
        ("no quiero hablar con un agente", None),
        ("alguien robó mi tarjeta", None),
        ("la gente dice que son rápidos", None),
        ("quiero hablar con recursos humanos", None),
        ("es urgente", None),
        // French.
        ("je ne suis pas un robot", None),
        ("je suis humain", None),
        ("je veux l'argent", None),
        ("tu es humain ?", None),
        ("je ne veux parler à personne", None),
        ("je veux parler à personne", None),
        ("mon agent immobilier", None),
        ("quelqu'un a volé ma carte", None),
        ("je n'ai pas besoin d'un conseiller", None),
        ("je veux un échantillon représentatif", None),
        // German.
        ("ich bin kein Roboter", None),
        ("bist du ein Mensch?", None),
        ("ist das ein Mensch?", None),
        ("Mensch, das nervt!", None),
        ("ich will nicht mit einem Menschen reden", None),
        ("jemand hat meine Karte gestohlen", None),
        ("der Mitarbeiter war sehr nett", None),
        ("ich brauche keinen Mitarbeiter", None),
        // Portuguese.
        ("não sou um robô", None),
        ("você é humano?", None),
        ("alguém roubou meu cartão", None),
        ("meu agente de viagens", None),
        ("não quero falar com um atendente", None),
        ("a gente precisa de ajuda", None),
        ("oi pessoal", None),
        ("estou falando com um humano?", None),
        ("quero meu dinheiro de volta, é urgente", None),
    ];

    #[test]
    fn every_phrase_in_the_table_fires_as_listed() {
        let failures: Vec<String> = TABLE
            .iter()
            .filter_map(|&(text, expected)| {
                let got = human_request(text);
                (got != expected).then(|| format!("{text:?}: expected {expected:?}, got {got:?}"))
            })
            .collect();
        for failure in &failures {
            println!("{failure}");
        }
        assert!(
            failures.is_empty(),
            "{} of {} phrases misfired:\n{}",
            failures.len(),
            TABLE.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn the_table_covers_five_languages_both_ways() {
        let positives = TABLE.iter().filter(|(_, l)| l.is_some()).count();
        let negatives = TABLE.len() - positives;
        assert!(positives >= 40, "{positives} positives");
        assert!(negatives >= 30, "{negatives} negatives");
        for lang in Language::ALL {
            assert!(
                TABLE.iter().any(|(_, l)| *l == Some(lang)),
                "no positive in {lang}"
            );
        }
    }

    #[test]
    fn asks_for_human_agrees_with_human_request() {
        for &(text, expected) in TABLE {
            assert_eq!(asks_for_human(text), expected.is_some(), "{text:?}");
        }
    }

    #[test]
    fn real_words_close_to_a_keyword_are_not_misspellings() {
        for word in [
            "argent",
            "urgent",
            "agenda",
            "agency",
            "gente",
            "humane",
            "manger",
            "stuff",
            "personal",
            "pessoal",
            "representation",
            "employer",
            "supervision",
            "perdón",
            "aient",
            "operate",
            "mitarbeiten",
            "agende",
            "urgente",
            "agent's",
        ] {
            assert!(!asks_for_human(word), "{word:?}");
            assert!(
                !asks_for_human(&format!("I want {word}")),
                "I want {word:?}"
            );
        }
    }

    #[test]
    fn misspellings_within_the_edit_budget_match_and_beyond_it_do_not() {
        // One edit on a 5-letter word, two on a 14-letter word.
        assert!(asks_for_human("agnet"));
        assert!(asks_for_human("representatvie"));
        assert!(asks_for_human("reprsentatve"));
        // Two edits on a 5-letter word, three on a long one, any edit on a short one.
        assert!(!asks_for_human("aegtn please"));
        assert!(!asks_for_human("rprsentatve"));
        assert!(!asks_for_human("rip"));
    }

    #[test]
    fn the_osa_distance_counts_a_swap_as_one_edit() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        let osa = |a: &str, b: &str, max| osa_distance(&chars(a), &chars(b), max);
        assert_eq!(osa("agnet", "agent", 1), Some(1));
        assert_eq!(osa("agent", "agent", 0), Some(0));
        assert_eq!(osa("urgent", "agent", 1), None);
        assert_eq!(osa("kitten", "sitting", 3), Some(3));
        assert_eq!(osa("kitten", "sitting", 2), None);
        assert_eq!(osa("", "ab", 2), Some(2));
        assert_eq!(osa(&"a".repeat(30), &"a".repeat(30), 2), None);
    }

    #[test]
    fn the_language_goes_to_the_words_around_the_request() {
        assert_eq!(human_request("un agent svp"), Some(Fr));
        assert_eq!(human_request("quero um agente"), Some(Pt));
        assert_eq!(human_request("quiero un agente"), Some(Es));
        assert_eq!(human_request("ich will einen Agenten"), Some(De));
        assert_eq!(Fr.as_str(), "fr");
        assert_eq!(Pt.to_string(), "pt");
    }

    #[test]
    fn folding_drops_accents_case_and_odd_forms() {
        assert_eq!(fold("Parler À un CONSEILLÈRE"), "parler a un conseillere");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("ＡＧＥＮＴ"), "agent");
        assert_eq!(fold("don’t"), "don't");
        assert_eq!(fold("İstanbul"), "istanbul");
        assert_eq!(fold("DON`T"), "don't");
        assert_eq!(fold("DON`T É"), "don't e");
    }

    #[test]
    fn normalize_keeps_accents_and_reads_typographic_apostrophes() {
        assert_eq!(
            normalize("What’s THE Price? Ça coûte"),
            ["what's", "the", "price", "ça", "coûte"]
        );
        assert!(normalize("  !!! ").is_empty());
        let words = normalize("Good morning, team");
        assert!(contains_phrase(&words, "good morning"));
        assert!(!contains_phrase(&words, "morning good"));
        assert!(!contains_phrase(&words, ""));
    }

    #[test]
    fn every_lexicon_entry_is_already_folded() {
        for &(_, _, list) in LEXICON {
            for item in items(list) {
                assert_eq!(fold(item), item, "{item:?} is not folded");
            }
        }
        let variants = VARIANTS
            .iter()
            .flat_map(|(canon, list)| items(list).chain([*canon]));
        for word in items(NOT_TYPOS).chain(items(FOLLOWERS)).chain(variants) {
            assert_eq!(fold(word), word, "{word:?} is not folded");
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let long_calm = "where is my parcel, it was due yesterday. ".repeat(2_500);
        let long_request = format!("{long_calm} please get me a human");
        let odd = [
            "",
            " ",
            "'",
            "''''",
            "l'",
            "'agent",
            "agent'",
            "\u{0}\u{1}\u{7f}",
            "\u{301}\u{301}\u{301}",
            "🤖🤖🤖 human 👩‍💼",
            "ﬁ ﬂ ǅ ß ẞ İ ı",
            "a\u{200B}gent",
            "𝓪𝓰𝓮𝓷𝓽",
            "代理人 请",
            "ايجنت",
            "\u{FEFF}agent",
            "x".repeat(100_000).as_str(),
            "agent ".repeat(20_000).as_str(),
            "é".repeat(50_000).as_str(),
        ]
        .map(str::to_owned);
        for text in odd.iter().chain([&long_calm, &long_request]) {
            let _ = human_request(text);
            let _ = normalize(text);
        }
        assert!(asks_for_human(&long_request));
        assert!(!asks_for_human(&long_calm));
        assert!(asks_for_human("🤖🤖🤖 human 👩‍💼"));
    }

    #[test]
    fn a_long_message_is_matched_quickly() {
        let text =
            "My parcel never arrived and the tracking page says nothing useful. ".repeat(1_600);
        assert!(text.len() >= 100_000);
        let started = std::time::Instant::now();
        assert!(!asks_for_human(&text));
        // Generous for an unoptimized build on a loaded machine; a regex compiled per call or a
        // quadratic scan would be far slower.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}

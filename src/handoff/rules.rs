//! Escalation rules: when a conversation goes from the bot to a person, and where.
//!
//! Rules are data (the config file's `[[escalation_rules]]`, or `PUT /api/v1/escalation-rules`),
//! evaluated in order; the first whose conditions all hold fires, and its name, its reason,
//! its team, skills and priority go on the ticket. A rule's conditions are ANDed, so "a VIP who
//! asks for a person" is one rule and "any VIP" another.
//!
//! Evaluation runs twice per customer message. Before the bot: rules that look only at the
//! customer (asks for a person, frustration, tags, keywords, channel, bot turns or time), so a
//! customer who asks for a person is not first made to read a bot answer. After the bot: rules
//! that also look at the bot's answer (it asked for a person, its confidence, its fallback
//! streak, its failure). A rule is evaluated in exactly one of the two passes.

use serde::{Deserialize, Serialize};

use crate::model::{ChannelKind, HandoffReason, ParseError, Priority, Skill, Team};

/// A rule as written in the config file or sent to the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// A name, unique among the rules; recorded on every ticket it creates.
    pub name: String,
    /// When it fires; every condition given must hold.
    #[serde(default)]
    pub when: Conditions,
    /// The team whose queue gets the ticket (none: the general queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Skills the agent needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// The ticket's priority (default normal, or what the bot asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
}

/// What a rule looks at. Every condition given must hold; none given never fires.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// The customer asks for a person (any of the supported languages).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub asks_for_human: bool,
    /// The frustration score of the customer's recent messages is at least this (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frustration_at_least: Option<f32>,
    /// The customer has any of these tags (`vip`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customer_tags: Vec<String>,
    /// The message contains any of these words or phrases (whole words, any case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// The conversation is on any of these channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// The customer has written more than this many messages to the bot since it last
    /// took over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_turns_over: Option<u32>,
    /// The customer has been with the bot for more than this many minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_minutes_over: Option<u32>,
    /// The bot asked for a person.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot_handoff: bool,
    /// The bot said how sure it is, and it is below this (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_confidence_below: Option<f32>,
    /// The bot fell back (did not understand) at least this many times in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_fallbacks: Option<u32>,
    /// The bot failed: an error, a timeout, an invalid answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot_failed: bool,
}

impl Conditions {
    fn uses_bot(&self) -> bool {
        self.bot_handoff
            || self.bot_confidence_below.is_some()
            || self.bot_fallbacks.is_some()
            || self.bot_failed
    }

    fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    spec: RuleSpec,
    tags: Vec<String>,
    keywords: Vec<String>,
    channels: Vec<ChannelKind>,
    team: Option<Team>,
    skills: Vec<Skill>,
}

impl Rule {
    /// Checks a rule: a name, at least one condition, thresholds within 0..1, known channels,
    /// valid team and skill tags.
    pub fn parse(spec: RuleSpec) -> Result<Self, ParseError> {
        let name = spec.name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(ParseError::new("rule name", "must be 1 to 100 characters"));
        }
        let w = &spec.when;
        if w.is_empty() {
            return Err(ParseError::new(
                "rule",
                format!("{name:?} has no condition in `when`, so it would never fire"),
            ));
        }
        for (what, v) in [
            ("frustration_at_least", w.frustration_at_least),
            ("bot_confidence_below", w.bot_confidence_below),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(ParseError::new(what, "must be between 0 and 1"));
            }
        }
        if w.bot_fallbacks == Some(0) {
            return Err(ParseError::new("bot_fallbacks", "must be at least 1"));
        }
        let channels = w
            .channels
            .iter()
            .map(|c| c.parse::<ChannelKind>())
            .collect::<Result<Vec<_>, _>>()?;
        let keywords = w
            .keywords
            .iter()
            .map(|k| super::intent::normalize(k).join(" "))
            .collect::<Vec<_>>();
        if keywords.iter().any(String::is_empty) {
            return Err(ParseError::new(
                "keywords",
                "must contain letters or digits",
            ));
        }
        let tags = w
            .customer_tags
            .iter()
            .map(|t| Team::parse(t).map(|t| t.as_str().to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ParseError::new("customer_tags", "must be tags like vip"))?;
        let team = spec.team.as_deref().map(Team::parse).transpose()?;
        let skills = spec
            .skills
            .iter()
            .map(|s| Skill::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = RuleSpec {
            name: name.to_owned(),
            ..spec
        };
        Ok(Self {
            spec,
            tags,
            keywords,
            channels,
            team,
            skills,
        })
    }

    /// The rule as written.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// The reason a ticket from this rule records: the strongest condition it names.
    pub fn reason(&self) -> HandoffReason {
        let w = &self.spec.when;
        if w.bot_failed {
            HandoffReason::BotFailure
        } else if w.bot_handoff {
            HandoffReason::BotRequest
        } else if w.bot_confidence_below.is_some() {
            HandoffReason::BotLowConfidence
        } else if w.bot_fallbacks.is_some() {
            HandoffReason::BotFallback
        } else if w.asks_for_human {
            HandoffReason::CustomerRequest
        } else if w.frustration_at_least.is_some() {
            HandoffReason::Frustration
        } else {
            HandoffReason::Rule
        }
    }

    fn matches(&self, s: &Signals<'_>) -> bool {
        let w = &self.spec.when;
        if w.asks_for_human && !s.asks_for_human {
            return false;
        }
        if let Some(t) = w.frustration_at_least
            && s.frustration < t
        {
            return false;
        }
        if !self.tags.is_empty() && !self.tags.iter().any(|t| s.customer_tags.contains(t)) {
            return false;
        }
        if !self.keywords.is_empty()
            && !self
                .keywords
                .iter()
                .any(|k| super::intent::contains_phrase(s.words, k))
        {
            return false;
        }
        if !self.channels.is_empty() && !self.channels.contains(&s.channel) {
            return false;
        }
        if let Some(n) = w.bot_turns_over
            && s.bot_turns.is_none_or(|t| t <= n)
        {
            return false;
        }
        if let Some(m) = w.bot_minutes_over
            && s.bot_minutes.is_none_or(|t| t <= m)
        {
            return false;
        }
        if w.uses_bot() {
            let Some(bot) = &s.bot else { return false };
            if w.bot_failed && !bot.failed {
                return false;
            }
            if w.bot_handoff && !bot.handoff {
                return false;
            }
            if let Some(t) = w.bot_confidence_below
                && bot.confidence.is_none_or(|c| c >= t)
            {
                return false;
            }
            if let Some(n) = w.bot_fallbacks
                && bot.fallbacks_in_row < n
            {
                return false;
            }
        }
        true
    }
}

/// Everything a rule can look at, for one customer message.
#[derive(Debug, Clone)]
pub struct Signals<'a> {
    /// The message's words, normalized ([`super::intent::normalize`]).
    pub words: &'a [String],
    /// Whether it asks for a person.
    pub asks_for_human: bool,
    /// The frustration score of the recent messages, 0 to 1.
    pub frustration: f32,
    /// The customer's tags.
    pub customer_tags: &'a [String],
    /// The channel.
    pub channel: ChannelKind,
    /// Customer messages since the bot last took over, if counted.
    pub bot_turns: Option<u32>,
    /// Minutes since the bot last took over, if counted.
    pub bot_minutes: Option<u32>,
    /// The bot's answer, in the second pass.
    pub bot: Option<BotSignals>,
}

/// What the bot's answer says.
#[derive(Debug, Clone, Copy, Default)]
pub struct BotSignals {
    /// It asked for a person.
    pub handoff: bool,
    /// Its confidence, if it gave one.
    pub confidence: Option<f32>,
    /// Its fallback streak, this answer included.
    pub fallbacks_in_row: u32,
    /// It failed.
    pub failed: bool,
}

/// The rule that fired, and what it sets on the ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The rule's name.
    pub rule: String,
    /// The reason recorded.
    pub reason: HandoffReason,
    /// The team.
    pub team: Option<Team>,
    /// Skills.
    pub skills: Vec<Skill>,
    /// Priority, if the rule sets one.
    pub priority: Option<Priority>,
}

/// Which pass: before the bot answers, or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Rules about the customer only.
    BeforeBot,
    /// Rules that look at the bot's answer.
    AfterBot,
}

/// The ordered rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Checks a list of rules: each valid, names unique.
    pub fn parse(specs: Vec<RuleSpec>) -> Result<Self, ParseError> {
        let rules = specs
            .into_iter()
            .map(Rule::parse)
            .collect::<Result<Vec<_>, _>>()?;
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|o| o.spec.name == r.spec.name) {
                return Err(ParseError::new(
                    "rules",
                    format!("two rules are named {:?}", r.spec.name),
                ));
            }
        }
        Ok(Self { rules })
    }

    /// What Baton does with no rules configured: a person when the customer asks for one or
    /// is frustrated, when the bot asks, fails, or does not understand three times in a row.
    pub fn defaults() -> Self {
        let rule = |name: &str, when: Conditions| RuleSpec {
            name: name.into(),
            when,
            team: None,
            skills: Vec::new(),
            priority: None,
        };
        Self::parse(vec![
            rule(
                "customer-asks-for-a-person",
                Conditions {
                    asks_for_human: true,
                    ..Default::default()
                },
            ),
            rule(
                "frustrated-customer",
                Conditions {
                    frustration_at_least: Some(super::frustration::DEFAULT_THRESHOLD),
                    ..Default::default()
                },
            ),
            rule(
                "bot-asks-for-a-person",
                Conditions {
                    bot_handoff: true,
                    ..Default::default()
                },
            ),
            rule(
                "bot-failed",
                Conditions {
                    bot_failed: true,
                    ..Default::default()
                },
            ),
            rule(
                "bot-does-not-understand",
                Conditions {
                    bot_fallbacks: Some(3),
                    ..Default::default()
                },
            ),
        ])
        .expect("the default rules are valid")
    }

    /// The rules as written, in order.
    pub fn specs(&self) -> Vec<RuleSpec> {
        self.rules.iter().map(|r| r.spec.clone()).collect()
    }

    /// Whether any rule counts bot turns or time (a store read per message otherwise saved).
    pub fn needs_bot_session(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.spec.when.bot_turns_over.is_some() || r.spec.when.bot_minutes_over.is_some())
    }

    /// Whether any rule looks at customer tags (a store read per message otherwise saved).
    pub fn needs_customer_tags(&self) -> bool {
        self.rules.iter().any(|r| !r.tags.is_empty())
    }

    /// Whether any rule scores frustration (which needs the recent messages).
    pub fn needs_frustration(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.spec.when.frustration_at_least.is_some())
    }

    /// The first rule of `pass` that matches.
    pub fn evaluate(&self, pass: Pass, signals: &Signals<'_>) -> Option<Fired> {
        self.rules
            .iter()
            .filter(|r| r.spec.when.uses_bot() == (pass == Pass::AfterBot))
            .find(|r| r.matches(signals))
            .map(|r| Fired {
                rule: r.spec.name.clone(),
                reason: r.reason(),
                team: r.team.clone(),
                skills: r.skills.clone(),
                priority: r.spec.priority,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        super::super::intent::normalize(text)
    }

    fn signals<'a>(w: &'a [String], tags: &'a [String]) -> Signals<'a> {
        Signals {
            words: w,
            asks_for_human: false,
            frustration: 0.0,
            customer_tags: tags,
            channel: ChannelKind::WebChat,
            bot_turns: None,
            bot_minutes: None,
            bot: None,
        }
    }

    fn rules(toml_rules: &str) -> RuleSet {
        #[derive(Deserialize)]
        struct File {
            escalation_rules: Vec<RuleSpec>,
        }
        let f: File = toml::from_str(toml_rules).unwrap();
        RuleSet::parse(f.escalation_rules).unwrap()
    }

    #[test]
    fn the_first_matching_rule_wins_and_sets_team_skills_and_priority() {
        let set = rules(
            r#"
            [[escalation_rules]]
            name = "vip-asks"
            when = { customer_tags = ["vip"], asks_for_human = true }
            team = "vip-desk"
            priority = "urgent"

            [[escalation_rules]]
            name = "asks"
            when = { asks_for_human = true }

            [[escalation_rules]]
            name = "legal"
            when = { keywords = ["lawyer", "legal action"] }
            team = "legal"
            skills = ["lang:en"]
            priority = "high"
            "#,
        );
        let w = words("I want a person");
        let vip = vec!["vip".to_string()];
        let mut s = signals(&w, &vip);
        s.asks_for_human = true;
        let fired = set.evaluate(Pass::BeforeBot, &s).unwrap();
        assert_eq!(fired.rule, "vip-asks");
        assert_eq!(fired.reason, HandoffReason::CustomerRequest);
        assert_eq!(fired.team.unwrap().as_str(), "vip-desk");
        assert_eq!(fired.priority, Some(Priority::Urgent));

        let s = Signals {
            customer_tags: &[],
            ..s
        };
        assert_eq!(set.evaluate(Pass::BeforeBot, &s).unwrap().rule, "asks");

        let w = words("I will take LEGAL action!");
        let fired = set.evaluate(Pass::BeforeBot, &signals(&w, &[])).unwrap();
        assert_eq!(
            (fired.rule.as_str(), fired.reason),
            ("legal", HandoffReason::Rule)
        );
        assert_eq!(fired.skills[0].as_str(), "lang:en");
        // Whole words only: "illegal" is not "legal action".
        let w = words("illegal actions");
        assert!(set.evaluate(Pass::BeforeBot, &signals(&w, &[])).is_none());
    }

    #[test]
    fn bot_rules_wait_for_the_bots_answer_and_customer_rules_do_not_run_twice() {
        let set = RuleSet::defaults();
        let w = words("blah");
        let mut s = signals(&w, &[]);
        assert!(set.evaluate(Pass::BeforeBot, &s).is_none());
        s.bot = Some(BotSignals {
            fallbacks_in_row: 2,
            ..Default::default()
        });
        assert!(
            set.evaluate(Pass::AfterBot, &s).is_none(),
            "two fallbacks are not three"
        );
        s.bot = Some(BotSignals {
            fallbacks_in_row: 3,
            ..Default::default()
        });
        let fired = set.evaluate(Pass::AfterBot, &s).unwrap();
        assert_eq!(fired.reason, HandoffReason::BotFallback);
        // A customer rule that matches is not evaluated again after the bot.
        s.asks_for_human = true;
        s.bot = Some(BotSignals::default());
        assert!(set.evaluate(Pass::AfterBot, &s).is_none());
        assert_eq!(
            set.evaluate(Pass::BeforeBot, &s).unwrap().reason,
            HandoffReason::CustomerRequest
        );
    }

    #[test]
    fn each_bot_signal_fires_its_default_rule_with_its_reason() {
        let set = RuleSet::defaults();
        let w = words("x");
        for (bot, reason) in [
            (
                BotSignals {
                    handoff: true,
                    ..Default::default()
                },
                HandoffReason::BotRequest,
            ),
            (
                BotSignals {
                    failed: true,
                    ..Default::default()
                },
                HandoffReason::BotFailure,
            ),
        ] {
            let mut s = signals(&w, &[]);
            s.bot = Some(bot);
            assert_eq!(set.evaluate(Pass::AfterBot, &s).unwrap().reason, reason);
        }
        let mut s = signals(&w, &[]);
        s.frustration = 0.9;
        assert_eq!(
            set.evaluate(Pass::BeforeBot, &s).unwrap().reason,
            HandoffReason::Frustration
        );
    }

    #[test]
    fn a_confidence_rule_needs_the_bot_to_say_how_sure_it_is() {
        let set = rules(
            r#"
            [[escalation_rules]]
            name = "unsure"
            when = { bot_confidence_below = 0.4 }
            "#,
        );
        let w = words("x");
        let mut s = signals(&w, &[]);
        s.bot = Some(BotSignals::default());
        assert!(
            set.evaluate(Pass::AfterBot, &s).is_none(),
            "no confidence given"
        );
        s.bot = Some(BotSignals {
            confidence: Some(0.5),
            ..Default::default()
        });
        assert!(set.evaluate(Pass::AfterBot, &s).is_none());
        s.bot = Some(BotSignals {
            confidence: Some(0.2),
            ..Default::default()
        });
        assert_eq!(
            set.evaluate(Pass::AfterBot, &s).unwrap().reason,
            HandoffReason::BotLowConfidence
        );
    }

    #[test]
    fn caps_on_bot_turns_and_time_and_channels_fire_only_past_the_cap() {
        let set = rules(
            r#"
            [[escalation_rules]]
            name = "long-chat"
            when = { bot_turns_over = 5 }

            [[escalation_rules]]
            name = "email-after-an-hour"
            when = { channels = ["email"], bot_minutes_over = 60 }
            team = "email"
            "#,
        );
        assert!(set.needs_bot_session());
        let w = words("x");
        let mut s = signals(&w, &[]);
        s.bot_turns = Some(5);
        assert!(set.evaluate(Pass::BeforeBot, &s).is_none());
        s.bot_turns = Some(6);
        assert_eq!(set.evaluate(Pass::BeforeBot, &s).unwrap().rule, "long-chat");
        s.bot_turns = Some(1);
        s.bot_minutes = Some(61);
        assert!(set.evaluate(Pass::BeforeBot, &s).is_none(), "not email");
        s.channel = ChannelKind::Email;
        assert_eq!(
            set.evaluate(Pass::BeforeBot, &s).unwrap().rule,
            "email-after-an-hour"
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let bad = |when: Conditions| {
            RuleSet::parse(vec![RuleSpec {
                name: "r".into(),
                when,
                team: None,
                skills: vec![],
                priority: None,
            }])
        };
        assert!(bad(Conditions::default()).is_err(), "no condition");
        assert!(
            bad(Conditions {
                frustration_at_least: Some(1.5),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            bad(Conditions {
                channels: vec!["fax".into()],
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            bad(Conditions {
                keywords: vec!["!!!".into()],
                ..Default::default()
            })
            .is_err()
        );
        let twice = RuleSpec {
            name: "same".into(),
            when: Conditions {
                asks_for_human: true,
                ..Default::default()
            },
            team: None,
            skills: vec![],
            priority: None,
        };
        assert!(RuleSet::parse(vec![twice.clone(), twice]).is_err());
    }
}

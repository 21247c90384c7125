//! Handoff: escalating a conversation from the bot to a person, and routing tickets to agents.
//!
//! - [`rules`] decide when a conversation goes to a person and where (from [`intent`] and
//!   [`frustration`] signals and the bot's answer).
//! - [`Handoffs`] is the service the pipeline and the API call.
//! - [`router::Router`] owns the routing [`engine`] (queues, strategies, capacity, offers,
//!   overflow, business hours) and makes its decisions durable; [`waiting`] is what waiting
//!   customers are told.

pub mod canned;
pub mod engine;
pub mod frustration;
pub use crate::model::hours;
pub mod intent;
pub mod router;
pub mod rules;
pub mod waiting;

use std::sync::Arc;

pub use router::Router;

use crate::model::{
    AgentId, ConversationId, Handoff, HandoffId, HandoffReason, Priority, Skill, Team,
};
use crate::store::{HandoffNote, HandoffRequest, SharedStore, StoreError, TicketStep};

/// What a caller asks for when escalating.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// Why.
    pub reason: HandoffReason,
    /// Free text that came with the reason.
    pub reason_detail: Option<String>,
    /// A summary for the agent.
    pub summary: Option<String>,
    /// How urgent.
    pub priority: Priority,
    /// Skills the agent needs.
    pub required_skills: Vec<Skill>,
    /// The team whose queue gets it (none: the general queue).
    pub team: Option<Team>,
    /// The escalation rule that fired, by name.
    pub rule: Option<String>,
    /// What the bot understood the customer wants.
    pub intent: Option<String>,
    /// What the bot collected.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The customer's language, when known.
    pub language: Option<String>,
}

impl Escalation {
    /// An escalation with the given reason and defaults for the rest.
    pub fn because(reason: HandoffReason) -> Self {
        Self {
            reason,
            reason_detail: None,
            summary: None,
            priority: Priority::Normal,
            required_skills: Vec::new(),
            team: None,
            rule: None,
            intent: None,
            fields: Default::default(),
            language: None,
        }
    }

    /// The escalation a fired rule asks for.
    pub fn from_rule(fired: rules::Fired) -> Self {
        Self {
            priority: fired.priority.unwrap_or_default(),
            required_skills: fired.skills,
            team: fired.team,
            rule: Some(fired.rule),
            ..Self::because(fired.reason)
        }
    }
}

/// The handoff service. Cheap to clone.
#[derive(Clone)]
pub struct Handoffs {
    store: SharedStore,
    router: Router,
    rules: Arc<std::sync::RwLock<Arc<rules::RuleSet>>>,
}

impl Handoffs {
    /// The service over the store and the router.
    pub fn new(store: SharedStore, router: Router) -> Self {
        Self {
            store,
            router,
            rules: Arc::new(std::sync::RwLock::new(Arc::new(rules::RuleSet::defaults()))),
        }
    }

    /// The escalation rules in force.
    pub fn rules(&self) -> Arc<rules::RuleSet> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc: the value is whole.
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Loads the rules at start-up: the config file's, if it has any (stored, so the API
    /// shows them), else the stored ones, else the defaults.
    pub async fn load_rules(
        &self,
        from_config: Option<Vec<rules::RuleSpec>>,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        let set = match from_config {
            Some(specs) => {
                let set =
                    rules::RuleSet::parse(specs).context("escalation_rules in the config file")?;
                self.store_rules(&set).await?;
                set
            }
            None => match self.store.escalation_rules().await? {
                Some(stored) => {
                    let specs = stored
                        .into_iter()
                        .map(serde_json::from_value)
                        .collect::<Result<Vec<rules::RuleSpec>, _>>()
                        .context("stored escalation rules")?;
                    rules::RuleSet::parse(specs).context("stored escalation rules")?
                }
                None => rules::RuleSet::defaults(),
            },
        };
        self.swap_rules(set);
        Ok(())
    }

    /// Replaces the rules (already checked), durably, then for the pipeline.
    pub async fn set_rules(&self, set: rules::RuleSet) -> Result<(), StoreError> {
        self.store_rules(&set).await?;
        self.swap_rules(set);
        Ok(())
    }

    async fn store_rules(&self, set: &rules::RuleSet) -> Result<(), StoreError> {
        let rows = set
            .specs()
            .into_iter()
            .map(|spec| {
                let json =
                    serde_json::to_value(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((spec.name, json))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.store.set_escalation_rules(rows).await
    }

    fn swap_rules(&self, set: rules::RuleSet) {
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
    }

    /// Hands a conversation to the queue; the router offers it and tells the customer where
    /// they stand.
    pub async fn escalate(
        &self,
        conversation: ConversationId,
        e: Escalation,
    ) -> Result<Handoff, StoreError> {
        let channel = self.store.conversation(conversation).await?.channel;
        let (handoff, _) = self
            .store
            .request_handoff(
                conversation,
                HandoffRequest {
                    reason: e.reason,
                    reason_detail: e.reason_detail,
                    summary: e.summary,
                    priority: e.priority,
                    required_skills: e.required_skills,
                    notice: None,
                    team: e.team,
                    rule: e.rule,
                    intent: e.intent,
                    fields: e.fields,
                    language: e.language,
                },
            )
            .await?;
        tracing::info!(handoff_id = %handoff.id, conversation_id = %conversation, reason = %handoff.reason,
            rule = handoff.rule.as_deref().unwrap_or(""), "handoff requested");
        // Stored as queued: a router failure now only delays the offer (the worker's rebuild
        // and tick pick it up), it never loses the ticket.
        if let Err(err) = self.router.enqueue(&handoff, channel).await {
            tracing::error!(handoff_id = %handoff.id, error = %err, "routing a new ticket failed; the worker retries");
            self.router.kick();
        }
        Ok(handoff)
    }

    /// Accepts, resolves or releases a ticket. Resolving and releasing free the agent's slot,
    /// which goes to the next waiting ticket at once. Releasing can leave a note for the bot.
    pub async fn step(
        &self,
        id: HandoffId,
        step: TicketStep,
        agent: Option<AgentId>,
    ) -> Result<Handoff, StoreError> {
        self.step_with_note(id, step, agent, None).await
    }

    /// [`Handoffs::step`] with a hand-back note for the bot.
    pub async fn step_with_note(
        &self,
        id: HandoffId,
        step: TicketStep,
        agent: Option<AgentId>,
        note: Option<String>,
    ) -> Result<Handoff, StoreError> {
        match step {
            TicketStep::Accept => {
                let Some(agent) = agent else {
                    return Err(StoreError::Conflict(
                        "accepting a ticket needs the agent who takes it".into(),
                    ));
                };
                self.check_holder(id, agent).await?;
                self.router.accept(id, agent).await?;
                self.store.handoff(id).await
            }
            TicketStep::Resolve | TicketStep::Release => {
                let handoff = self.router.finish(id, step, agent).await?;
                if step == TicketStep::Release {
                    self.store
                        .set_handback_note(handoff.conversation_id, note.clone())
                        .await?;
                    if let Some(text) = note {
                        self.store
                            .add_handoff_note(
                                id,
                                HandoffNote {
                                    kind: "release".into(),
                                    author_agent_id: agent,
                                    to_team: None,
                                    to_agent_id: None,
                                    text,
                                    created_at: crate::model::Timestamp::now(),
                                },
                            )
                            .await?;
                    }
                }
                Ok(handoff)
            }
        }
    }

    /// Declines an offered ticket; it goes to the next agent.
    pub async fn decline(&self, id: HandoffId, agent: AgentId) -> Result<Handoff, StoreError> {
        self.check_holder(id, agent).await?;
        self.router.decline(id, agent).await?;
        self.store.handoff(id).await
    }

    /// Transfers a ticket to a team's queue or an agent, with a note.
    pub async fn transfer(
        &self,
        id: HandoffId,
        by: Option<AgentId>,
        to: engine::TransferTarget,
        note: String,
    ) -> Result<Handoff, StoreError> {
        if let Some(agent) = by {
            self.check_holder(id, agent).await?;
        }
        self.router.transfer(id, by, to, note).await?;
        self.store.handoff(id).await
    }

    /// An agent acting on a ticket must be the one it is offered to or owned by.
    async fn check_holder(&self, id: HandoffId, agent: AgentId) -> Result<(), StoreError> {
        let h = self.store.handoff(id).await?;
        if !h.status.is_open() {
            return Err(StoreError::Conflict(format!("the ticket is {}", h.status)));
        }
        if h.assigned_agent_id != Some(agent) {
            return Err(StoreError::NotYours);
        }
        Ok(())
    }

    /// The router, to kick when agents' availability changes.
    pub fn router(&self) -> &Router {
        &self.router
    }
}

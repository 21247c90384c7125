//! Handoff: escalating a conversation from the bot to a person, and routing tickets to agents.
//!
//! [`Handoffs`] is the service the pipeline and the API call; [`Router`] is the background
//! worker that offers queued tickets to agents. Routing here is round robin among online
//! agents with free capacity and the required skills, highest priority and longest wait
//! first; the router issue replaces it with queues, strategies and timers.

pub mod intent;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::channels::Dispatcher;
use crate::model::{
    AgentId, ConversationId, Handoff, HandoffId, HandoffReason, MessageText, Priority, Skill,
};
use crate::store::{Assignment, HandoffRequest, SharedStore, StoreError, TicketStep};

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
        }
    }
}

/// The handoff service. Cheap to clone.
#[derive(Clone)]
pub struct Handoffs {
    store: SharedStore,
    router: Router,
    dispatcher: Dispatcher,
    notice: MessageText,
}

impl Handoffs {
    /// The service; `notice` is what customers are told when a handoff starts.
    pub fn new(
        store: SharedStore,
        router: Router,
        dispatcher: Dispatcher,
        notice: MessageText,
    ) -> Self {
        Self {
            store,
            router,
            dispatcher,
            notice,
        }
    }

    /// Hands a conversation to the queue and tells the customer.
    pub async fn escalate(
        &self,
        conversation: ConversationId,
        e: Escalation,
    ) -> Result<Handoff, StoreError> {
        let (handoff, _notice) = self
            .store
            .request_handoff(
                conversation,
                HandoffRequest {
                    reason: e.reason,
                    reason_detail: e.reason_detail,
                    summary: e.summary,
                    priority: e.priority,
                    required_skills: e.required_skills,
                    notice: self.notice.clone(),
                },
            )
            .await?;
        tracing::info!(handoff_id = %handoff.id, conversation_id = %conversation, reason = %handoff.reason, "handoff requested");
        self.dispatcher.kick();
        self.router.kick();
        Ok(handoff)
    }

    /// Accepts, resolves or releases a ticket. Resolving and releasing free the agent's slot,
    /// so the router looks for the next waiting ticket at once.
    pub async fn step(
        &self,
        id: HandoffId,
        step: TicketStep,
        agent: Option<AgentId>,
    ) -> Result<Handoff, StoreError> {
        if step == TicketStep::Accept && agent.is_none() {
            return Err(StoreError::Conflict(
                "accepting a ticket needs the agent who takes it".into(),
            ));
        }
        let handoff = self.store.ticket_step(id, step, agent).await?;
        if step != TicketStep::Accept {
            self.router.kick();
        }
        Ok(handoff)
    }

    /// The router, to kick when agents' availability changes.
    pub fn router(&self) -> &Router {
        &self.router
    }
}

/// Offers queued tickets to agents. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    store: SharedStore,
    kick: Arc<Notify>,
}

impl Router {
    /// A router over the store.
    pub fn new(store: SharedStore) -> Self {
        Self {
            store,
            kick: Arc::new(Notify::new()),
        }
    }

    /// Asks the worker to route now (a ticket was queued, an agent came online or freed a slot).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// One step: assigns whatever can be assigned now.
    pub async fn route_once(&self) -> Result<Vec<Assignment>, StoreError> {
        let assigned = self.store.assign_queued().await?;
        for a in &assigned {
            tracing::info!(handoff_id = %a.handoff_id, agent_id = %a.agent_id, "ticket offered to agent");
        }
        Ok(assigned)
    }

    /// Runs until `shutdown` turns true: routes on every kick and every few seconds. The state
    /// lives in the store, so a restart loses nothing.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.route_once().await {
                tracing::warn!(error = %e, "routing step failed");
            }
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

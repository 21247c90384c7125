//! The router: the routing [`Engine`] behind one lock, its decisions made durable.
//!
//! Every change that can move a ticket (a ticket arrives, an agent accepts, declines, resolves,
//! releases or transfers, an agent's presence or settings change, a timer fires) goes through
//! [`Router`]: it takes the lock, asks the engine, and writes what the engine decided (ticket
//! states, events, notes, notices) to the store in one transaction before letting go. So
//! concurrent requests never give one ticket to two agents or an agent more than their
//! capacity, and what the store says is what the engine believes. If a write fails, the engine
//! is rebuilt from the store, which stays the source of truth; a restart does the same.
//!
//! The worker ([`Router::run`]) ticks the engine every second (offer timeouts, overflow,
//! business hours), tells waiting customers when their standing changed materially, and marks
//! tickets abandoned when the customer has been silent too long.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify, watch};

use super::engine::{
    AgentRecord, AgentSpec, Capacity, Decision, Engine, EngineError, Placement, QueueConfig,
    Snapshot, TicketRecord, TicketSpec, TransferTarget,
};
use super::waiting::{self, Standing, WaitingTexts};
use crate::channels::Dispatcher;
use crate::model::{
    Agent, AgentId, ChannelKind, Handoff, HandoffEventKind, HandoffId, MessageText, Presence, Team,
    Timestamp,
};
use crate::store::{
    HandoffNote, RoutingBatch, RoutingEvent, SharedStore, StoreError, TicketPlacement,
    TicketRouting, TicketStep, WaitingNotice,
};

/// The general queue: where tickets go that no rule sent to a team. Every agent serves it.
pub const GENERAL: &str = "general";

/// What the router is configured with.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Queues from the config file (stored at start-up; the API may add more).
    pub queues: Vec<QueueConfig>,
    /// Waiting texts per language.
    pub texts: BTreeMap<String, WaitingTexts>,
    /// A queued customer silent this long has left (`None`: never).
    pub abandon_after: Option<Duration>,
    /// The least time between two waiting updates to one customer.
    pub update_gap: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            queues: Vec::new(),
            texts: waiting::default_texts(),
            abandon_after: Some(Duration::from_secs(30 * 60)),
            update_gap: Duration::from_secs(5 * 60),
        }
    }
}

/// Why a routing request failed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine refused (not offered to you, agent unavailable, no such queue, ...).
    #[error("{0}")]
    Refused(#[from] EngineError),
}

impl From<RouterError> for StoreError {
    fn from(e: RouterError) -> Self {
        match e {
            RouterError::Store(s) => s,
            RouterError::Refused(r) => StoreError::Conflict(r.to_string()),
        }
    }
}

/// The router. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    store: SharedStore,
    dispatcher: Dispatcher,
    settings: RouterSettings,
    engine: Mutex<Engine>,
    /// The store's routing version the engine reflects ([`UNVERSIONED`] for a store of one
    /// instance). Read and written under the engine's lock.
    seen: AtomicI64,
    kick: Notify,
    /// Bumped after every routing change that was stored: live views (the dashboard's live
    /// panel) wait on it instead of polling.
    activity: watch::Sender<u64>,
}

/// `seen` of a store without routing versions (SQLite: this router is the only one).
const UNVERSIONED: i64 = i64::MIN;

/// How often a step decided on a view another instance just changed is decided again on the
/// fresh view before the caller gets [`StoreError::StaleRouting`].
const STALE_RETRIES: usize = 3;

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

/// The general team, which every agent belongs to for routing.
fn general() -> Team {
    Team::parse(GENERAL).expect("a valid team name")
}

/// What the engine knows of an agent.
fn agent_spec(a: &Agent) -> AgentSpec {
    let mut teams = a.teams.clone();
    if !teams.iter().any(|t| t.as_str() == GENERAL) {
        teams.push(general());
    }
    let total = a.max_concurrent;
    let class = |n: Option<u32>| n.unwrap_or(total).min(total);
    AgentSpec {
        id: a.id,
        skills: a.skills.clone(),
        teams,
        capacity: Capacity {
            chat: class(a.capacity.chat),
            messaging: class(a.capacity.messaging),
            email: class(a.capacity.email),
            total,
        },
        presence: a.presence,
        shift: a.hours.clone(),
    }
}

fn placement_of(p: &Placement) -> TicketPlacement {
    match *p {
        Placement::Queued => TicketPlacement::Queued,
        Placement::Offered {
            agent,
            offered_at_ms,
            deadline_ms,
        } => TicketPlacement::Offered {
            agent,
            at: Timestamp::from_millis(offered_at_ms),
            deadline: deadline_ms.map(Timestamp::from_millis),
        },
        Placement::Owned { agent, since_ms } => TicketPlacement::Owned {
            agent,
            since: Timestamp::from_millis(since_ms),
        },
    }
}

fn routing_of(r: &TicketRecord) -> TicketRouting {
    TicketRouting {
        handoff: r.spec.id,
        team: r.spec.team.as_str().to_owned(),
        priority: r.spec.priority,
        queue_entered_at: Timestamp::from_millis(r.queue_entered_at_ms),
        overflowed: r.overflow_done,
        excluded: r.excluded.clone(),
        placement: placement_of(&r.placement),
    }
}

impl Router {
    /// A router over the store; call [`Router::start`] before use.
    pub fn new(store: SharedStore, dispatcher: Dispatcher, settings: RouterSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                dispatcher,
                settings,
                engine: Mutex::new(Engine::new()),
                seen: AtomicI64::new(UNVERSIONED),
                kick: Notify::new(),
                activity: watch::Sender::new(0),
            }),
        }
    }

    /// Stores the config file's queues, then rebuilds the engine from the store and routes
    /// whatever can be routed (offers that lapsed while Baton was down time out now).
    pub async fn start(&self) -> Result<(), RouterError> {
        for q in &self.inner.settings.queues {
            let json = serde_json::to_value(q).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.inner
                .store
                .set_queue_settings(q.team.as_str().to_owned(), json)
                .await?;
        }
        let mut engine = self.inner.engine.lock().await;
        self.rebuild(&mut engine).await?;
        let decisions = engine.tick(now_ms());
        self.persist(&engine, decisions, Vec::new()).await?;
        Ok(())
    }

    /// The stored queues, plus the general queue if none is stored for it.
    async fn queues(&self) -> Result<Vec<QueueConfig>, StoreError> {
        let mut queues = Vec::new();
        for (team, json) in self.inner.store.queue_settings().await? {
            match serde_json::from_value::<QueueConfig>(json) {
                Ok(q) => queues.push(q),
                Err(e) => {
                    return Err(StoreError::Corrupt(format!("queue {team}: {e}")));
                }
            }
        }
        if !queues.iter().any(|q| q.team.as_str() == GENERAL) {
            queues.push(QueueConfig::new(general()));
        }
        Ok(queues)
    }

    /// Rebuilds the engine from the store: the source of truth after a restart or a failed
    /// write.
    async fn rebuild(&self, engine: &mut Engine) -> Result<(), RouterError> {
        // Read before the state: a change landing in between leaves the version behind the
        // state, and the next sync reads both again (the other way round it would be missed).
        let version = self.inner.store.routing_version().await?;
        let queues = self.queues().await?;
        let (agents, tickets) = self.inner.store.routing_state().await?;
        let now = now_ms();
        let snapshot = Snapshot {
            taken_at_ms: now,
            agents: agents
                .iter()
                .map(|a| AgentRecord {
                    spec: agent_spec(&a.agent),
                    last_offered_ms: a.last_offered_at.map(|t| t.as_millis()),
                    last_offer_seq: 0,
                })
                .collect(),
            tickets: tickets
                .iter()
                .filter_map(|t| {
                    let team = Team::parse(&t.routing.team).ok()?;
                    // A ticket of a team whose queue is gone waits in the general queue.
                    let team = if queues.iter().any(|q| q.team == team) {
                        team
                    } else {
                        general()
                    };
                    let placement = match t.routing.placement {
                        TicketPlacement::Queued => Placement::Queued,
                        TicketPlacement::Offered {
                            agent,
                            at,
                            deadline,
                        } => Placement::Offered {
                            agent,
                            offered_at_ms: at.as_millis(),
                            deadline_ms: deadline.map(|d| d.as_millis()),
                        },
                        TicketPlacement::Owned { agent, since } => Placement::Owned {
                            agent,
                            since_ms: since.as_millis(),
                        },
                    };
                    Some(TicketRecord {
                        spec: TicketSpec {
                            id: t.routing.handoff,
                            team,
                            channel: t.channel,
                            priority: t.routing.priority,
                            required_skills: t.required_skills.clone(),
                            enqueued_at_ms: t.requested_at.as_millis(),
                            last_agent: t.last_agent.map(|(a, at)| (a, at.as_millis())),
                        },
                        queue_entered_at_ms: t.routing.queue_entered_at.as_millis(),
                        overflow_done: t.routing.overflowed,
                        excluded: t.routing.excluded.clone(),
                        placement,
                    })
                })
                .collect(),
        };
        *engine = Engine::restore(queues, snapshot)?;
        self.inner
            .seen
            .store(version.unwrap_or(UNVERSIONED), Ordering::SeqCst);
        Ok(())
    }

    /// Brings the engine up to the store when another gateway instance (or a store step such
    /// as closing a ticket) changed routing since the engine last read or wrote it, and routes
    /// what the fresh state allows (into `out`). Returns whether it rebuilt. A store of one
    /// instance has no versions, and this does nothing.
    async fn sync(
        &self,
        engine: &mut Engine,
        out: &mut Vec<Decision>,
    ) -> Result<bool, RouterError> {
        let Some(version) = self.inner.store.routing_version().await? else {
            return Ok(false);
        };
        if version == self.inner.seen.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.rebuild(engine).await?;
        out.extend(engine.tick(now_ms()));
        // Live views on this instance show what the others changed.
        self.touched();
        Ok(true)
    }

    /// Writes what the engine decided; on failure rebuilds the engine from the store.
    async fn persist(
        &self,
        engine: &Engine,
        decisions: Vec<Decision>,
        notes: Vec<(HandoffId, HandoffNote)>,
    ) -> Result<(), RouterError> {
        let now = Timestamp::now();
        let seen = self.inner.seen.load(Ordering::SeqCst);
        let mut batch = RoutingBatch {
            notes,
            decided_at: (seen != UNVERSIONED).then_some(seen),
            ..RoutingBatch::default()
        };
        let mut touched = BTreeSet::new();
        let mut closed_queues = Vec::new();
        for d in &decisions {
            let event = |kind, agent: Option<AgentId>, detail: Option<String>| RoutingEvent {
                kind,
                handoff: d.ticket().map(|t| t.id).unwrap_or_default(),
                agent,
                detail,
            };
            match d {
                Decision::Offered { agent, .. } => {
                    batch
                        .events
                        .push(event(HandoffEventKind::Offered, Some(*agent), None));
                    batch.offered_agents.push((*agent, now));
                }
                Decision::Accepted { agent, .. } => {
                    batch
                        .events
                        .push(event(HandoffEventKind::Accepted, Some(*agent), None));
                    batch
                        .events
                        .push(event(HandoffEventKind::Assigned, Some(*agent), None));
                }
                Decision::Declined { agent, .. } => {
                    batch
                        .events
                        .push(event(HandoffEventKind::Declined, Some(*agent), None))
                }
                Decision::OfferExpired { agent, .. } => {
                    batch
                        .events
                        .push(event(HandoffEventKind::OfferTimedOut, Some(*agent), None))
                }
                Decision::Withdrawn { agent, .. } => batch.events.push(event(
                    HandoffEventKind::Declined,
                    Some(*agent),
                    Some("withdrawn: the agent became unavailable".into()),
                )),
                Decision::Overflowed {
                    ticket,
                    from,
                    from_priority,
                } => batch.events.push(event(
                    HandoffEventKind::Overflowed,
                    None,
                    Some(format!(
                        "from {} ({}) to {} ({})",
                        from.as_str(),
                        from_priority,
                        ticket.team.as_str(),
                        ticket.priority
                    )),
                )),
                Decision::Transferred {
                    to, previous_agent, ..
                } => batch.events.push(event(
                    HandoffEventKind::Transferred,
                    *previous_agent,
                    Some(match to {
                        TransferTarget::Team(t) => format!("to team {}", t.as_str()),
                        TransferTarget::Agent(a) => format!("to agent {a}"),
                    }),
                )),
                Decision::ExclusionsReset { ticket, cleared } => {
                    tracing::info!(handoff_id = %ticket.id, cleared = cleared.len(),
                        "every qualified agent had declined; offering the ticket to them again");
                }
                Decision::QueueClosed { team, .. } => closed_queues.push(team.clone()),
                Decision::Queued { .. }
                | Decision::Released { .. }
                | Decision::Resolved { .. }
                | Decision::QueueOpened { .. } => {}
            }
            if let Some(t) = d.ticket() {
                touched.insert(t.id);
            }
        }
        for id in &touched {
            if let Some(record) = engine.ticket(*id) {
                batch.tickets.push(routing_of(&record));
            }
        }
        for team in closed_queues {
            self.closed_notices(engine, &team, &mut batch).await;
        }
        if batch.is_empty() {
            return Ok(());
        }
        let offers = batch
            .events
            .iter()
            .filter(|e| e.kind == HandoffEventKind::Offered)
            .count();
        let decided_at = batch.decided_at;
        match self.inner.store.apply_routing(batch).await {
            Ok(sent) => {
                // The write moved the version by exactly one: the engine is that state.
                if let Some(v) = decided_at {
                    self.inner.seen.store(v + 1, Ordering::SeqCst);
                }
                self.touched();
                if offers > 0 {
                    tracing::info!(offers, "tickets offered to agents");
                }
                if !sent.is_empty() {
                    self.inner.dispatcher.kick();
                }
                Ok(())
            }
            Err(e) => Err(RouterError::Store(e)),
        }
    }

    /// Runs `f` on the engine under the lock and persists what it decided. A refusal changes
    /// nothing (the timers it ran are persisted); a failed write rebuilds the engine.
    async fn change<F>(
        &self,
        notes: Vec<(HandoffId, HandoffNote)>,
        mut f: F,
    ) -> Result<(), RouterError>
    where
        F: FnMut(&mut Engine, i64, &mut Vec<Decision>) -> Result<(), EngineError>,
    {
        let mut engine = self.inner.engine.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut out = Vec::new();
            self.sync(&mut engine, &mut out).await?;
            let result = f(&mut engine, now_ms(), &mut out);
            let notes = if result.is_ok() {
                notes.clone()
            } else {
                Vec::new()
            };
            match self.persist(&engine, out, notes).await {
                Ok(()) => return result.map_err(RouterError::from),
                // Another instance routed meanwhile: decide again on what it left.
                Err(RouterError::Store(StoreError::StaleRouting)) if attempt < STALE_RETRIES => {
                    self.rebuild(&mut engine).await?;
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not store a routing step; rebuilding the router from the store");
                    if let Err(r) = self.rebuild(&mut engine).await {
                        tracing::error!(error = %r, "rebuilding the router failed");
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Routes what the engine (brought up to the store) allows and stores it, deciding again
    /// when another instance routed meanwhile. For steps whose own change the store already
    /// made (a ticket enqueued, closed, abandoned): `out` holds what the engine decided on it.
    async fn settle(&self, engine: &mut Engine, mut out: Vec<Decision>) -> Result<(), RouterError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.persist(engine, out, Vec::new()).await {
                Ok(()) => return Ok(()),
                Err(RouterError::Store(StoreError::StaleRouting)) if attempt < STALE_RETRIES => {
                    self.rebuild(engine).await?;
                    out = engine.tick(now_ms());
                }
                Err(e) => {
                    if let Err(r) = self.rebuild(engine).await {
                        tracing::error!(error = %r, "rebuilding the router failed");
                    }
                    return Err(e);
                }
            }
        }
    }

    /// A new ticket (already stored as queued): into its queue, offered at once if someone
    /// can take it, and the customer told where they stand.
    pub async fn enqueue(
        &self,
        handoff: &Handoff,
        channel: ChannelKind,
    ) -> Result<(), RouterError> {
        let customer = self
            .inner
            .store
            .conversation(handoff.conversation_id)
            .await?
            .customer_id;
        let last = self.inner.store.last_agent_of(customer).await?;
        let team = handoff
            .team
            .as_deref()
            .and_then(|t| Team::parse(t).ok())
            .unwrap_or_else(general);
        let mut engine = self.inner.engine.lock().await;
        // A team without a queue of its own waits in the general one.
        let team = if engine.queue_len(&team).is_some() {
            team
        } else {
            tracing::warn!(
                team = team.as_str(),
                "no queue for this team; using the general queue"
            );
            general()
        };
        let spec = TicketSpec {
            id: handoff.id,
            team,
            channel,
            priority: handoff.priority,
            required_skills: handoff
                .required_skills
                .iter()
                .filter_map(|s| crate::model::Skill::parse(s).ok())
                .collect(),
            enqueued_at_ms: handoff.requested_at.as_millis(),
            last_agent: last.map(|(a, at)| (a, at.as_millis())),
        };
        let mut out = Vec::new();
        // A rebuild reads the ticket back from the store (it is stored as queued), and
        // routes it with the rest.
        let known = self.sync(&mut engine, &mut out).await? && engine.ticket(handoff.id).is_some();
        let result = if known {
            Ok(())
        } else {
            engine.enqueue(spec, now_ms(), &mut out)
        };
        let persisted = self.settle(&mut engine, out).await;
        if let Err(e) = persisted.and(result.map_err(RouterError::from)) {
            if let Err(r) = self.rebuild(&mut engine).await {
                tracing::error!(error = %r, "rebuilding the router failed");
            }
            return Err(e);
        }
        // The customer hears at once where they stand.
        let mut batch = RoutingBatch::default();
        if let Some(notice) = self.standing_notice(&engine, handoff, None).await {
            batch.notices.push(notice);
        }
        drop(engine);
        if !batch.is_empty() && !self.inner.store.apply_routing(batch).await?.is_empty() {
            self.inner.dispatcher.kick();
        }
        self.touched();
        Ok(())
    }

    /// What to tell a waiting customer now, if anything (given what they were last told).
    async fn standing_notice(
        &self,
        engine: &Engine,
        handoff: &Handoff,
        told: Option<(Option<u32>, Option<i64>, i64)>,
    ) -> Option<WaitingNotice> {
        let record = engine.ticket(handoff.id)?;
        let team = record.spec.team.clone();
        let now = now_ms();
        let standing = match record.placement {
            Placement::Offered { .. } => Standing::Next,
            Placement::Owned { .. } => return None,
            Placement::Queued if engine.is_open(&team) == Some(false) => Standing::Closed {
                opens_at_ms: engine.next_open(&team, now),
                tz: engine
                    .queue_config(&team)
                    .and_then(|q| q.hours.as_ref())
                    .and_then(|h| jiff::tz::TimeZone::get(&h.config().timezone).ok()),
            },
            Placement::Queued => {
                let (position, _) = engine.position(handoff.id)?;
                let position = u32::try_from(position).unwrap_or(u32::MAX);
                let since = Timestamp::from_millis(now - 3_600_000);
                let (accepted, median) = self
                    .inner
                    .store
                    .recent_acceptances(team.as_str(), since)
                    .await
                    .unwrap_or((0, None));
                Standing::InLine {
                    position,
                    wait_ms: waiting::estimate(position, accepted, median),
                }
            }
        };
        if let Some((told_position, told_wait, told_ago)) = told
            && !waiting::worth_telling(
                told_position,
                told_wait,
                told_ago,
                &standing,
                self.inner.settings.update_gap.as_millis() as i64,
            )
        {
            return None;
        }
        let text = waiting::message(
            &self.inner.settings.texts,
            handoff.language.as_deref(),
            &standing,
        );
        let text = MessageText::parse(&text).ok()?;
        let (position, wait_ms) = match standing {
            Standing::InLine { position, wait_ms } => (Some(position), wait_ms),
            Standing::Next => (Some(1), None),
            Standing::Closed { .. } => (None, None),
        };
        Some(WaitingNotice {
            handoff: handoff.id,
            text,
            position,
            wait_ms,
        })
    }

    /// Tells everyone waiting in a queue that just closed when people are back.
    async fn closed_notices(&self, engine: &Engine, team: &Team, batch: &mut RoutingBatch) {
        let Ok(waiting) = self
            .inner
            .store
            .list_handoffs(Some(crate::model::HandoffStatus::Queued), 1000)
            .await
        else {
            return;
        };
        for h in waiting {
            let in_queue = engine
                .ticket(h.id)
                .is_some_and(|r| &r.spec.team == team && r.placement == Placement::Queued);
            if in_queue && let Some(n) = self.standing_notice(engine, &h, None).await {
                batch.notices.push(n);
            }
        }
    }

    /// The agent takes the ticket offered to them.
    pub async fn accept(&self, ticket: HandoffId, agent: AgentId) -> Result<(), RouterError> {
        self.change(Vec::new(), |e, now, out| e.accept(ticket, agent, now, out))
            .await
    }

    /// The agent turns the offer down; it goes to the next agent.
    pub async fn decline(&self, ticket: HandoffId, agent: AgentId) -> Result<(), RouterError> {
        self.change(Vec::new(), |e, now, out| e.decline(ticket, agent, now, out))
            .await
    }

    /// Closes (resolve) or hands back (release) a ticket: the store step first, then the
    /// agent's slot goes to the next waiting ticket.
    pub async fn finish(
        &self,
        ticket: HandoffId,
        step: TicketStep,
        agent: Option<AgentId>,
    ) -> Result<Handoff, RouterError> {
        let mut engine = self.inner.engine.lock().await;
        let handoff = self.inner.store.ticket_step(ticket, step, agent).await?;
        let mut out = Vec::new();
        // A store shared by several instances: the step moved the routing version, and the
        // engine reads the store again (without the closed ticket) instead.
        if !self.sync(&mut engine, &mut out).await? {
            let now = now_ms();
            let result = match step {
                TicketStep::Resolve => engine.resolve(ticket, now, &mut out),
                _ => engine.release(ticket, now, &mut out),
            };
            if let Err(e) = result {
                // The store closed it; an engine that did not know it is simply behind.
                tracing::warn!(handoff_id = %ticket, error = %e, "closed a ticket the router did not hold");
            }
        }
        self.settle(&mut engine, out).await?;
        self.touched();
        Ok(handoff)
    }

    /// Moves a ticket to another team's queue or offers it to a specific agent, with a note
    /// that travels with it.
    pub async fn transfer(
        &self,
        ticket: HandoffId,
        by: Option<AgentId>,
        to: TransferTarget,
        note: String,
    ) -> Result<(), RouterError> {
        let (to_team, to_agent) = match &to {
            TransferTarget::Team(t) => (Some(t.as_str().to_owned()), None),
            TransferTarget::Agent(a) => (None, Some(*a)),
        };
        let note = HandoffNote {
            kind: "transfer".into(),
            author_agent_id: by,
            to_team,
            to_agent_id: to_agent,
            text: note,
            created_at: Timestamp::now(),
        };
        self.change(vec![(ticket, note)], |e, now, out| {
            e.transfer(ticket, to.clone(), now, out)
        })
        .await
    }

    /// An agent was created or changed (presence, skills, teams, capacity, hours).
    pub async fn agent_changed(&self, agent: AgentId) -> Result<(), RouterError> {
        let a = self.inner.store.agent(agent).await?;
        let spec = agent_spec(&a);
        let result = self
            .change(Vec::new(), |e, now, out| {
                e.upsert_agent(spec.clone(), now, out)
            })
            .await;
        // Presence and load show on the live panel even when nothing was routed.
        self.touched();
        result
    }

    /// Adds or replaces a queue, durably.
    pub async fn set_queue(&self, queue: QueueConfig) -> Result<(), RouterError> {
        let json = serde_json::to_value(&queue).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut engine = self.inner.engine.lock().await;
        let mut out = Vec::new();
        self.sync(&mut engine, &mut out).await?;
        // Checked by the engine first, so a bad queue is never stored.
        let mut probe = Vec::new();
        let mut copy = self.queues().await?;
        copy.retain(|q| q.team != queue.team);
        copy.push(queue.clone());
        Engine::new().configure_queues(copy, now_ms(), &mut probe)?;
        self.inner
            .store
            .set_queue_settings(queue.team.as_str().to_owned(), json)
            .await?;
        engine.configure_queues(vec![queue], now_ms(), &mut out)?;
        self.settle(&mut engine, out).await
    }

    /// Every queue's settings.
    pub async fn queue_configs(&self) -> Result<Vec<QueueConfig>, StoreError> {
        self.queues().await
    }

    /// Where a waiting ticket stands: (position, queue length).
    pub async fn position(&self, ticket: HandoffId) -> Option<(usize, usize)> {
        self.inner.engine.lock().await.position(ticket)
    }

    /// Changes with every stored routing change (a ticket queued, offered, accepted, closed;
    /// an agent's presence): subscribe to refresh live views.
    pub fn activity(&self) -> watch::Receiver<u64> {
        self.inner.activity.subscribe()
    }

    fn touched(&self) {
        self.inner.activity.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Asks the worker to run now.
    pub fn kick(&self) {
        self.inner.kick.notify_one();
    }

    /// One step of the worker: timers (offer timeouts, overflow, hours), then customers who
    /// left, then waiting updates.
    pub async fn tick(&self) -> Result<(), RouterError> {
        {
            let mut engine = self.inner.engine.lock().await;
            // Tickets and agents other instances changed come in here, within a second.
            let mut decisions = Vec::new();
            if !self.sync(&mut engine, &mut decisions).await? {
                decisions = engine.tick(now_ms());
            }
            self.settle(&mut engine, decisions).await?;
        }
        self.abandon_silent().await?;
        self.update_waiting().await?;
        Ok(())
    }

    /// Queued tickets whose customer went quiet for too long are abandoned.
    async fn abandon_silent(&self) -> Result<(), RouterError> {
        let Some(after) = self.inner.settings.abandon_after else {
            return Ok(());
        };
        let cutoff = Timestamp::from_millis(now_ms() - after.as_millis() as i64);
        let silent = self.inner.store.silent_queued(cutoff, 100).await?;
        for id in silent {
            let mut engine = self.inner.engine.lock().await;
            match self.inner.store.abandon(id).await {
                Ok(_) => {
                    let mut out = Vec::new();
                    if !self.sync(&mut engine, &mut out).await? {
                        let _ = engine.release(id, now_ms(), &mut out);
                    }
                    self.settle(&mut engine, out).await?;
                    self.touched();
                    tracing::info!(handoff_id = %id, "the customer left while waiting; ticket abandoned");
                }
                // Taken meanwhile: not abandoned after all.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Tells waiting customers whose standing changed materially.
    async fn update_waiting(&self) -> Result<(), RouterError> {
        let queued = self
            .inner
            .store
            .list_handoffs(Some(crate::model::HandoffStatus::Queued), 200)
            .await?;
        if queued.is_empty() {
            return Ok(());
        }
        let told = self
            .inner
            .store
            .told(queued.iter().map(|h| h.id).collect())
            .await?;
        let engine = self.inner.engine.lock().await;
        let mut batch = RoutingBatch::default();
        let now = now_ms();
        for h in &queued {
            let (position, wait, at) = told.get(&h.id).copied().unwrap_or((None, None, None));
            let Some(at) = at else {
                // Never told (a crash right after queueing): tell them now.
                if let Some(n) = self.standing_notice(&engine, h, None).await {
                    batch.notices.push(n);
                }
                continue;
            };
            if let Some(n) = self
                .standing_notice(&engine, h, Some((position, wait, now - at.as_millis())))
                .await
            {
                batch.notices.push(n);
            }
        }
        drop(engine);
        if !batch.is_empty() && !self.inner.store.apply_routing(batch).await?.is_empty() {
            self.inner.dispatcher.kick();
        }
        Ok(())
    }

    /// Runs until `shutdown` turns true: a tick every second and on every kick.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "routing step failed");
            }
            tokio::select! {
                _ = self.inner.kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Whether an agent is known and online (for the API's checks).
    pub async fn presence_of(&self, agent: AgentId) -> Result<Presence, StoreError> {
        Ok(self.inner.store.agent(agent).await?.presence)
    }
}

//! The routing engine: which waiting ticket goes to which agent, and when.
//!
//! Pure and in memory: no I/O, no async, no clock. Every call takes `now_ms` (epoch
//! milliseconds) and appends the [`Decision`]s it made to a caller's buffer; the caller persists
//! each one and emits its analytics event. Given the same calls, the engine makes the same
//! decisions, which is what the tests, the randomized invariant check and [`Engine::restore`]
//! rely on.
//!
//! # Model
//!
//! * One **queue per team** ([`QueueConfig`]): required skills added to every ticket in it, a
//!   [`Strategy`], an optional sticky window, an accept timeout, an overflow rule, business
//!   hours and an on-call team.
//! * **Agents** ([`AgentSpec`]) have skills, teams, a [`Capacity`] per [`WorkClass`] plus an
//!   overall maximum, a [`Presence`] and optionally a shift ([`BusinessHours`]). An agent is
//!   *available* when Online and on shift; only available agents get offers.
//! * A **ticket** is in exactly one place: queued, offered to one agent (occupying a slot until
//!   accepted, declined or timed out), or owned by one agent. Released and resolved tickets
//!   leave the engine.
//!
//! # Routing rules
//!
//! * Queue order is priority (Urgent first), then enqueue time (oldest first), then ticket id.
//!   A declined, expired or withdrawn ticket goes back with its original enqueue time.
//! * **Ticket → agent** (a ticket arrives or comes back): the sticky agent if the queue has a
//!   window, the ticket's last agent helped within it and is eligible; otherwise the queue's
//!   strategy among eligible agents of the team serving the queue. Eligible = available, in the
//!   serving team, holding every required skill, free in the ticket's class and overall, and
//!   not excluded for that ticket.
//! * **Agent → ticket** (a slot frees, an agent comes online, a shift starts, capacity grows):
//!   the agent takes the best ticket (priority, then age) they are eligible for across every
//!   queue their teams currently serve, and repeats while they have room. Strategies do not
//!   apply here: when tickets wait, nobody else eligible is free.
//! * When many agents become free at once (a queue opens, [`Engine::tick`]), they take one
//!   ticket per turn in round-robin order, so a burst spreads instead of filling one agent.
//! * A queue outside its business hours is served by its `on_call` team if it has one, and by
//!   nobody otherwise (its tickets wait). [`Engine::next_open`] says when it opens.
//! * **Exclusions**: an agent who declines, lets an offer expire, or transfers a ticket away is
//!   excluded for that ticket and is never offered it again while some other *qualified* agent
//!   (available, in the serving team, with the skills and a non-zero capacity for the class,
//!   busy or not) is not excluded. Once every qualified agent is excluded (and there is at least
//!   one), the exclusions are cleared ([`Decision::ExclusionsReset`]) and routing starts over, so
//!   a ticket is never stranded because everybody said no once. While a non-excluded qualified
//!   agent exists but is busy, the ticket waits for them rather than bouncing back to the
//!   decliners.
//! * **Overflow**: a queued ticket waiting `overflow_after_ms` since it entered its queue moves
//!   to `overflow_to`'s queue and/or is raised to `overflow_priority` (never lowered), once per
//!   queue it enters. Only queued tickets overflow; an offer in flight is left alone.
//! * Going Away/Offline, going off shift or being removed withdraws an agent's offers; removal
//!   also puts their owned tickets back in the queue. Lowering a capacity below the current load
//!   withdraws the offers of that class; owned work is kept, so such an agent is over capacity
//!   until it finishes (the engine itself never offers beyond capacity).
//!
//! # Time
//!
//! Timers (offer deadlines, overflows, queue hours, agent shifts) live in one ordered set. Every
//! call first runs the timers due at `now_ms`, then does its work, then runs any that its work
//! made due, so e.g. accepting an offer whose deadline has passed fails even if
//! [`Engine::tick`] has not run. `tick` additionally sweeps every free agent and every excluded
//! ticket, as a safety net; it is idempotent.
//!
//! # Data structures, and why
//!
//! The target is 1,000 agents and 100,000 queued tickets with every decision well under 100 µs,
//! so nothing per decision may be O(tickets):
//!
//! * Skills and teams are interned to small integers; a set of skills is a bitset, so
//!   "has every required skill" is a few word operations.
//! * Each queue keeps its tickets in **buckets by (required-skill set, work class)**, each a
//!   `BTreeSet` ordered by (priority desc, enqueued at, id). Real deployments have few distinct
//!   skill sets, so an agent looking for work peeks the head of each bucket it qualifies for
//!   and has room in: O(buckets · log n). Tickets that excluded agents are flagged in their key,
//!   so only those cost a lookup; an agent skips at most the tickets they excluded themselves.
//! * Each team keeps its members and, per work class, the set of available members with room:
//!   routing a ticket scans only agents who could take it now (few under load, and cheap when
//!   many are idle), scoring them by strategy with a total order that ends in the agent id.
//! * Nothing that decides an outcome depends on hash-map order or internal indexes: ties break
//!   on ids, so an engine rebuilt from a [`Snapshot`] makes identical decisions.
//!
//! [`Engine::position`] is the one O(queue length) call: it counts the tickets ahead.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use crate::handoff::hours::BusinessHours;
use crate::model::{
    AgentId, ChannelKind, HandoffEventKind, HandoffId, Presence, Priority, Skill, Team,
};

/// How long an offer stands by default before it times out.
pub const DEFAULT_ACCEPT_TIMEOUT_MS: i64 = 30_000;

/// When a schedule neither opens nor closes within its horizon, look again this much later.
const HOURS_RECHECK_MS: i64 = 30 * 24 * 3600 * 1000;

/// A kind of work with its own capacity: an agent can hold a few live chats, more messaging
/// threads (customers answer slowly) and many emails at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkClass {
    /// Live, synchronous: the API channel and the web chat widget.
    Chat,
    /// Asynchronous messaging apps and SMS.
    Messaging,
    /// Email.
    Email,
}

impl WorkClass {
    /// Every class, in index order.
    pub const ALL: [WorkClass; 3] = [WorkClass::Chat, WorkClass::Messaging, WorkClass::Email];

    /// The class of work a conversation on `channel` is.
    pub fn of(channel: ChannelKind) -> Self {
        match channel {
            ChannelKind::Api | ChannelKind::WebChat => WorkClass::Chat,
            ChannelKind::Messenger
            | ChannelKind::Instagram
            | ChannelKind::WhatsApp
            | ChannelKind::Telegram
            | ChannelKind::Sms => WorkClass::Messaging,
            ChannelKind::Email => WorkClass::Email,
        }
    }

    /// The stable name used in analytics.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkClass::Chat => "chat",
            WorkClass::Messaging => "messaging",
            WorkClass::Email => "email",
        }
    }

    fn ix(self) -> usize {
        self as usize
    }
}

/// How a queue picks among eligible agents when a ticket needs one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The eligible agent offered a ticket least recently (never offered first).
    #[default]
    RoundRobin,
    /// The lowest load/capacity ratio in the ticket's class; ties by round robin.
    LeastBusy,
    /// The fewest skills beyond what the ticket needs, keeping generalists free for tickets
    /// only they can take; ties by least busy, then round robin.
    BestFit,
}

/// How much work an agent takes at once, per class and overall. Also the shape in which
/// [`Engine::agent_load`] reports current load.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Capacity {
    /// Live chats.
    pub chat: u32,
    /// Messaging threads.
    pub messaging: u32,
    /// Emails.
    pub email: u32,
    /// All classes together.
    pub total: u32,
}

impl Capacity {
    /// The same limit for each class and overall (what `Agent::max_concurrent` means today).
    pub fn uniform(n: u32) -> Self {
        Self {
            chat: n,
            messaging: n,
            email: n,
            total: n,
        }
    }

    /// The limit for one class.
    pub fn of(&self, class: WorkClass) -> u32 {
        match class {
            WorkClass::Chat => self.chat,
            WorkClass::Messaging => self.messaging,
            WorkClass::Email => self.email,
        }
    }

    fn from_loads(per_class: [u32; 3], total: u32) -> Self {
        Self {
            chat: per_class[0],
            messaging: per_class[1],
            email: per_class[2],
            total,
        }
    }
}

/// An agent as the engine needs to know them.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    /// Their id.
    pub id: AgentId,
    /// What they can handle (languages are skills like `lang:es`).
    pub skills: Vec<Skill>,
    /// The teams whose queues they work.
    pub teams: Vec<Team>,
    /// How much they take at once.
    pub capacity: Capacity,
    /// Whether they take new work (only Online does).
    pub presence: Presence,
    /// Their own shift, if they have one: off shift they take no new work.
    pub shift: Option<BusinessHours>,
}

/// A queue: one per team.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The team whose queue this is.
    #[serde(deserialize_with = "de::team")]
    pub team: Team,
    /// How an agent is chosen for a ticket.
    #[serde(default)]
    pub strategy: Strategy,
    /// Skills every ticket in this queue needs on top of its own.
    #[serde(default, deserialize_with = "de::skills")]
    pub required_skills: Vec<Skill>,
    /// Prefer the customer's last agent if they helped within this many milliseconds.
    #[serde(default)]
    pub sticky_window_ms: Option<i64>,
    /// How long an offer stands before it times out; `None` waits for an answer forever.
    #[serde(default = "default_accept_timeout")]
    pub accept_timeout_ms: Option<i64>,
    /// Apply the overflow rule to tickets that waited this long in this queue.
    #[serde(default)]
    pub overflow_after_ms: Option<i64>,
    /// Where overflowing tickets move (a team with a queue).
    #[serde(default, deserialize_with = "de::opt_team")]
    pub overflow_to: Option<Team>,
    /// What overflowing tickets are raised to (never lowered).
    #[serde(default)]
    pub overflow_priority: Option<Priority>,
    /// When the team serves the queue; `None` is always.
    #[serde(default)]
    pub hours: Option<BusinessHours>,
    /// The team that serves the queue outside its hours; without one, tickets wait.
    #[serde(default, deserialize_with = "de::opt_team")]
    pub on_call: Option<Team>,
}

fn default_accept_timeout() -> Option<i64> {
    Some(DEFAULT_ACCEPT_TIMEOUT_MS)
}

impl QueueConfig {
    /// A round-robin queue for `team`, always open, with the default accept timeout and no
    /// stickiness or overflow.
    pub fn new(team: Team) -> Self {
        Self {
            team,
            strategy: Strategy::RoundRobin,
            required_skills: Vec::new(),
            sticky_window_ms: None,
            accept_timeout_ms: default_accept_timeout(),
            overflow_after_ms: None,
            overflow_to: None,
            overflow_priority: None,
            hours: None,
            on_call: None,
        }
    }
}

/// A ticket as it enters the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketSpec {
    /// The handoff.
    pub id: HandoffId,
    /// The team whose queue it joins.
    pub team: Team,
    /// The conversation's channel (its [`WorkClass`] decides which capacity it uses).
    pub channel: ChannelKind,
    /// How urgent.
    pub priority: Priority,
    /// Skills the agent needs (plus the queue's own).
    pub required_skills: Vec<Skill>,
    /// When it was queued: orders it among equal priorities and counts its wait.
    pub enqueued_at_ms: i64,
    /// Who last helped this customer, and when, for sticky routing.
    pub last_agent: Option<(AgentId, i64)>,
}

/// Where a transfer sends a ticket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferTarget {
    /// Into another team's queue.
    Team(Team),
    /// Offered directly to this agent (who must be available with room; skills and team are
    /// the transferring person's call).
    Agent(AgentId),
}

/// The context every ticket decision carries, so each maps to one analytics event on its own.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TicketContext {
    /// The ticket.
    pub id: HandoffId,
    /// The queue (team) it is in after the decision.
    pub team: Team,
    /// Its priority after the decision.
    pub priority: Priority,
    /// Its channel.
    pub channel: ChannelKind,
    /// Its channel's class.
    pub class: WorkClass,
    /// Milliseconds since it was enqueued.
    pub wait_ms: i64,
}

/// One thing the engine decided. The caller persists it and emits its event; the engine's own
/// state already reflects it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decision {
    /// A new ticket joined its queue (an `Offered` may follow at once).
    Queued {
        /// The ticket.
        ticket: TicketContext,
    },
    /// Offered to an agent, occupying one of their slots until they answer.
    Offered {
        /// The ticket.
        ticket: TicketContext,
        /// Who it is offered to.
        agent: AgentId,
        /// When the offer times out, if it does.
        deadline_ms: Option<i64>,
    },
    /// The agent took the ticket.
    Accepted {
        /// The ticket.
        ticket: TicketContext,
        /// Who owns it now.
        agent: AgentId,
    },
    /// The agent said no: the ticket is back in its queue and they are excluded for it.
    Declined {
        /// The ticket.
        ticket: TicketContext,
        /// Who declined.
        agent: AgentId,
    },
    /// The offer timed out: as a decline.
    OfferExpired {
        /// The ticket.
        ticket: TicketContext,
        /// Who did not answer.
        agent: AgentId,
    },
    /// The agent became unavailable or was removed; the ticket is back in its queue, without
    /// excluding them.
    Withdrawn {
        /// The ticket.
        ticket: TicketContext,
        /// Whose offer or work it was.
        agent: AgentId,
        /// Whether they had accepted it (only when the agent was removed).
        was_owned: bool,
    },
    /// The ticket waited too long: moved and/or raised in priority.
    Overflowed {
        /// The ticket, with its new team and priority.
        ticket: TicketContext,
        /// The queue it left (equal to `ticket.team` when only the priority changed).
        from: Team,
        /// Its priority before.
        from_priority: Priority,
    },
    /// Someone transferred the ticket.
    Transferred {
        /// The ticket (its team is the queue it now belongs to).
        ticket: TicketContext,
        /// The queue it was in.
        from: Team,
        /// Where it went.
        to: TransferTarget,
        /// Who had it offered or owned, whose slot is now free.
        previous_agent: Option<AgentId>,
    },
    /// Every qualified agent had been excluded: the exclusions were cleared and routing starts
    /// over.
    ExclusionsReset {
        /// The ticket.
        ticket: TicketContext,
        /// The agents no longer excluded.
        cleared: Vec<AgentId>,
    },
    /// Handed back to the bot; the ticket left the engine.
    Released {
        /// The ticket.
        ticket: TicketContext,
        /// Whose slot it freed.
        agent: Option<AgentId>,
    },
    /// Closed; the ticket left the engine.
    Resolved {
        /// The ticket.
        ticket: TicketContext,
        /// Whose slot it freed.
        agent: Option<AgentId>,
    },
    /// A queue's business hours began.
    QueueOpened {
        /// The queue.
        team: Team,
    },
    /// A queue's business hours ended.
    QueueClosed {
        /// The queue.
        team: Team,
        /// When it opens again, to tell waiting customers.
        opens_at_ms: Option<i64>,
        /// Who serves it meanwhile.
        on_call: Option<Team>,
    },
}

impl Decision {
    /// A stable snake_case name (`"offered"`, `"offer_expired"`, ...) for analytics.
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Queued { .. } => "queued",
            Decision::Offered { .. } => "offered",
            Decision::Accepted { .. } => "accepted",
            Decision::Declined { .. } => "declined",
            Decision::OfferExpired { .. } => "offer_expired",
            Decision::Withdrawn { .. } => "withdrawn",
            Decision::Overflowed { .. } => "overflowed",
            Decision::Transferred { .. } => "transferred",
            Decision::ExclusionsReset { .. } => "exclusions_reset",
            Decision::Released { .. } => "released",
            Decision::Resolved { .. } => "resolved",
            Decision::QueueOpened { .. } => "queue_opened",
            Decision::QueueClosed { .. } => "queue_closed",
        }
    }

    /// The ticket it is about, with its context; `None` for queue-level decisions.
    pub fn ticket(&self) -> Option<&TicketContext> {
        match self {
            Decision::Queued { ticket }
            | Decision::Offered { ticket, .. }
            | Decision::Accepted { ticket, .. }
            | Decision::Declined { ticket, .. }
            | Decision::OfferExpired { ticket, .. }
            | Decision::Withdrawn { ticket, .. }
            | Decision::Overflowed { ticket, .. }
            | Decision::Transferred { ticket, .. }
            | Decision::ExclusionsReset { ticket, .. }
            | Decision::Released { ticket, .. }
            | Decision::Resolved { ticket, .. } => Some(ticket),
            Decision::QueueOpened { .. } | Decision::QueueClosed { .. } => None,
        }
    }

    /// The agent involved, if any (for a transfer, the previous one).
    pub fn agent(&self) -> Option<AgentId> {
        match self {
            Decision::Offered { agent, .. }
            | Decision::Accepted { agent, .. }
            | Decision::Declined { agent, .. }
            | Decision::OfferExpired { agent, .. }
            | Decision::Withdrawn { agent, .. } => Some(*agent),
            Decision::Transferred { previous_agent, .. } => *previous_agent,
            Decision::Released { agent, .. } | Decision::Resolved { agent, .. } => *agent,
            _ => None,
        }
    }

    /// The existing analytics event kind this decision is, where the model has one
    /// (queued, assigned = offered, accepted, resolved, released).
    pub fn event_kind(&self) -> Option<HandoffEventKind> {
        match self {
            Decision::Queued { .. } => Some(HandoffEventKind::Queued),
            Decision::Offered { .. } => Some(HandoffEventKind::Assigned),
            Decision::Accepted { .. } => Some(HandoffEventKind::Accepted),
            Decision::Resolved { .. } => Some(HandoffEventKind::Resolved),
            Decision::Released { .. } => Some(HandoffEventKind::Released),
            _ => None,
        }
    }
}

/// Why a call was refused. A refused call changes nothing itself, but timers that were due at
/// `now_ms` have run and their decisions are in the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No such ticket in the engine.
    #[error("ticket {0} is not in the router")]
    UnknownTicket(HandoffId),
    /// A ticket with this id is already in the engine.
    #[error("ticket {0} is already in the router")]
    DuplicateTicket(HandoffId),
    /// No such agent.
    #[error("agent {0} is not known to the router")]
    UnknownAgent(AgentId),
    /// The team has no queue.
    #[error("team {0:?} has no queue")]
    UnknownQueue(String),
    /// The ticket is not (or no longer) offered to this agent.
    #[error("ticket {ticket} is not offered to agent {agent}")]
    NotOfferedTo {
        /// The ticket.
        ticket: HandoffId,
        /// The agent.
        agent: AgentId,
    },
    /// The agent is not Online and on shift.
    #[error("agent {0} is not available")]
    AgentUnavailable(AgentId),
    /// The agent has no room for the ticket's class.
    #[error("agent {0} has no free capacity for this ticket")]
    AgentAtCapacity(AgentId),
    /// The transfer would leave the ticket where it is.
    #[error("ticket {0} is already there")]
    AlreadyThere(HandoffId),
    /// A queue configuration is inconsistent.
    #[error("invalid queue configuration for {team:?}: {why}")]
    InvalidQueue {
        /// The queue.
        team: String,
        /// What is wrong.
        why: String,
    },
}

/// Where a ticket is, as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Placement {
    /// Waiting in its queue.
    Queued,
    /// Offered to an agent.
    Offered {
        /// To whom.
        agent: AgentId,
        /// When.
        offered_at_ms: i64,
        /// When the offer times out, if it does.
        deadline_ms: Option<i64>,
    },
    /// Accepted by an agent.
    Owned {
        /// By whom.
        agent: AgentId,
        /// Since when.
        since_ms: i64,
    },
}

/// A ticket's full routing state: what the store persists and [`Engine::restore`] reads back.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRecord {
    /// The ticket; `team` and `priority` are the current ones (after transfers and overflow).
    pub spec: TicketSpec,
    /// When it entered its current queue (overflow counts from here).
    pub queue_entered_at_ms: i64,
    /// Whether its current queue's overflow rule has been applied.
    pub overflow_done: bool,
    /// Agents who must not be offered it (see the module docs for when this is cleared).
    pub excluded: Vec<AgentId>,
    /// Where it is.
    pub placement: Placement,
}

/// An agent's routing state.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    /// The agent.
    pub spec: AgentSpec,
    /// When they were last offered a ticket (round robin).
    pub last_offered_ms: Option<i64>,
    /// The engine's sequence number of that offer, breaking ties within one millisecond. A
    /// store that keeps only the time can pass 0: ties then break by agent id.
    pub last_offer_seq: u64,
}

/// Everything needed to rebuild an engine, apart from the queue configuration (which comes
/// from config, not from the store).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The engine's clock: business hours and shifts are evaluated at this time on restore.
    pub taken_at_ms: i64,
    /// Every agent, by id.
    pub agents: Vec<AgentRecord>,
    /// Every ticket, by id.
    pub tickets: Vec<TicketRecord>,
}

// ---------------------------------------------------------------------------------------------
// Internals.

type AgentIx = u32;
type TeamIx = u32;
type SetIx = u32;

/// A set of interned skills. Canonical (no trailing zero words) so it can key a map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn insert(&mut self, i: u32) {
        let word = (i / 64) as usize;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (i % 64);
    }

    fn is_subset_of(&self, other: &Bits) -> bool {
        self.0
            .iter()
            .enumerate()
            .all(|(i, w)| w & !other.0.get(i).copied().unwrap_or(0) == 0)
    }

    fn union(&self, other: &Bits) -> Bits {
        let n = self.0.len().max(other.0.len());
        Bits(
            (0..n)
                .map(|i| self.0.get(i).copied().unwrap_or(0) | other.0.get(i).copied().unwrap_or(0))
                .collect(),
        )
    }

    fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

#[derive(Debug)]
struct Interner<T> {
    ix: HashMap<T, u32>,
    items: Vec<T>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Self {
            ix: HashMap::new(),
            items: Vec::new(),
        }
    }
}

impl<T: Hash + Eq + Clone> Interner<T> {
    fn intern(&mut self, t: &T) -> u32 {
        if let Some(&i) = self.ix.get(t) {
            return i;
        }
        let i = self.items.len() as u32;
        self.items.push(t.clone());
        self.ix.insert(t.clone(), i);
        i
    }

    fn get(&self, t: &T) -> Option<u32> {
        self.ix.get(t).copied()
    }
}

/// A queued ticket's place in a bucket. The derived order is the queue order; `id` is unique,
/// so `excluded` never takes part in a comparison and only saves a lookup for the common
/// ticket nobody declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    priority: Reverse<Priority>,
    enqueued_at: i64,
    id: HandoffId,
    excluded: bool,
}

/// Timers, ordered by time and then by kind: at the same instant queues open before shifts
/// start, before offers expire, before tickets overflow. Keys are names and ids, never
/// internal indexes, so a rebuilt engine fires them in the same order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Hours(Team),
    Shift(AgentId),
    Offer(HandoffId),
    Overflow(HandoffId),
}

#[derive(Debug)]
struct Bucket {
    bits: Bits,
    class: WorkClass,
    keys: BTreeSet<Key>,
}

#[derive(Debug)]
struct Queue {
    cfg: QueueConfig,
    team: TeamIx,
    required: Bits,
    on_call: Option<TeamIx>,
    overflow_to: Option<TeamIx>,
    open: bool,
    hours_timer: Option<i64>,
    served_by: Option<TeamIx>,
    buckets: Vec<Bucket>,
    bucket_of: HashMap<(SetIx, WorkClass), usize>,
    len: usize,
    /// Queued tickets with exclusions, for the "everybody declined" check.
    with_exclusions: BTreeSet<Key>,
}

#[derive(Debug, Default)]
struct TeamState {
    members: BTreeSet<AgentIx>,
    /// Available members with room, per work class.
    free: [BTreeSet<AgentIx>; 3],
    /// Queues (by team index) this team currently serves.
    serves: Vec<TeamIx>,
}

#[derive(Debug)]
struct AgentState {
    spec: AgentSpec,
    skills: Bits,
    skill_count: u32,
    teams: Vec<TeamIx>,
    on_shift: bool,
    leaving: bool,
    shift_timer: Option<i64>,
    load: [u32; 3],
    total: u32,
    indexed: [bool; 3],
    last_offer: RoundRobinKey,
    /// Tickets offered to or owned by them (unordered: sort before acting on it).
    work: Vec<HandoffId>,
}

impl AgentState {
    fn available(&self) -> bool {
        self.spec.presence == Presence::Online && self.on_shift && !self.leaving
    }

    fn has_room(&self, class: WorkClass) -> bool {
        self.load[class.ix()] < self.spec.capacity.of(class)
            && self.total < self.spec.capacity.total
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Between places inside one call.
    Limbo,
    Queued {
        bucket: usize,
    },
    Offered {
        agent: AgentIx,
        at: i64,
        deadline: Option<i64>,
    },
    Owned {
        agent: AgentIx,
        since: i64,
    },
}

#[derive(Debug)]
struct Ticket {
    spec: TicketSpec,
    class: WorkClass,
    own: Bits,
    queue: TeamIx,
    queue_entered_at: i64,
    overflow_done: bool,
    overflow_at: Option<i64>,
    excluded: Vec<AgentId>,
    place: Place,
}

impl Ticket {
    fn key(&self) -> Key {
        Key {
            priority: Reverse(self.spec.priority),
            enqueued_at: self.spec.enqueued_at_ms,
            id: self.spec.id,
            excluded: !self.excluded.is_empty(),
        }
    }
}

/// Load over capacity, compared exactly by cross-multiplying.
#[derive(Debug, Clone, Copy)]
struct Ratio(u32, u32);

impl PartialEq for Ratio {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ratio {}
impl PartialOrd for Ratio {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ratio {
    fn cmp(&self, other: &Self) -> Ordering {
        (u64::from(self.0) * u64::from(other.1)).cmp(&(u64::from(other.0) * u64::from(self.1)))
    }
}

/// An agent's standing for a ticket: the smallest wins. Every strategy ends in the round-robin
/// key and the agent id, so the order is total.
type Score = (u32, Ratio, RoundRobinKey, AgentId);

/// When an agent was last offered a ticket (time, engine sequence); never sorts first.
type RoundRobinKey = Option<(i64, u64)>;

/// The routing engine. See the module documentation.
#[derive(Debug, Default)]
pub struct Engine {
    clock: i64,
    skills: Interner<Skill>,
    teams: Interner<Team>,
    team_state: Vec<TeamState>,
    queues: Vec<Option<Queue>>,
    sets: Interner<Bits>,
    agents: Vec<Option<AgentState>>,
    free_slots: Vec<AgentIx>,
    agent_ix: HashMap<AgentId, AgentIx>,
    tickets: HashMap<HandoffId, Ticket>,
    timers: BTreeSet<(i64, Timer)>,
    offer_seq: u64,
}

const LIVE_AGENT: &str = "agent index refers to a live agent";
const LIVE_TICKET: &str = "ticket id refers to a live ticket";
const LIVE_QUEUE: &str = "ticket's queue exists";

impl Engine {
    /// An empty engine: configure queues, add agents, then enqueue tickets.
    pub fn new() -> Self {
        Self::default()
    }

    // ---- configuration ----------------------------------------------------------------------

    /// Adds or replaces queues. The whole batch is validated first (timeouts and windows
    /// positive, overflow rules complete, overflow targets being queues in the batch or already
    /// configured); on error nothing changes. Queued tickets of a replaced queue are re-sorted
    /// under its new skills and overflow rule, then everything routable is routed.
    pub fn configure_queues(
        &mut self,
        configs: Vec<QueueConfig>,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.validate_queues(&configs)?;
        self.advance(now_ms, out);
        let mut touched = Vec::new();
        for cfg in configs {
            touched.push(self.install_queue(cfg, now_ms));
        }
        self.after_queue_change(&touched, now_ms, out);
        self.advance(now_ms, out);
        Ok(())
    }

    fn validate_queues(&self, configs: &[QueueConfig]) -> Result<(), EngineError> {
        let bad = |team: &Team, why: &str| EngineError::InvalidQueue {
            team: team.as_str().to_string(),
            why: why.to_string(),
        };
        let mut names = BTreeSet::new();
        for c in configs {
            if !names.insert(&c.team) {
                return Err(bad(&c.team, "configured twice"));
            }
        }
        for c in configs {
            let positive = |v: Option<i64>| v.is_none_or(|v| v > 0);
            if !positive(c.accept_timeout_ms) {
                return Err(bad(&c.team, "accept_timeout_ms must be positive"));
            }
            if !positive(c.overflow_after_ms) {
                return Err(bad(&c.team, "overflow_after_ms must be positive"));
            }
            if c.sticky_window_ms.is_some_and(|w| w < 0) {
                return Err(bad(&c.team, "sticky_window_ms must not be negative"));
            }
            let has_rule = c.overflow_to.is_some() || c.overflow_priority.is_some();
            if c.overflow_after_ms.is_some() != has_rule {
                return Err(bad(
                    &c.team,
                    "overflow_after_ms needs overflow_to or overflow_priority, and they need it",
                ));
            }
            if let Some(to) = &c.overflow_to {
                if to == &c.team {
                    return Err(bad(&c.team, "overflow_to is the queue itself"));
                }
                if !names.contains(to) && self.queue_ix(to).is_none() {
                    return Err(bad(&c.team, "overflow_to names a team without a queue"));
                }
            }
        }
        Ok(())
    }

    /// Installs one queue, returning its index. Replacing a queue pulls its tickets out and
    /// re-sorts them under the new rules.
    fn install_queue(&mut self, cfg: QueueConfig, now: i64) -> TeamIx {
        let q = self.ensure_team(&cfg.team);
        let mut required = Bits::default();
        for s in &cfg.required_skills {
            required.insert(self.skills.intern(s));
        }
        let on_call = cfg.on_call.as_ref().map(|t| self.ensure_team(t));
        let overflow_to = cfg.overflow_to.as_ref().map(|t| self.ensure_team(t));

        let mut requeue = Vec::new();
        if let Some(old) = self.queues[q as usize].as_ref() {
            requeue.extend(old.buckets.iter().flat_map(|b| b.keys.iter().map(|k| k.id)));
            if let Some(at) = old.hours_timer {
                self.timers
                    .remove(&(at, Timer::Hours(old.cfg.team.clone())));
            }
            for &id in &requeue {
                self.queue_remove(id);
            }
            self.set_served_by(q, None);
        }
        self.queues[q as usize] = Some(Queue {
            cfg,
            team: q,
            required,
            on_call,
            overflow_to,
            open: true,
            hours_timer: None,
            served_by: None,
            buckets: Vec::new(),
            bucket_of: HashMap::new(),
            len: 0,
            with_exclusions: BTreeSet::new(),
        });
        self.eval_hours(q, now);
        for id in requeue {
            self.queue_insert(id);
        }
        q
    }

    /// Routes what a queue change may have made routable: the serving teams' free agents fill
    /// up, and exclusions are re-checked.
    fn after_queue_change(&mut self, queues: &[TeamIx], now: i64, out: &mut Vec<Decision>) {
        let mut agents = BTreeSet::new();
        for &q in queues {
            if let Some(team) = self.queue(q).served_by {
                agents.extend(
                    self.team_state[team as usize]
                        .free
                        .iter()
                        .flatten()
                        .copied(),
                );
            }
        }
        self.fill(agents.into_iter().collect(), now, out);
        self.recheck_exclusions(queues.to_vec(), now, out);
    }

    // ---- agents -----------------------------------------------------------------------------

    /// Adds an agent or replaces what the engine knows about them, then routes: an agent who
    /// became available or gained room takes waiting tickets at once; one who became
    /// unavailable has their offers withdrawn (and re-routed); a capacity lowered below the
    /// current load withdraws that class's offers.
    pub fn upsert_agent(
        &mut self,
        spec: AgentSpec,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.advance(now_ms, out);
        let mut skills = Bits::default();
        for s in &spec.skills {
            skills.insert(self.skills.intern(s));
        }
        let mut teams: Vec<TeamIx> = spec.teams.iter().map(|t| self.ensure_team(t)).collect();
        teams.sort_unstable();
        teams.dedup();

        let (ix, old_teams) = match self.agent_ix.get(&spec.id).copied() {
            Some(ix) => {
                self.unindex_agent(ix);
                let a = self.agents[ix as usize].as_mut().expect(LIVE_AGENT);
                let old = std::mem::replace(&mut a.teams, teams);
                a.skill_count = skills.count();
                a.skills = skills;
                a.spec = spec;
                (ix, old)
            }
            None => {
                let state = AgentState {
                    skill_count: skills.count(),
                    skills,
                    teams,
                    on_shift: true,
                    leaving: false,
                    shift_timer: None,
                    load: [0; 3],
                    total: 0,
                    indexed: [false; 3],
                    last_offer: None,
                    work: Vec::new(),
                    spec,
                };
                (self.insert_agent(state), Vec::new())
            }
        };
        self.eval_shift(ix, now_ms);
        self.index_agent(ix);
        self.shed_offers(ix, now_ms, out);
        self.fill(vec![ix], now_ms, out);
        let mut teams = old_teams;
        teams.extend_from_slice(&self.agent(ix).teams);
        self.recheck_teams(&teams, now_ms, out);
        self.advance(now_ms, out);
        Ok(())
    }

    /// Changes an agent's presence (a shorthand for [`Engine::upsert_agent`]).
    pub fn set_presence(
        &mut self,
        agent: AgentId,
        presence: Presence,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        let ix = self.agent_ix_of(agent)?;
        let mut spec = self.agent(ix).spec.clone();
        spec.presence = presence;
        self.upsert_agent(spec, now_ms, out)
    }

    /// Removes an agent: their offers and owned tickets go back to the queue
    /// ([`Decision::Withdrawn`]) and are re-routed.
    pub fn remove_agent(
        &mut self,
        agent: AgentId,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.advance(now_ms, out);
        let ix = self.agent_ix_of(agent)?;
        {
            let a = self.agents[ix as usize].as_mut().expect(LIVE_AGENT);
            a.leaving = true;
        }
        self.reindex(ix);
        let mut work = self.agent(ix).work.clone();
        work.sort_unstable();
        for id in work {
            self.withdraw(id, now_ms, out);
        }
        self.unindex_agent(ix);
        let a = self.agents[ix as usize].take().expect(LIVE_AGENT);
        if let Some(at) = a.shift_timer {
            self.timers.remove(&(at, Timer::Shift(a.spec.id)));
        }
        self.agent_ix.remove(&a.spec.id);
        self.free_slots.push(ix);
        self.recheck_teams(&a.teams, now_ms, out);
        self.advance(now_ms, out);
        Ok(())
    }

    // ---- tickets ----------------------------------------------------------------------------

    /// A ticket arrives: [`Decision::Queued`], then offered at once if an agent is eligible.
    pub fn enqueue(
        &mut self,
        spec: TicketSpec,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.advance(now_ms, out);
        let queue = self
            .queue_ix(&spec.team)
            .ok_or_else(|| EngineError::UnknownQueue(spec.team.as_str().to_string()))?;
        if self.tickets.contains_key(&spec.id) {
            return Err(EngineError::DuplicateTicket(spec.id));
        }
        let id = spec.id;
        // Its wait in this queue, which overflow measures, began when it was enqueued.
        let entered = spec.enqueued_at_ms;
        let ticket = self.new_ticket(spec, queue, entered);
        self.tickets.insert(id, ticket);
        out.push(Decision::Queued {
            ticket: self.ctx(id, now_ms),
        });
        self.route_ticket(id, now_ms, out);
        self.advance(now_ms, out);
        Ok(())
    }

    fn new_ticket(&mut self, spec: TicketSpec, queue: TeamIx, entered: i64) -> Ticket {
        let mut own = Bits::default();
        for s in &spec.required_skills {
            own.insert(self.skills.intern(s));
        }
        Ticket {
            class: WorkClass::of(spec.channel),
            own,
            queue,
            queue_entered_at: entered,
            overflow_done: false,
            overflow_at: None,
            excluded: Vec::new(),
            place: Place::Limbo,
            spec,
        }
    }

    /// The agent takes the ticket offered to them.
    pub fn accept(
        &mut self,
        ticket: HandoffId,
        agent: AgentId,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.advance(now_ms, out);
        let ix = self.offered_to(ticket, agent)?;
        let t = self.tickets.get_mut(&ticket).expect(LIVE_TICKET);
        if let Place::Offered {
            deadline: Some(d), ..
        } = t.place
        {
            self.timers.remove(&(d, Timer::Offer(ticket)));
        }
        t.place = Place::Owned {
            agent: ix,
            since: now_ms,
        };
        out.push(Decision::Accepted {
            ticket: self.ctx(ticket, now_ms),
            agent,
        });
        Ok(())
    }

    /// The agent declines: the ticket goes back to its queue with its original enqueue time,
    /// the agent is excluded for it, it is re-offered, and the agent's freed slot takes the
    /// best other ticket.
    pub fn decline(
        &mut self,
        ticket: HandoffId,
        agent: AgentId,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.advance(now_ms, out);
        self.offered_to(ticket, agent)?;
        self.refuse(ticket, false, now_ms, out);
        self.advance(now_ms, out);
        Ok(())
    }

    /// Moves a ticket (queued, offered or owned) into another team's queue or offers it to a
    /// specific agent. A previous holder's slot is freed and fills at once; when the ticket
    /// goes to a queue they are excluded for it, so it does not bounce straight back.
    pub fn transfer(
        &mut self,
        ticket: HandoffId,
        to: TransferTarget,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.advance(now_ms, out);
        let t = self
            .tickets
            .get(&ticket)
            .ok_or(EngineError::UnknownTicket(ticket))?;
        let holder = match t.place {
            Place::Offered { agent, .. } | Place::Owned { agent, .. } => Some(agent),
            Place::Queued { .. } | Place::Limbo => None,
        };
        let class = t.class;
        let from_queue = t.queue;
        enum Dest {
            Queue(TeamIx),
            Agent(AgentIx, AgentId),
        }
        let dest = match &to {
            TransferTarget::Team(team) => {
                let q = self
                    .queue_ix(team)
                    .ok_or_else(|| EngineError::UnknownQueue(team.as_str().to_string()))?;
                if holder.is_none() && q == from_queue {
                    return Err(EngineError::AlreadyThere(ticket));
                }
                Dest::Queue(q)
            }
            TransferTarget::Agent(agent) => {
                let ix = self.agent_ix_of(*agent)?;
                if holder == Some(ix) {
                    return Err(EngineError::AlreadyThere(ticket));
                }
                let a = self.agent(ix);
                if !a.available() {
                    return Err(EngineError::AgentUnavailable(*agent));
                }
                if !a.has_room(class) {
                    return Err(EngineError::AgentAtCapacity(*agent));
                }
                Dest::Agent(ix, *agent)
            }
        };

        let previous = holder.map(|ix| self.agent(ix).spec.id);
        match holder {
            Some(_) => {
                self.free_slot(ticket);
            }
            None => self.queue_remove(ticket),
        }
        let from = self.teams.items[from_queue as usize].clone();
        let t = self.tickets.get_mut(&ticket).expect(LIVE_TICKET);
        match dest {
            Dest::Queue(q) => {
                if let Some(prev) = previous
                    && !t.excluded.contains(&prev)
                {
                    t.excluded.push(prev);
                }
                t.queue = q;
                t.queue_entered_at = now_ms;
                t.overflow_done = false;
            }
            Dest::Agent(_, agent) => t.excluded.retain(|a| *a != agent),
        }
        out.push(Decision::Transferred {
            ticket: self.ctx(ticket, now_ms),
            from,
            to,
            previous_agent: previous,
        });
        match dest {
            Dest::Queue(_) => self.route_ticket(ticket, now_ms, out),
            Dest::Agent(ix, _) => self.offer(ticket, ix, now_ms, out),
        }
        if let Some(prev) = holder {
            self.fill(vec![prev], now_ms, out);
        }
        self.advance(now_ms, out);
        Ok(())
    }

    /// The conversation went back to the bot: the ticket leaves, its agent's slot fills.
    pub fn release(
        &mut self,
        ticket: HandoffId,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.finish(ticket, false, now_ms, out)
    }

    /// The ticket was resolved: it leaves, its agent's slot fills.
    pub fn resolve(
        &mut self,
        ticket: HandoffId,
        now_ms: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.finish(ticket, true, now_ms, out)
    }

    fn finish(
        &mut self,
        ticket: HandoffId,
        resolved: bool,
        now: i64,
        out: &mut Vec<Decision>,
    ) -> Result<(), EngineError> {
        self.advance(now, out);
        let place = self
            .tickets
            .get(&ticket)
            .ok_or(EngineError::UnknownTicket(ticket))?
            .place;
        let holder = match place {
            Place::Offered { .. } | Place::Owned { .. } => self.free_slot(ticket),
            Place::Queued { .. } | Place::Limbo => {
                self.queue_remove(ticket);
                None
            }
        };
        let ctx = self.ctx(ticket, now);
        self.tickets.remove(&ticket);
        let agent = holder.map(|ix| self.agent(ix).spec.id);
        out.push(if resolved {
            Decision::Resolved { ticket: ctx, agent }
        } else {
            Decision::Released { ticket: ctx, agent }
        });
        if let Some(ix) = holder {
            self.fill(vec![ix], now, out);
        }
        self.advance(now, out);
        Ok(())
    }

    /// Runs every timer due at `now_ms` (offer deadlines, overflows, queue hours, shifts), then
    /// offers work to every free agent and re-checks every excluded ticket. The fast-path calls
    /// already keep the engine fully routed; this is the periodic heartbeat and safety net.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Decision> {
        let mut out = Vec::new();
        self.advance(now_ms, &mut out);
        let mut agents = BTreeSet::new();
        for ts in &self.team_state {
            agents.extend(ts.free.iter().flatten().copied());
        }
        self.fill(agents.into_iter().collect(), now_ms, &mut out);
        let queues = (0..self.queues.len() as TeamIx)
            .filter(|&q| self.queues[q as usize].is_some())
            .collect();
        self.recheck_exclusions(queues, now_ms, &mut out);
        self.advance(now_ms, &mut out);
        out
    }

    // ---- queries ----------------------------------------------------------------------------

    /// Where a queued ticket stands: (1-based position, queue length), counting the tickets of
    /// the same queue and work class, since those compete for the same slots. `None` unless
    /// queued. O(queue length): it counts the tickets ahead.
    pub fn position(&self, ticket: HandoffId) -> Option<(usize, usize)> {
        let t = self.tickets.get(&ticket)?;
        let Place::Queued { .. } = t.place else {
            return None;
        };
        let q = self.queues.get(t.queue as usize)?.as_ref()?;
        let key = t.key();
        let (mut ahead, mut len) = (0, 0);
        for b in q.buckets.iter().filter(|b| b.class == t.class) {
            ahead += b.keys.range(..key).count();
            len += b.keys.len();
        }
        Some((ahead + 1, len))
    }

    /// When a queue next opens, to tell a waiting customer: `now_ms` if open now, `None` if the
    /// team has no queue or its hours never open within their horizon.
    pub fn next_open(&self, team: &Team, now_ms: i64) -> Option<i64> {
        let q = self.queue(self.queue_ix(team)?);
        match &q.cfg.hours {
            None => Some(now_ms),
            Some(h) => h.next_open(now_ms),
        }
    }

    /// Whether a queue is within its business hours (as of the last call).
    pub fn is_open(&self, team: &Team) -> Option<bool> {
        Some(self.queue(self.queue_ix(team)?).open)
    }

    /// A queue's settings.
    pub fn queue_config(&self, team: &Team) -> Option<&QueueConfig> {
        Some(&self.queue(self.queue_ix(team)?).cfg)
    }

    /// How many tickets wait in a team's queue.
    pub fn queue_len(&self, team: &Team) -> Option<usize> {
        Some(self.queue(self.queue_ix(team)?).len)
    }

    /// How many tickets the engine holds, in any place.
    pub fn ticket_count(&self) -> usize {
        self.tickets.len()
    }

    /// A ticket's routing state.
    pub fn ticket(&self, id: HandoffId) -> Option<TicketRecord> {
        self.tickets.get(&id).map(|t| self.record(t))
    }

    /// An agent's current load (offered plus owned), per class and overall.
    pub fn agent_load(&self, id: AgentId) -> Option<Capacity> {
        let a = self.agent(*self.agent_ix.get(&id)?);
        Some(Capacity::from_loads(a.load, a.total))
    }

    /// Everything [`Engine::restore`] needs, sorted by id. A store persisting the same facts
    /// row by row can build the same value.
    pub fn snapshot(&self) -> Snapshot {
        let mut agents: Vec<AgentRecord> = self
            .agents
            .iter()
            .flatten()
            .map(|a| AgentRecord {
                spec: a.spec.clone(),
                last_offered_ms: a.last_offer.map(|(ms, _)| ms),
                last_offer_seq: a.last_offer.map_or(0, |(_, seq)| seq),
            })
            .collect();
        agents.sort_by_key(|a| a.spec.id);
        let mut tickets: Vec<TicketRecord> =
            self.tickets.values().map(|t| self.record(t)).collect();
        tickets.sort_by_key(|t| t.spec.id);
        Snapshot {
            taken_at_ms: self.clock,
            agents,
            tickets,
        }
    }

    /// Rebuilds an engine from queue configuration and a [`Snapshot`] (or the equivalent read
    /// from the store), evaluating hours and shifts at `snapshot.taken_at_ms`. It routes
    /// nothing: call [`Engine::tick`] right after, which also expires offers whose deadline
    /// passed while the process was down.
    pub fn restore(queues: Vec<QueueConfig>, snapshot: Snapshot) -> Result<Self, EngineError> {
        let mut e = Engine::new();
        let now = snapshot.taken_at_ms;
        e.clock = now;
        e.validate_queues(&queues)?;
        for cfg in queues {
            e.install_queue(cfg, now);
        }
        for rec in snapshot.agents {
            let mut skills = Bits::default();
            for s in &rec.spec.skills {
                skills.insert(e.skills.intern(s));
            }
            let mut teams: Vec<TeamIx> = rec.spec.teams.iter().map(|t| e.ensure_team(t)).collect();
            teams.sort_unstable();
            teams.dedup();
            let last_offer = rec.last_offered_ms.map(|ms| (ms, rec.last_offer_seq));
            e.offer_seq = e.offer_seq.max(rec.last_offer_seq.saturating_add(1));
            let ix = e.insert_agent(AgentState {
                skill_count: skills.count(),
                skills,
                teams,
                on_shift: true,
                leaving: false,
                shift_timer: None,
                load: [0; 3],
                total: 0,
                indexed: [false; 3],
                last_offer,
                work: Vec::new(),
                spec: rec.spec,
            });
            e.eval_shift(ix, now);
        }
        for rec in snapshot.tickets {
            let queue = e
                .queue_ix(&rec.spec.team)
                .ok_or_else(|| EngineError::UnknownQueue(rec.spec.team.as_str().to_string()))?;
            if e.tickets.contains_key(&rec.spec.id) {
                return Err(EngineError::DuplicateTicket(rec.spec.id));
            }
            let id = rec.spec.id;
            let mut t = e.new_ticket(rec.spec, queue, rec.queue_entered_at_ms);
            t.overflow_done = rec.overflow_done;
            t.excluded = rec.excluded;
            let class = t.class;
            e.tickets.insert(id, t);
            match rec.placement {
                Placement::Queued => e.queue_insert(id),
                Placement::Offered {
                    agent,
                    offered_at_ms,
                    deadline_ms,
                } => {
                    let ix = e.agent_ix_of(agent)?;
                    e.occupy(ix, id, class);
                    e.tickets.get_mut(&id).expect(LIVE_TICKET).place = Place::Offered {
                        agent: ix,
                        at: offered_at_ms,
                        deadline: deadline_ms,
                    };
                    if let Some(d) = deadline_ms {
                        e.timers.insert((d, Timer::Offer(id)));
                    }
                }
                Placement::Owned { agent, since_ms } => {
                    let ix = e.agent_ix_of(agent)?;
                    e.occupy(ix, id, class);
                    e.tickets.get_mut(&id).expect(LIVE_TICKET).place = Place::Owned {
                        agent: ix,
                        since: since_ms,
                    };
                }
            }
        }
        let all: Vec<AgentIx> = e.agent_ix.values().copied().collect();
        for ix in all {
            e.index_agent(ix);
        }
        Ok(e)
    }

    // ---- routing core -----------------------------------------------------------------------

    /// Finds an agent for a ticket in limbo and offers it, or puts it in its queue. Clears the
    /// exclusions first when every qualified agent is excluded.
    fn route_ticket(&mut self, id: HandoffId, now: i64, out: &mut Vec<Decision>) {
        let t = self.tickets.get(&id).expect(LIVE_TICKET);
        let q = self.queue(t.queue);
        if let Some(team) = q.served_by {
            let needs = t.own.union(&q.required);
            let set = self.sets.intern(&needs);
            if let Some(ix) = self.pick_agent(id, team, set, now) {
                self.offer(id, ix, now, out);
                return;
            }
            if self.all_qualified_excluded(id, team, set) {
                self.reset_exclusions(id, now, out);
                if let Some(ix) = self.pick_agent(id, team, set, now) {
                    self.offer(id, ix, now, out);
                    return;
                }
            }
        }
        self.queue_insert(id);
    }

    fn pick_agent(&self, id: HandoffId, team: TeamIx, set: SetIx, now: i64) -> Option<AgentIx> {
        let t = self.tickets.get(&id).expect(LIVE_TICKET);
        let q = self.queue(t.queue);
        let needs = &self.sets.items[set as usize];
        let class = t.class;
        let eligible = |a: &AgentState| {
            a.available()
                && a.has_room(class)
                && needs.is_subset_of(&a.skills)
                && !t.excluded.contains(&a.spec.id)
        };
        if let (Some(window), Some((last, at))) = (q.cfg.sticky_window_ms, t.spec.last_agent)
            && now.saturating_sub(at) <= window
            && let Some(&ix) = self.agent_ix.get(&last)
        {
            let a = self.agent(ix);
            if eligible(a) && a.teams.contains(&team) {
                return Some(ix);
            }
        }
        let strategy = q.cfg.strategy;
        let score = |a: &AgentState| -> Score {
            let busy = Ratio(a.load[class.ix()], a.spec.capacity.of(class).max(1));
            match strategy {
                Strategy::RoundRobin => (0, Ratio(0, 1), a.last_offer, a.spec.id),
                Strategy::LeastBusy => (0, busy, a.last_offer, a.spec.id),
                Strategy::BestFit => (a.skill_count, busy, a.last_offer, a.spec.id),
            }
        };
        self.team_state[team as usize].free[class.ix()]
            .iter()
            .map(|&ix| (ix, self.agent(ix)))
            .filter(|(_, a)| eligible(a))
            .min_by_key(|(_, a)| score(a))
            .map(|(ix, _)| ix)
    }

    /// Whether at least one agent is qualified for the ticket (available, in `team`, skilled,
    /// with a non-zero capacity for its class) and every one of them is excluded.
    fn all_qualified_excluded(&self, id: HandoffId, team: TeamIx, set: SetIx) -> bool {
        let t = self.tickets.get(&id).expect(LIVE_TICKET);
        if t.excluded.is_empty() {
            return false;
        }
        let needs = &self.sets.items[set as usize];
        let mut any = false;
        for &ix in &self.team_state[team as usize].members {
            let a = self.agent(ix);
            let qualified = a.available()
                && a.spec.capacity.of(t.class) > 0
                && a.spec.capacity.total > 0
                && needs.is_subset_of(&a.skills);
            if qualified {
                if !t.excluded.contains(&a.spec.id) {
                    return false;
                }
                any = true;
            }
        }
        any
    }

    fn reset_exclusions(&mut self, id: HandoffId, now: i64, out: &mut Vec<Decision>) {
        let t = self.tickets.get_mut(&id).expect(LIVE_TICKET);
        let cleared = std::mem::take(&mut t.excluded);
        out.push(Decision::ExclusionsReset {
            ticket: self.ctx(id, now),
            cleared,
        });
    }

    /// Re-checks the excluded tickets of these queues (after the set of qualified agents may
    /// have shrunk), in team-name order so a rebuilt engine does the same.
    fn recheck_exclusions(&mut self, mut queues: Vec<TeamIx>, now: i64, out: &mut Vec<Decision>) {
        queues.sort_by(|a, b| self.teams.items[*a as usize].cmp(&self.teams.items[*b as usize]));
        queues.dedup();
        for q in queues {
            let Some(team) = self.queue(q).served_by else {
                continue;
            };
            let keys: Vec<Key> = self.queue(q).with_exclusions.iter().copied().collect();
            for key in keys {
                let t = self.tickets.get(&key.id).expect(LIVE_TICKET);
                let needs = t.own.union(&self.queue(q).required);
                let set = self.sets.intern(&needs);
                if self.all_qualified_excluded(key.id, team, set) {
                    self.queue_remove(key.id);
                    self.reset_exclusions(key.id, now, out);
                    self.route_ticket(key.id, now, out);
                }
            }
        }
    }

    /// Re-checks exclusions in the queues these teams serve.
    fn recheck_teams(&mut self, teams: &[TeamIx], now: i64, out: &mut Vec<Decision>) {
        let queues = teams
            .iter()
            .flat_map(|&t| self.team_state[t as usize].serves.iter().copied())
            .collect();
        self.recheck_exclusions(queues, now, out);
    }

    /// Lets agents take waiting tickets, one per turn in round-robin order (least recently
    /// offered first), until nobody can take anything more.
    fn fill(&mut self, agents: Vec<AgentIx>, now: i64, out: &mut Vec<Decision>) {
        let mut turn: BTreeSet<(RoundRobinKey, AgentId, AgentIx)> = agents
            .into_iter()
            .map(|ix| {
                let a = self.agent(ix);
                (a.last_offer, a.spec.id, ix)
            })
            .collect();
        while let Some((_, _, ix)) = turn.pop_first() {
            if self.take_one(ix, now, out) {
                let a = self.agent(ix);
                turn.insert((a.last_offer, a.spec.id, ix));
            }
        }
    }

    /// The agent takes the best ticket they are eligible for, if any.
    fn take_one(&mut self, ix: AgentIx, now: i64, out: &mut Vec<Decision>) -> bool {
        let a = self.agent(ix);
        if !a.available() || a.total >= a.spec.capacity.total {
            return false;
        }
        let mut best: Option<Key> = None;
        for &team in &a.teams {
            for &qix in &self.team_state[team as usize].serves {
                let q = self.queue(qix);
                for b in &q.buckets {
                    let Some(head) = b.keys.first() else {
                        continue;
                    };
                    if best.is_some_and(|k| k <= *head)
                        || !a.has_room(b.class)
                        || !b.bits.is_subset_of(&a.skills)
                    {
                        continue;
                    }
                    for k in &b.keys {
                        if best.is_some_and(|best| best <= *k) {
                            break;
                        }
                        if !k.excluded
                            || !self
                                .tickets
                                .get(&k.id)
                                .expect(LIVE_TICKET)
                                .excluded
                                .contains(&a.spec.id)
                        {
                            best = Some(*k);
                            break;
                        }
                    }
                }
            }
        }
        match best {
            Some(k) => {
                self.queue_remove(k.id);
                self.offer(k.id, ix, now, out);
                true
            }
            None => false,
        }
    }

    fn offer(&mut self, id: HandoffId, ix: AgentIx, now: i64, out: &mut Vec<Decision>) {
        let t = self.tickets.get(&id).expect(LIVE_TICKET);
        let deadline = self
            .queue(t.queue)
            .cfg
            .accept_timeout_ms
            .map(|ms| now.saturating_add(ms));
        let class = t.class;
        self.occupy(ix, id, class);
        let seq = self.offer_seq;
        self.offer_seq += 1;
        let a = self.agents[ix as usize].as_mut().expect(LIVE_AGENT);
        a.last_offer = Some((now, seq));
        let agent = a.spec.id;
        self.reindex(ix);
        self.tickets.get_mut(&id).expect(LIVE_TICKET).place = Place::Offered {
            agent: ix,
            at: now,
            deadline,
        };
        if let Some(d) = deadline {
            self.timers.insert((d, Timer::Offer(id)));
        }
        out.push(Decision::Offered {
            ticket: self.ctx(id, now),
            agent,
            deadline_ms: deadline,
        });
    }

    /// Counts a ticket against an agent (no re-indexing; callers do that).
    fn occupy(&mut self, ix: AgentIx, id: HandoffId, class: WorkClass) {
        let a = self.agents[ix as usize].as_mut().expect(LIVE_AGENT);
        a.load[class.ix()] += 1;
        a.total += 1;
        a.work.push(id);
    }

    /// Frees the slot of an offered or owned ticket, leaving the ticket in limbo. Returns the
    /// agent.
    fn free_slot(&mut self, id: HandoffId) -> Option<AgentIx> {
        let t = self.tickets.get_mut(&id).expect(LIVE_TICKET);
        let ix = match t.place {
            Place::Offered {
                agent, deadline, ..
            } => {
                if let Some(d) = deadline {
                    self.timers.remove(&(d, Timer::Offer(id)));
                }
                agent
            }
            Place::Owned { agent, .. } => agent,
            Place::Queued { .. } | Place::Limbo => return None,
        };
        t.place = Place::Limbo;
        let class = t.class;
        let a = self.agents[ix as usize].as_mut().expect(LIVE_AGENT);
        a.load[class.ix()] -= 1;
        a.total -= 1;
        a.work.retain(|w| *w != id);
        self.reindex(ix);
        Some(ix)
    }

    /// A decline or a timeout: exclude, re-queue, re-offer, refill the agent.
    fn refuse(&mut self, id: HandoffId, expired: bool, now: i64, out: &mut Vec<Decision>) {
        let Some(ix) = self.free_slot(id) else {
            return;
        };
        let agent = self.agent(ix).spec.id;
        let t = self.tickets.get_mut(&id).expect(LIVE_TICKET);
        if !t.excluded.contains(&agent) {
            t.excluded.push(agent);
        }
        let ticket = self.ctx(id, now);
        out.push(if expired {
            Decision::OfferExpired { ticket, agent }
        } else {
            Decision::Declined { ticket, agent }
        });
        self.route_ticket(id, now, out);
        self.fill(vec![ix], now, out);
    }

    /// Takes a ticket back from an agent who became unavailable or left, and re-routes it.
    fn withdraw(&mut self, id: HandoffId, now: i64, out: &mut Vec<Decision>) {
        let was_owned = matches!(
            self.tickets.get(&id).expect(LIVE_TICKET).place,
            Place::Owned { .. }
        );
        let Some(ix) = self.free_slot(id) else {
            return;
        };
        out.push(Decision::Withdrawn {
            ticket: self.ctx(id, now),
            agent: self.agent(ix).spec.id,
            was_owned,
        });
        self.route_ticket(id, now, out);
    }

    /// Withdraws the offers an agent can no longer hold: all of them when unavailable, those
    /// of a class whose (or the overall) capacity is now below the load otherwise.
    fn shed_offers(&mut self, ix: AgentIx, now: i64, out: &mut Vec<Decision>) {
        let a = self.agent(ix);
        let cap = a.spec.capacity;
        let over_total = a.total > cap.total;
        let mut shed: Vec<HandoffId> = a
            .work
            .iter()
            .copied()
            .filter(|id| {
                let t = self.tickets.get(id).expect(LIVE_TICKET);
                matches!(t.place, Place::Offered { .. })
                    && (!a.available() || over_total || a.load[t.class.ix()] > cap.of(t.class))
            })
            .collect();
        shed.sort_unstable();
        for id in shed {
            self.withdraw(id, now, out);
        }
    }

    // ---- queues -----------------------------------------------------------------------------

    fn queue_insert(&mut self, id: HandoffId) {
        let t = self.tickets.get_mut(&id).expect(LIVE_TICKET);
        let q = self.queues[t.queue as usize].as_mut().expect(LIVE_QUEUE);
        let bits = t.own.union(&q.required);
        let set = self.sets.intern(&bits);
        let class = t.class;
        let bucket = *q.bucket_of.entry((set, class)).or_insert_with(|| {
            q.buckets.push(Bucket {
                bits,
                class,
                keys: BTreeSet::new(),
            });
            q.buckets.len() - 1
        });
        let key = t.key();
        q.buckets[bucket].keys.insert(key);
        q.len += 1;
        if key.excluded {
            q.with_exclusions.insert(key);
        }
        t.place = Place::Queued { bucket };
        if let Some(after) = q.cfg.overflow_after_ms
            && !t.overflow_done
        {
            let at = t.queue_entered_at.saturating_add(after);
            t.overflow_at = Some(at);
            self.timers.insert((at, Timer::Overflow(id)));
        }
    }

    fn queue_remove(&mut self, id: HandoffId) {
        let t = self.tickets.get_mut(&id).expect(LIVE_TICKET);
        let Place::Queued { bucket } = t.place else {
            return;
        };
        let q = self.queues[t.queue as usize].as_mut().expect(LIVE_QUEUE);
        let key = t.key();
        q.buckets[bucket].keys.remove(&key);
        q.with_exclusions.remove(&key);
        q.len -= 1;
        if let Some(at) = t.overflow_at.take() {
            self.timers.remove(&(at, Timer::Overflow(id)));
        }
        t.place = Place::Limbo;
    }

    /// Evaluates a queue's hours at `now`, sets its next timer and who serves it. Returns
    /// whether it is open.
    fn eval_hours(&mut self, q: TeamIx, now: i64) -> bool {
        let queue = self.queues[q as usize].as_mut().expect(LIVE_QUEUE);
        if let Some(at) = queue.hours_timer.take() {
            self.timers
                .remove(&(at, Timer::Hours(queue.cfg.team.clone())));
        }
        let open = match &queue.cfg.hours {
            None => true,
            Some(h) => {
                let (open, at) = next_change(h, now);
                queue.hours_timer = Some(at);
                self.timers
                    .insert((at, Timer::Hours(queue.cfg.team.clone())));
                open
            }
        };
        queue.open = open;
        let served = if open {
            Some(queue.team)
        } else {
            queue.on_call
        };
        self.set_served_by(q, served);
        open
    }

    fn set_served_by(&mut self, q: TeamIx, served: Option<TeamIx>) -> bool {
        let queue = self.queues[q as usize].as_mut().expect(LIVE_QUEUE);
        let old = std::mem::replace(&mut queue.served_by, served);
        if old == served {
            return false;
        }
        if let Some(t) = old {
            self.team_state[t as usize].serves.retain(|&x| x != q);
        }
        if let Some(t) = served {
            self.team_state[t as usize].serves.push(q);
        }
        true
    }

    // ---- timers -----------------------------------------------------------------------------

    /// Runs the timers due at `now`, in time order. Every handler schedules its follow-ups
    /// strictly after `now` or not at all, except re-queued tickets already past their overflow
    /// time, which this same loop then handles once.
    fn advance(&mut self, now: i64, out: &mut Vec<Decision>) {
        self.clock = self.clock.max(now);
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let Some((at, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::Hours(team) => {
                    if let Some(q) = self.queue_ix(&team) {
                        self.queues[q as usize]
                            .as_mut()
                            .expect(LIVE_QUEUE)
                            .hours_timer = None;
                        self.on_hours(q, now, out);
                    }
                }
                Timer::Shift(agent) => {
                    if let Some(&ix) = self.agent_ix.get(&agent) {
                        self.agents[ix as usize]
                            .as_mut()
                            .expect(LIVE_AGENT)
                            .shift_timer = None;
                        self.on_shift_change(ix, now, out);
                    }
                }
                Timer::Offer(id) => {
                    if let Some(t) = self.tickets.get_mut(&id)
                        && let Place::Offered {
                            agent, at: offered, ..
                        } = t.place
                    {
                        // The timer is already popped; forget the deadline so freeing the
                        // slot does not look for it.
                        t.place = Place::Offered {
                            agent,
                            at: offered,
                            deadline: None,
                        };
                        self.refuse(id, true, now, out);
                    }
                }
                Timer::Overflow(id) => {
                    if let Some(t) = self.tickets.get_mut(&id)
                        && t.overflow_at == Some(at)
                    {
                        t.overflow_at = None;
                        self.on_overflow(id, now, out);
                    }
                }
            }
        }
    }

    fn on_hours(&mut self, q: TeamIx, now: i64, out: &mut Vec<Decision>) {
        let was_open = self.queue(q).open;
        let before = self.queue(q).served_by;
        let open = self.eval_hours(q, now);
        let queue = self.queue(q);
        if open != was_open {
            let team = queue.cfg.team.clone();
            out.push(if open {
                Decision::QueueOpened { team }
            } else {
                Decision::QueueClosed {
                    team,
                    opens_at_ms: queue.cfg.hours.as_ref().and_then(|h| h.next_open(now)),
                    on_call: queue.cfg.on_call.clone(),
                }
            });
        }
        if queue.served_by != before {
            self.after_queue_change(&[q], now, out);
        }
    }

    fn eval_shift(&mut self, ix: AgentIx, now: i64) {
        let a = self.agents[ix as usize].as_mut().expect(LIVE_AGENT);
        if let Some(at) = a.shift_timer.take() {
            self.timers.remove(&(at, Timer::Shift(a.spec.id)));
        }
        a.on_shift = match &a.spec.shift {
            None => true,
            Some(h) => {
                let (open, at) = next_change(h, now);
                a.shift_timer = Some(at);
                self.timers.insert((at, Timer::Shift(a.spec.id)));
                open
            }
        };
    }

    fn on_shift_change(&mut self, ix: AgentIx, now: i64, out: &mut Vec<Decision>) {
        self.eval_shift(ix, now);
        self.reindex(ix);
        self.shed_offers(ix, now, out);
        self.fill(vec![ix], now, out);
        let teams = self.agent(ix).teams.clone();
        self.recheck_teams(&teams, now, out);
    }

    fn on_overflow(&mut self, id: HandoffId, now: i64, out: &mut Vec<Decision>) {
        if !matches!(
            self.tickets.get(&id).expect(LIVE_TICKET).place,
            Place::Queued { .. }
        ) {
            return;
        }
        self.queue_remove(id);
        let t = self.tickets.get_mut(&id).expect(LIVE_TICKET);
        let q = self.queues[t.queue as usize].as_ref().expect(LIVE_QUEUE);
        let from = q.cfg.team.clone();
        let from_priority = t.spec.priority;
        if let Some(p) = q.cfg.overflow_priority {
            t.spec.priority = t.spec.priority.max(p);
        }
        match q.overflow_to {
            Some(to) => {
                t.queue = to;
                t.spec.team = self.teams.items[to as usize].clone();
                t.queue_entered_at = now;
                t.overflow_done = false;
            }
            None => t.overflow_done = true,
        }
        out.push(Decision::Overflowed {
            ticket: self.ctx(id, now),
            from,
            from_priority,
        });
        self.route_ticket(id, now, out);
    }

    // ---- indexes and lookups ----------------------------------------------------------------

    fn ensure_team(&mut self, team: &Team) -> TeamIx {
        let ix = self.teams.intern(team);
        while self.team_state.len() <= ix as usize {
            self.team_state.push(TeamState::default());
            self.queues.push(None);
        }
        ix
    }

    fn queue_ix(&self, team: &Team) -> Option<TeamIx> {
        let ix = self.teams.get(team)?;
        self.queues.get(ix as usize)?.as_ref().map(|_| ix)
    }

    fn queue(&self, q: TeamIx) -> &Queue {
        self.queues[q as usize].as_ref().expect(LIVE_QUEUE)
    }

    fn agent(&self, ix: AgentIx) -> &AgentState {
        self.agents[ix as usize].as_ref().expect(LIVE_AGENT)
    }

    fn agent_ix_of(&self, id: AgentId) -> Result<AgentIx, EngineError> {
        self.agent_ix
            .get(&id)
            .copied()
            .ok_or(EngineError::UnknownAgent(id))
    }

    fn offered_to(&self, ticket: HandoffId, agent: AgentId) -> Result<AgentIx, EngineError> {
        let t = self
            .tickets
            .get(&ticket)
            .ok_or(EngineError::UnknownTicket(ticket))?;
        match (t.place, self.agent_ix.get(&agent)) {
            (Place::Offered { agent: ix, .. }, Some(&a)) if ix == a => Ok(ix),
            _ => Err(EngineError::NotOfferedTo { ticket, agent }),
        }
    }

    fn insert_agent(&mut self, state: AgentState) -> AgentIx {
        let id = state.spec.id;
        let ix = match self.free_slots.pop() {
            Some(ix) => {
                self.agents[ix as usize] = Some(state);
                ix
            }
            None => {
                self.agents.push(Some(state));
                (self.agents.len() - 1) as AgentIx
            }
        };
        self.agent_ix.insert(id, ix);
        ix
    }

    /// Adds an agent to their teams' member lists and free sets.
    fn index_agent(&mut self, ix: AgentIx) {
        let a = self.agents[ix as usize].as_ref().expect(LIVE_AGENT);
        for &t in &a.teams {
            self.team_state[t as usize].members.insert(ix);
        }
        self.reindex(ix);
    }

    /// Takes an agent out of every team index (before their teams change or they leave).
    fn unindex_agent(&mut self, ix: AgentIx) {
        let a = self.agents[ix as usize].as_mut().expect(LIVE_AGENT);
        for &t in &a.teams {
            let ts = &mut self.team_state[t as usize];
            ts.members.remove(&ix);
            for free in &mut ts.free {
                free.remove(&ix);
            }
        }
        a.indexed = [false; 3];
    }

    /// Brings an agent's membership of their teams' free sets in line with their state.
    fn reindex(&mut self, ix: AgentIx) {
        let a = self.agents[ix as usize].as_mut().expect(LIVE_AGENT);
        for class in WorkClass::ALL {
            let want = a.available() && a.has_room(class);
            if want != a.indexed[class.ix()] {
                for &t in &a.teams {
                    let free = &mut self.team_state[t as usize].free[class.ix()];
                    if want {
                        free.insert(ix);
                    } else {
                        free.remove(&ix);
                    }
                }
                a.indexed[class.ix()] = want;
            }
        }
    }

    fn ctx(&self, id: HandoffId, now: i64) -> TicketContext {
        let t = self.tickets.get(&id).expect(LIVE_TICKET);
        TicketContext {
            id,
            team: self.teams.items[t.queue as usize].clone(),
            priority: t.spec.priority,
            channel: t.spec.channel,
            class: t.class,
            wait_ms: now.saturating_sub(t.spec.enqueued_at_ms).max(0),
        }
    }

    fn record(&self, t: &Ticket) -> TicketRecord {
        let id_of = |ix: AgentIx| self.agent(ix).spec.id;
        let placement = match t.place {
            Place::Queued { .. } | Place::Limbo => Placement::Queued,
            Place::Offered {
                agent,
                at,
                deadline,
            } => Placement::Offered {
                agent: id_of(agent),
                offered_at_ms: at,
                deadline_ms: deadline,
            },
            Place::Owned { agent, since } => Placement::Owned {
                agent: id_of(agent),
                since_ms: since,
            },
        };
        let mut spec = t.spec.clone();
        spec.team = self.teams.items[t.queue as usize].clone();
        TicketRecord {
            spec,
            queue_entered_at_ms: t.queue_entered_at,
            overflow_done: t.overflow_done,
            excluded: t.excluded.clone(),
            placement,
        }
    }
}

/// Serde helpers: the model's `Team` and `Skill` serialize but do not deserialize, because
/// they must be validated; these parse them on the way in.
mod de {
    use serde::{Deserialize, Deserializer, de::Error};

    use crate::model::{Skill, Team};

    pub fn team<'de, D: Deserializer<'de>>(d: D) -> Result<Team, D::Error> {
        let s = String::deserialize(d)?;
        Team::parse(&s).map_err(D::Error::custom)
    }

    pub fn opt_team<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Team>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| Team::parse(&s).map_err(D::Error::custom))
            .transpose()
    }

    pub fn skills<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Skill>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| Skill::parse(s).map_err(D::Error::custom))
            .collect()
    }
}

/// Whether `h` is open at `now`, and when that next changes (when it closes if open, opens if
/// closed): the time of the timer that re-evaluates it. A schedule that does not change within
/// its horizon is looked at again after [`HOURS_RECHECK_MS`].
fn next_change(h: &BusinessHours, now: i64) -> (bool, i64) {
    let open = h.is_open(now);
    let next = if open {
        h.closes_at(now)
    } else {
        h.next_open(now)
    };
    let at = next
        .filter(|&n| n > now)
        .unwrap_or(now.saturating_add(HOURS_RECHECK_MS));
    (open, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::hours::HoursConfig;

    fn team(s: &str) -> Team {
        Team::parse(s).unwrap()
    }

    fn skill(s: &str) -> Skill {
        Skill::parse(s).unwrap()
    }

    fn aid(n: u128) -> AgentId {
        uuid::Uuid::from_u128(n).to_string().parse().unwrap()
    }

    fn tid(n: u128) -> HandoffId {
        uuid::Uuid::from_u128(0xF000_0000 + n)
            .to_string()
            .parse()
            .unwrap()
    }

    fn hours(tz: &str, days: &[&str], range: &str) -> BusinessHours {
        BusinessHours::new(HoursConfig {
            timezone: tz.into(),
            weekly: days
                .iter()
                .map(|d| (d.to_string(), vec![range.to_string()]))
                .collect(),
            holidays: Vec::new(),
        })
        .unwrap()
    }

    /// Monday 2026-06-01 00:00 UTC.
    const MONDAY: i64 = 1_780_272_000_000;
    const HOUR: i64 = 3_600_000;

    /// A small harness: an engine, a clock and the decisions of the last call.
    struct World {
        e: Engine,
        now: i64,
        out: Vec<Decision>,
    }

    impl World {
        fn new(queues: Vec<QueueConfig>) -> Self {
            let mut w = World {
                e: Engine::new(),
                now: MONDAY + 10 * HOUR,
                out: Vec::new(),
            };
            w.e.configure_queues(queues, w.now, &mut w.out).unwrap();
            w
        }

        fn with_queue(q: QueueConfig) -> Self {
            Self::new(vec![q])
        }

        fn agent(&mut self, n: u128, teams: &[&str], skills: &[&str], cap: Capacity) -> AgentId {
            let spec = AgentSpec {
                id: aid(n),
                skills: skills.iter().map(|s| skill(s)).collect(),
                teams: teams.iter().map(|t| team(t)).collect(),
                capacity: cap,
                presence: Presence::Online,
                shift: None,
            };
            self.upsert(spec);
            aid(n)
        }

        fn upsert(&mut self, spec: AgentSpec) {
            self.out.clear();
            self.e.upsert_agent(spec, self.now, &mut self.out).unwrap();
        }

        fn ticket(&mut self, n: u128, team_name: &str, priority: Priority) -> HandoffId {
            self.ticket_with(n, team_name, priority, ChannelKind::WebChat, &[], None)
        }

        fn ticket_with(
            &mut self,
            n: u128,
            team_name: &str,
            priority: Priority,
            channel: ChannelKind,
            skills: &[&str],
            last_agent: Option<(AgentId, i64)>,
        ) -> HandoffId {
            self.out.clear();
            let spec = TicketSpec {
                id: tid(n),
                team: team(team_name),
                channel,
                priority,
                required_skills: skills.iter().map(|s| skill(s)).collect(),
                enqueued_at_ms: self.now,
                last_agent,
            };
            self.e.enqueue(spec, self.now, &mut self.out).unwrap();
            tid(n)
        }

        fn later(&mut self, ms: i64) {
            self.now += ms;
        }

        fn tick(&mut self) {
            self.out = self.e.tick(self.now);
        }

        fn accept(&mut self, t: HandoffId, a: AgentId) {
            self.out.clear();
            self.e.accept(t, a, self.now, &mut self.out).unwrap();
        }

        fn decline(&mut self, t: HandoffId, a: AgentId) {
            self.out.clear();
            self.e.decline(t, a, self.now, &mut self.out).unwrap();
        }

        fn resolve(&mut self, t: HandoffId) {
            self.out.clear();
            self.e.resolve(t, self.now, &mut self.out).unwrap();
        }

        fn presence(&mut self, a: AgentId, p: Presence) {
            self.out.clear();
            self.e.set_presence(a, p, self.now, &mut self.out).unwrap();
        }

        fn transfer(&mut self, t: HandoffId, to: TransferTarget) {
            self.out.clear();
            self.e.transfer(t, to, self.now, &mut self.out).unwrap();
        }

        /// Who the ticket is offered to, if anyone.
        fn offered_to(&self, t: HandoffId) -> Option<AgentId> {
            match self.e.ticket(t)?.placement {
                Placement::Offered { agent, .. } => Some(agent),
                _ => None,
            }
        }

        fn owner(&self, t: HandoffId) -> Option<AgentId> {
            match self.e.ticket(t)?.placement {
                Placement::Owned { agent, .. } => Some(agent),
                _ => None,
            }
        }

        fn is_queued(&self, t: HandoffId) -> bool {
            self.e
                .ticket(t)
                .is_some_and(|r| r.placement == Placement::Queued)
        }

        /// The (ticket, agent) pairs offered by the last call, in order.
        fn offers(&self) -> Vec<(HandoffId, AgentId)> {
            self.out
                .iter()
                .filter_map(|d| match d {
                    Decision::Offered { ticket, agent, .. } => Some((ticket.id, *agent)),
                    _ => None,
                })
                .collect()
        }
    }

    fn support() -> QueueConfig {
        QueueConfig::new(team("support"))
    }

    fn chats(n: u32) -> Capacity {
        Capacity {
            chat: n,
            messaging: n,
            email: n,
            total: n,
        }
    }

    // ---- basics -------------------------------------------------------------------------------

    #[test]
    fn channels_map_to_work_classes() {
        assert_eq!(WorkClass::of(ChannelKind::Api), WorkClass::Chat);
        assert_eq!(WorkClass::of(ChannelKind::WebChat), WorkClass::Chat);
        for c in [
            ChannelKind::Messenger,
            ChannelKind::Instagram,
            ChannelKind::WhatsApp,
            ChannelKind::Telegram,
            ChannelKind::Sms,
        ] {
            assert_eq!(WorkClass::of(c), WorkClass::Messaging);
        }
        assert_eq!(WorkClass::of(ChannelKind::Email), WorkClass::Email);
    }

    #[test]
    fn a_ticket_is_offered_at_once_to_an_online_agent_with_room() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        assert_eq!(w.out.len(), 2);
        assert_eq!(w.out[0].name(), "queued");
        match &w.out[1] {
            Decision::Offered {
                ticket,
                agent,
                deadline_ms,
            } => {
                assert_eq!((ticket.id, *agent), (t, a));
                assert_eq!(ticket.team, team("support"));
                assert_eq!(ticket.class, WorkClass::Chat);
                assert_eq!(*deadline_ms, Some(w.now + DEFAULT_ACCEPT_TIMEOUT_MS));
            }
            other => panic!("expected an offer, got {other:?}"),
        }
        assert_eq!(w.out[1].event_kind(), Some(HandoffEventKind::Assigned));
        w.accept(t, a);
        assert_eq!(w.owner(t), Some(a));
        assert_eq!(w.out[0].event_kind(), Some(HandoffEventKind::Accepted));
    }

    #[test]
    fn a_ticket_waits_when_nobody_has_room_and_decisions_report_the_wait() {
        let mut w = World::with_queue(support());
        let t = w.ticket(1, "support", Priority::Normal);
        assert!(w.is_queued(t));
        w.later(5_000);
        let a = w.agent(1, &["support"], &[], chats(1));
        assert_eq!(w.offers(), vec![(t, a)]);
        assert_eq!(w.out[0].ticket().unwrap().wait_ms, 5_000);
    }

    #[test]
    fn an_agent_who_frees_a_slot_takes_the_oldest_urgent_ticket_first() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let busy = w.ticket(1, "support", Priority::Normal);
        w.accept(busy, a);
        w.later(1);
        let _low = w.ticket(2, "support", Priority::Low);
        w.later(1);
        let old_urgent = w.ticket(3, "support", Priority::Urgent);
        w.later(1);
        let _high = w.ticket(4, "support", Priority::High);
        w.later(1);
        let _new_urgent = w.ticket(5, "support", Priority::Urgent);
        w.resolve(busy);
        assert_eq!(w.offers(), vec![(old_urgent, a)]);
    }

    #[test]
    fn an_agent_takes_the_best_ticket_across_all_queues_of_their_teams() {
        let mut w = World::new(vec![
            QueueConfig::new(team("billing")),
            QueueConfig::new(team("tech")),
        ]);
        let t1 = w.ticket(1, "billing", Priority::Normal);
        w.later(1);
        let t2 = w.ticket(2, "tech", Priority::High);
        let a = w.agent(1, &["billing", "tech"], &[], chats(2));
        assert_eq!(w.offers(), vec![(t2, a), (t1, a)]);
    }

    #[test]
    fn tickets_need_every_required_skill_including_the_queues_own() {
        let mut q = QueueConfig::new(team("es"));
        q.required_skills = vec![skill("lang:es")];
        let mut w = World::with_queue(q);
        let english = w.agent(1, &["es"], &["billing"], chats(1));
        let t = w.ticket_with(
            1,
            "es",
            Priority::Normal,
            ChannelKind::WebChat,
            &["billing"],
            None,
        );
        assert!(w.is_queued(t), "{english} lacks lang:es");
        let spanish_only = w.agent(2, &["es"], &["lang:es"], chats(1));
        assert!(w.is_queued(t), "{spanish_only} lacks billing");
        let both = w.agent(3, &["es"], &["lang:es", "billing"], chats(1));
        assert_eq!(w.offers(), vec![(t, both)]);
    }

    #[test]
    fn capacity_is_counted_per_work_class_and_overall() {
        let mut w = World::with_queue(support());
        let cap = Capacity {
            chat: 1,
            messaging: 0,
            email: 2,
            total: 2,
        };
        let a = w.agent(1, &["support"], &[], cap);
        let chat1 = w.ticket_with(
            1,
            "support",
            Priority::Normal,
            ChannelKind::WebChat,
            &[],
            None,
        );
        let chat2 = w.ticket_with(2, "support", Priority::Normal, ChannelKind::Api, &[], None);
        let sms = w.ticket_with(3, "support", Priority::Normal, ChannelKind::Sms, &[], None);
        let mail1 = w.ticket_with(
            4,
            "support",
            Priority::Normal,
            ChannelKind::Email,
            &[],
            None,
        );
        let mail2 = w.ticket_with(
            5,
            "support",
            Priority::Normal,
            ChannelKind::Email,
            &[],
            None,
        );
        assert_eq!(w.offered_to(chat1), Some(a));
        assert!(w.is_queued(chat2), "one chat at a time");
        assert!(w.is_queued(sms), "no messaging capacity");
        assert_eq!(w.offered_to(mail1), Some(a));
        assert!(w.is_queued(mail2), "two in total");
        assert_eq!(
            w.e.agent_load(a),
            Some(Capacity {
                chat: 1,
                messaging: 0,
                email: 1,
                total: 2
            })
        );
    }

    // ---- strategies ---------------------------------------------------------------------------

    #[test]
    fn round_robin_offers_the_agent_offered_least_recently() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(5));
        let b = w.agent(2, &["support"], &[], chats(5));
        let c = w.agent(3, &["support"], &[], chats(5));
        let mut got = Vec::new();
        for n in 0..6 {
            let t = w.ticket(n, "support", Priority::Normal);
            got.push(w.offered_to(t).unwrap());
        }
        // Never-offered agents first, by id; then in the order they were last offered.
        assert_eq!(got, vec![a, b, c, a, b, c]);
    }

    #[test]
    fn least_busy_offers_the_agent_with_the_lowest_load_ratio() {
        let mut q = support();
        q.strategy = Strategy::LeastBusy;
        let mut w = World::with_queue(q);
        let small = w.agent(1, &["support"], &[], chats(2));
        let big = w.agent(2, &["support"], &[], chats(6));
        // Both empty: tie, round robin picks `small` (never offered, lower id).
        let t1 = w.ticket(1, "support", Priority::Normal);
        assert_eq!(w.offered_to(t1), Some(small));
        // small is at 1/2, big at 0/6.
        let t2 = w.ticket(2, "support", Priority::Normal);
        assert_eq!(w.offered_to(t2), Some(big));
        // small 1/2 vs big 1/6.
        let t3 = w.ticket(3, "support", Priority::Normal);
        assert_eq!(w.offered_to(t3), Some(big));
        let t4 = w.ticket(4, "support", Priority::Normal);
        assert_eq!(w.offered_to(t4), Some(big));
        // big at 3/6 ties small at 1/2: round robin, small was offered longer ago.
        let t5 = w.ticket(5, "support", Priority::Normal);
        assert_eq!(w.offered_to(t5), Some(small));
    }

    #[test]
    fn best_fit_keeps_generalists_free() {
        let mut q = support();
        q.strategy = Strategy::BestFit;
        let mut w = World::with_queue(q);
        let generalist = w.agent(1, &["support"], &["billing", "tech", "lang:es"], chats(3));
        let specialist = w.agent(2, &["support"], &["billing"], chats(3));
        let t = w.ticket_with(
            1,
            "support",
            Priority::Normal,
            ChannelKind::WebChat,
            &["billing"],
            None,
        );
        assert_eq!(w.offered_to(t), Some(specialist));
        let t = w.ticket_with(
            2,
            "support",
            Priority::Normal,
            ChannelKind::WebChat,
            &["tech"],
            None,
        );
        assert_eq!(w.offered_to(t), Some(generalist));
    }

    #[test]
    fn best_fit_ties_go_to_the_least_busy() {
        let mut q = support();
        q.strategy = Strategy::BestFit;
        let mut w = World::with_queue(q);
        let a = w.agent(1, &["support"], &["billing"], chats(3));
        let b = w.agent(2, &["support"], &["billing"], chats(3));
        let t1 = w.ticket_with(
            1,
            "support",
            Priority::Normal,
            ChannelKind::WebChat,
            &["billing"],
            None,
        );
        w.accept(t1, w.offered_to(t1).unwrap());
        let first = w.owner(t1).unwrap();
        let t2 = w.ticket_with(
            2,
            "support",
            Priority::Normal,
            ChannelKind::WebChat,
            &["billing"],
            None,
        );
        let other = if first == a { b } else { a };
        assert_eq!(w.offered_to(t2), Some(other));
    }

    #[test]
    fn sticky_routing_prefers_the_customers_last_agent_within_the_window() {
        let mut q = support();
        q.sticky_window_ms = Some(24 * HOUR);
        let mut w = World::with_queue(q);
        let _a = w.agent(1, &["support"], &[], chats(3));
        let b = w.agent(2, &["support"], &[], chats(3));
        let t = w.ticket_with(
            1,
            "support",
            Priority::Normal,
            ChannelKind::WebChat,
            &[],
            Some((b, w.now - HOUR)),
        );
        assert_eq!(w.offered_to(t), Some(b), "round robin alone would pick a");
    }

    #[test]
    fn sticky_routing_falls_back_to_the_strategy_outside_the_window_or_when_busy() {
        let mut q = support();
        q.sticky_window_ms = Some(HOUR);
        let mut w = World::with_queue(q);
        let a = w.agent(1, &["support"], &[], chats(1));
        let b = w.agent(2, &["support"], &[], chats(1));
        let stale = w.ticket_with(
            1,
            "support",
            Priority::Normal,
            ChannelKind::WebChat,
            &[],
            Some((b, w.now - 2 * HOUR)),
        );
        assert_eq!(w.offered_to(stale), Some(a));
        // b's only slot is taken; a ticket sticky to a (now full) goes to b.
        let blocker = w.ticket(2, "support", Priority::Normal);
        assert_eq!(w.offered_to(blocker), Some(b));
        w.resolve(blocker);
        let sticky_to_busy = w.ticket_with(
            3,
            "support",
            Priority::Normal,
            ChannelKind::WebChat,
            &[],
            Some((a, w.now)),
        );
        assert_eq!(w.offered_to(sticky_to_busy), Some(b));
    }

    // ---- presence, shifts, capacity -------------------------------------------------------------

    #[test]
    fn away_and_offline_agents_take_no_new_tickets_and_keep_their_own() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(3));
        let owned = w.ticket(1, "support", Priority::Normal);
        w.accept(owned, a);
        w.presence(a, Presence::Away);
        let t = w.ticket(2, "support", Priority::Normal);
        assert!(w.is_queued(t));
        assert_eq!(w.owner(owned), Some(a));
        w.presence(a, Presence::Offline);
        assert!(w.is_queued(t));
        w.presence(a, Presence::Online);
        assert_eq!(w.offers(), vec![(t, a)], "coming online takes waiting work");
    }

    #[test]
    fn going_away_withdraws_pending_offers_and_reroutes_them() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        assert_eq!(w.offered_to(t), Some(a));
        let b = w.agent(2, &["support"], &[], chats(1));
        w.presence(a, Presence::Away);
        assert_eq!(w.out[0].name(), "withdrawn");
        assert_eq!(w.offered_to(t), Some(b));
        assert!(w.e.ticket(t).unwrap().excluded.is_empty());
    }

    #[test]
    fn an_agent_off_shift_takes_nothing_until_the_shift_starts() {
        let mut w = World::with_queue(support());
        let spec = AgentSpec {
            id: aid(1),
            skills: vec![],
            teams: vec![team("support")],
            capacity: chats(2),
            presence: Presence::Online,
            shift: Some(hours("UTC", &["mon"], "12:00-14:00")),
        };
        w.upsert(spec);
        let t = w.ticket(1, "support", Priority::Normal); // 10:00
        assert!(w.is_queued(t));
        w.later(2 * HOUR);
        w.tick();
        assert_eq!(w.offers(), vec![(t, aid(1))]);
        w.accept(t, aid(1));
        w.later(2 * HOUR); // 14:00, shift over
        let t2 = w.ticket(2, "support", Priority::Normal);
        assert!(w.is_queued(t2));
        assert_eq!(w.owner(t), Some(aid(1)), "owned work stays");
    }

    #[test]
    fn raising_capacity_fills_the_new_slots_and_lowering_it_withdraws_offers() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let t1 = w.ticket(1, "support", Priority::Normal);
        let t2 = w.ticket(2, "support", Priority::Normal);
        assert!(w.is_queued(t2));
        w.agent(1, &["support"], &[], chats(2));
        assert_eq!(w.offers(), vec![(t2, a)]);
        w.accept(t1, a);
        w.agent(1, &["support"], &[], chats(0));
        assert!(w.is_queued(t2), "the offer was withdrawn");
        assert_eq!(w.owner(t1), Some(a), "owned work is kept");
    }

    #[test]
    fn removing_an_agent_puts_their_tickets_back_in_the_queue() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(2));
        let t1 = w.ticket(1, "support", Priority::Normal);
        w.accept(t1, a);
        let t2 = w.ticket(2, "support", Priority::Normal);
        assert_eq!(w.offered_to(t2), Some(a));
        let b = w.agent(2, &["support"], &[], chats(1));
        w.out.clear();
        w.e.remove_agent(a, w.now, &mut w.out).unwrap();
        let withdrawn: Vec<bool> = w
            .out
            .iter()
            .filter_map(|d| match d {
                Decision::Withdrawn { was_owned, .. } => Some(*was_owned),
                _ => None,
            })
            .collect();
        assert_eq!(withdrawn.len(), 2);
        assert_eq!(w.offered_to(t1), Some(b), "oldest first");
        assert!(w.is_queued(t2));
        assert!(w.e.agent_load(a).is_none());
    }

    // ---- offers -------------------------------------------------------------------------------

    #[test]
    fn a_declined_ticket_keeps_its_place_and_goes_to_someone_else() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let b = w.agent(2, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        let first = w.offered_to(t).unwrap();
        assert_eq!(first, a);
        let blocker = w.ticket(2, "support", Priority::Normal);
        assert_eq!(w.offered_to(blocker), Some(b));
        w.later(10);
        let newer = w.ticket(3, "support", Priority::Normal);
        w.decline(t, a);
        assert_eq!(w.out[0].name(), "declined");
        // a's slot is free again and takes `newer`, as `t` excludes a; t waits for b.
        assert_eq!(w.offers(), vec![(newer, a)]);
        assert!(w.is_queued(t));
        assert_eq!(w.e.ticket(t).unwrap().spec.enqueued_at_ms, w.now - 10);
        w.resolve(blocker);
        assert_eq!(w.offers(), vec![(t, b)], "t kept its original place");
    }

    #[test]
    fn a_decliner_is_not_offered_the_ticket_again_while_another_qualified_agent_exists() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(2));
        let b = w.agent(2, &["support"], &[], chats(1));
        let busy = w.ticket(1, "support", Priority::Normal);
        assert_eq!(w.offered_to(busy), Some(a));
        let t = w.ticket(2, "support", Priority::Normal);
        assert_eq!(w.offered_to(t), Some(b));
        w.decline(t, b);
        // a has room but... a has not declined: a gets it.
        assert_eq!(w.offers(), vec![(t, a)]);
        w.decline(t, a);
        // Both declined: everyone qualified is excluded, so exclusions reset and it goes round.
        assert_eq!(w.out[1].name(), "exclusions_reset");
        assert_eq!(w.offers().len(), 1);
    }

    #[test]
    fn a_ticket_waits_for_a_busy_agent_rather_than_returning_to_the_one_who_declined() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let b = w.agent(2, &["support"], &[], chats(1));
        let t1 = w.ticket(1, "support", Priority::Normal);
        let t2 = w.ticket(2, "support", Priority::Normal);
        assert_eq!((w.offered_to(t1), w.offered_to(t2)), (Some(a), Some(b)));
        w.accept(t2, b);
        w.decline(t1, a);
        assert!(
            w.is_queued(t1),
            "b is busy but qualified, so t1 waits for b"
        );
        assert_eq!(w.e.ticket(t1).unwrap().excluded, vec![a]);
        w.resolve(t2);
        assert_eq!(w.offers(), vec![(t1, b)]);
    }

    #[test]
    fn when_every_qualified_agent_has_declined_the_exclusions_are_cleared() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        w.decline(t, a);
        match &w.out[1] {
            Decision::ExclusionsReset { cleared, .. } => assert_eq!(cleared, &vec![a]),
            other => panic!("expected a reset, got {other:?}"),
        }
        assert_eq!(w.offered_to(t), Some(a));
    }

    #[test]
    fn when_the_only_other_agent_goes_offline_the_exclusions_are_cleared() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let b = w.agent(2, &["support"], &[], chats(1));
        let t1 = w.ticket(1, "support", Priority::Normal);
        let t2 = w.ticket(2, "support", Priority::Normal);
        w.accept(t2, b);
        w.decline(t1, a);
        assert!(w.is_queued(t1));
        w.presence(b, Presence::Offline);
        assert!(w.out.iter().any(|d| d.name() == "exclusions_reset"));
        assert_eq!(w.offered_to(t1), Some(a));
    }

    #[test]
    fn an_offer_that_times_out_is_reoffered_and_the_agent_excluded() {
        let mut q = support();
        q.accept_timeout_ms = Some(20_000);
        let mut w = World::with_queue(q);
        let a = w.agent(1, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        let b = w.agent(2, &["support"], &[], chats(1));
        w.later(19_999);
        w.tick();
        assert!(w.out.is_empty());
        w.later(1);
        w.tick();
        assert_eq!(w.out[0].name(), "offer_expired");
        assert_eq!(w.out[0].agent(), Some(a));
        assert_eq!(w.offered_to(t), Some(b));
        assert_eq!(w.e.ticket(t).unwrap().excluded, vec![a]);
    }

    #[test]
    fn accepting_after_the_deadline_fails_even_before_a_tick() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        // b is busy, so the expired ticket waits for b instead of going back to a.
        let b = w.agent(2, &["support"], &[], chats(1));
        let other = w.ticket(2, "support", Priority::Normal);
        w.accept(other, b);
        w.later(DEFAULT_ACCEPT_TIMEOUT_MS);
        w.out.clear();
        let err = w.e.accept(t, a, w.now, &mut w.out).unwrap_err();
        assert_eq!(
            err,
            EngineError::NotOfferedTo {
                ticket: t,
                agent: a
            }
        );
        assert_eq!(
            w.out[0].name(),
            "offer_expired",
            "the timer's decision is kept"
        );
    }

    #[test]
    fn offers_without_a_timeout_stand_until_answered() {
        let mut q = support();
        q.accept_timeout_ms = None;
        let mut w = World::with_queue(q);
        let a = w.agent(1, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        w.later(1000 * HOUR);
        w.tick();
        w.accept(t, a);
        assert_eq!(w.owner(t), Some(a));
    }

    #[test]
    fn only_the_agent_offered_a_ticket_can_accept_or_decline_it() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let b = w.agent(2, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        assert_eq!(w.offered_to(t), Some(a));
        let mut out = Vec::new();
        assert!(matches!(
            w.e.accept(t, b, w.now, &mut out),
            Err(EngineError::NotOfferedTo { .. })
        ));
        assert!(matches!(
            w.e.decline(t, b, w.now, &mut out),
            Err(EngineError::NotOfferedTo { .. })
        ));
        assert!(matches!(
            w.e.accept(tid(99), a, w.now, &mut out),
            Err(EngineError::UnknownTicket(_))
        ));
        w.accept(t, a);
        assert!(
            w.e.accept(t, a, w.now, &mut out).is_err(),
            "already accepted"
        );
    }

    // ---- overflow ---------------------------------------------------------------------------

    #[test]
    fn a_ticket_waiting_too_long_overflows_to_the_overflow_team() {
        let mut tier1 = QueueConfig::new(team("tier1"));
        tier1.overflow_after_ms = Some(60_000);
        tier1.overflow_to = Some(team("tier2"));
        let mut w = World::new(vec![tier1, QueueConfig::new(team("tier2"))]);
        let t = w.ticket(1, "tier1", Priority::Normal);
        let b = w.agent(2, &["tier2"], &[], chats(0));
        w.later(59_999);
        w.tick();
        assert!(w.out.is_empty());
        w.later(1);
        w.tick();
        match &w.out[0] {
            Decision::Overflowed {
                ticket,
                from,
                from_priority,
            } => {
                assert_eq!(from, &team("tier1"));
                assert_eq!(ticket.team, team("tier2"));
                assert_eq!(*from_priority, Priority::Normal);
                assert_eq!(ticket.wait_ms, 60_000);
            }
            other => panic!("expected overflow, got {other:?}"),
        }
        assert_eq!(w.e.queue_len(&team("tier2")), Some(1));
        w.agent(2, &["tier2"], &[], chats(1));
        assert_eq!(w.offers(), vec![(t, b)]);
    }

    #[test]
    fn overflow_raises_the_priority_once() {
        let mut q = support();
        q.overflow_after_ms = Some(1_000);
        q.overflow_priority = Some(Priority::High);
        let mut w = World::with_queue(q);
        let t = w.ticket(1, "support", Priority::Low);
        w.later(1_000);
        w.tick();
        assert_eq!(w.out.len(), 1);
        assert_eq!(w.e.ticket(t).unwrap().spec.priority, Priority::High);
        w.later(10_000);
        w.tick();
        assert!(w.out.is_empty(), "once");
        // Never lowers.
        let u = w.ticket(2, "support", Priority::Urgent);
        w.later(1_000);
        w.tick();
        assert_eq!(w.e.ticket(u).unwrap().spec.priority, Priority::Urgent);
    }

    #[test]
    fn an_offered_ticket_does_not_overflow_until_it_is_back_in_the_queue() {
        let mut q = support();
        q.overflow_after_ms = Some(1_000);
        q.overflow_priority = Some(Priority::Urgent);
        q.accept_timeout_ms = None;
        let mut w = World::with_queue(q);
        let a = w.agent(1, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        w.later(5_000);
        w.tick();
        assert!(w.out.is_empty());
        let b = w.agent(2, &["support"], &[], chats(1));
        let other = w.ticket(2, "support", Priority::Normal);
        w.accept(other, b);
        w.decline(t, a);
        // Back in the queue (waiting for b, who is busy) and long overdue: it overflows now.
        assert!(w.is_queued(t));
        assert_eq!(w.out.last().map(Decision::name), Some("overflowed"));
        assert_eq!(w.e.ticket(t).unwrap().spec.priority, Priority::Urgent);
    }

    // ---- business hours ---------------------------------------------------------------------

    #[test]
    fn a_closed_queue_holds_tickets_until_it_opens() {
        let mut q = support();
        q.hours = Some(hours("UTC", &["mon"], "12:00-17:00"));
        let mut w = World::with_queue(q); // Monday 10:00
        let a = w.agent(1, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        assert!(w.is_queued(t));
        assert_eq!(w.e.is_open(&team("support")), Some(false));
        assert_eq!(
            w.e.next_open(&team("support"), w.now),
            Some(MONDAY + 12 * HOUR)
        );
        w.later(2 * HOUR);
        w.tick();
        assert_eq!(
            w.out[0],
            Decision::QueueOpened {
                team: team("support")
            }
        );
        assert_eq!(w.offers(), vec![(t, a)]);
        w.accept(t, a);
        w.later(5 * HOUR);
        w.tick();
        match &w.out[0] {
            Decision::QueueClosed { opens_at_ms, .. } => {
                assert_eq!(*opens_at_ms, Some(MONDAY + (7 * 24 + 12) * HOUR))
            }
            other => panic!("expected closing, got {other:?}"),
        }
    }

    #[test]
    fn any_call_opens_a_queue_whose_hours_started_not_just_tick() {
        let mut q = support();
        q.hours = Some(hours("UTC", &["mon"], "12:00-17:00"));
        let mut w = World::with_queue(q);
        let t = w.ticket(1, "support", Priority::Normal);
        w.later(2 * HOUR);
        let a = w.agent(1, &["support"], &[], chats(1));
        assert_eq!(w.offers(), vec![(t, a)]);
    }

    #[test]
    fn outside_hours_an_on_call_team_serves_the_queue() {
        let mut q = support();
        q.hours = Some(hours("UTC", &["mon"], "12:00-17:00"));
        q.on_call = Some(team("night"));
        let mut w = World::with_queue(q);
        let day = w.agent(1, &["support"], &[], chats(1));
        let night = w.agent(2, &["night"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        assert_eq!(w.offered_to(t), Some(night));
        w.accept(t, night);
        w.later(2 * HOUR);
        let t2 = w.ticket(2, "support", Priority::Normal);
        assert_eq!(w.offered_to(t2), Some(day));
    }

    // ---- transfers, release, resolve ----------------------------------------------------------

    #[test]
    fn a_transfer_to_another_team_frees_the_owner_and_routes_in_the_new_queue() {
        let mut w = World::new(vec![
            QueueConfig::new(team("tier1")),
            QueueConfig::new(team("tier2")),
        ]);
        let a = w.agent(1, &["tier1", "tier2"], &[], chats(1));
        let b = w.agent(2, &["tier2"], &[], chats(1));
        let t = w.ticket(1, "tier1", Priority::Normal);
        w.accept(t, a);
        let waiting = w.ticket(2, "tier1", Priority::Normal);
        assert!(w.is_queued(waiting));
        w.transfer(t, TransferTarget::Team(team("tier2")));
        match &w.out[0] {
            Decision::Transferred {
                ticket,
                from,
                previous_agent,
                ..
            } => {
                assert_eq!(ticket.team, team("tier2"));
                assert_eq!(from, &team("tier1"));
                assert_eq!(*previous_agent, Some(a));
            }
            other => panic!("expected a transfer, got {other:?}"),
        }
        // b gets the transferred ticket (a is excluded for it), a's freed slot takes `waiting`.
        assert_eq!(w.offers(), vec![(t, b), (waiting, a)]);
    }

    #[test]
    fn a_transfer_to_an_agent_offers_the_ticket_to_them_directly() {
        let mut w = World::new(vec![QueueConfig::new(team("tier1"))]);
        let a = w.agent(1, &["tier1"], &[], chats(1));
        let expert = w.agent(2, &["elsewhere"], &[], chats(1));
        let t = w.ticket(1, "tier1", Priority::Normal);
        w.accept(t, a);
        w.transfer(t, TransferTarget::Agent(expert));
        assert_eq!(w.offered_to(t), Some(expert));
        assert_eq!(w.e.agent_load(a).unwrap().total, 0);
        // Declining a direct offer puts it back in its queue, where a (not excluded) takes it.
        w.decline(t, expert);
        assert_eq!(w.offered_to(t), Some(a));
        let mut out = Vec::new();
        assert_eq!(
            w.e.transfer(t, TransferTarget::Agent(a), w.now, &mut out),
            Err(EngineError::AlreadyThere(t))
        );
    }

    #[test]
    fn a_transfer_to_a_full_or_absent_agent_is_refused() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let t1 = w.ticket(1, "support", Priority::Normal);
        let t2 = w.ticket(2, "support", Priority::Normal);
        let mut out = Vec::new();
        assert_eq!(
            w.e.transfer(t2, TransferTarget::Agent(a), w.now, &mut out),
            Err(EngineError::AgentAtCapacity(a))
        );
        w.presence(a, Presence::Away);
        assert_eq!(
            w.e.transfer(t1, TransferTarget::Agent(a), w.now, &mut out),
            Err(EngineError::AgentUnavailable(a))
        );
        assert!(matches!(
            w.e.transfer(t1, TransferTarget::Team(team("nope")), w.now, &mut out),
            Err(EngineError::UnknownQueue(_))
        ));
    }

    #[test]
    fn resolving_frees_the_slot_and_the_ticket_leaves() {
        let mut w = World::with_queue(support());
        let a = w.agent(1, &["support"], &[], chats(1));
        let t1 = w.ticket(1, "support", Priority::Normal);
        w.accept(t1, a);
        let t2 = w.ticket(2, "support", Priority::Normal);
        w.resolve(t1);
        assert_eq!(w.out[0].name(), "resolved");
        assert_eq!(w.out[0].agent(), Some(a));
        assert_eq!(w.offers(), vec![(t2, a)]);
        assert!(w.e.ticket(t1).is_none());
        assert_eq!(w.e.ticket_count(), 1);
    }

    #[test]
    fn releasing_a_queued_ticket_takes_it_out_of_the_queue() {
        let mut w = World::with_queue(support());
        let t = w.ticket(1, "support", Priority::Normal);
        w.out.clear();
        w.e.release(t, w.now, &mut w.out).unwrap();
        assert_eq!(w.out[0].name(), "released");
        assert_eq!(w.out[0].agent(), None);
        assert_eq!(w.e.queue_len(&team("support")), Some(0));
    }

    #[test]
    fn position_counts_the_tickets_ahead_in_the_same_class() {
        let mut w = World::with_queue(support());
        let t1 = w.ticket(1, "support", Priority::Normal);
        w.later(1);
        let t2 = w.ticket_with(
            2,
            "support",
            Priority::Normal,
            ChannelKind::WebChat,
            &["x"],
            None,
        );
        w.later(1);
        let mail = w.ticket_with(
            3,
            "support",
            Priority::Urgent,
            ChannelKind::Email,
            &[],
            None,
        );
        w.later(1);
        let t4 = w.ticket(4, "support", Priority::High);
        assert_eq!(w.e.position(t4), Some((1, 3)));
        assert_eq!(w.e.position(t1), Some((2, 3)));
        assert_eq!(w.e.position(t2), Some((3, 3)));
        assert_eq!(w.e.position(mail), Some((1, 1)));
        let cap = Capacity {
            chat: 1,
            messaging: 0,
            email: 0,
            total: 1,
        };
        let a = w.agent(1, &["support"], &[], cap);
        assert_eq!(w.e.position(t4), None, "offered to {a}");
        assert_eq!(w.e.position(t1), Some((1, 2)));
    }

    // ---- configuration ----------------------------------------------------------------------

    #[test]
    fn queue_configuration_deserializes_and_is_validated() {
        let q: QueueConfig = serde_json::from_str(
            r#"{ "team": "Support-ES", "strategy": "best_fit", "required_skills": ["lang:es"],
                 "sticky_window_ms": 86400000, "overflow_after_ms": 300000,
                 "overflow_priority": "high",
                 "hours": { "timezone": "Europe/Madrid", "weekly": { "mon": ["09:00-18:00"] } },
                 "on_call": "night" }"#,
        )
        .unwrap();
        assert_eq!(q.team, team("support-es"));
        assert_eq!(q.strategy, Strategy::BestFit);
        assert_eq!(q.accept_timeout_ms, Some(DEFAULT_ACCEPT_TIMEOUT_MS));
        assert!(serde_json::from_str::<QueueConfig>(r#"{ "team": "a b" }"#).is_err());

        let mut e = Engine::new();
        let mut out = Vec::new();
        e.configure_queues(vec![q], 0, &mut out).unwrap();
        let mut bad = support();
        bad.overflow_after_ms = Some(1000);
        assert!(matches!(
            e.configure_queues(vec![bad], 0, &mut out),
            Err(EngineError::InvalidQueue { .. })
        ));
        let mut bad = support();
        bad.overflow_after_ms = Some(1000);
        bad.overflow_to = Some(team("nowhere"));
        assert!(e.configure_queues(vec![bad], 0, &mut out).is_err());
        let mut bad = support();
        bad.accept_timeout_ms = Some(0);
        assert!(e.configure_queues(vec![bad], 0, &mut out).is_err());
        assert!(matches!(
            e.enqueue(
                TicketSpec {
                    id: tid(1),
                    team: team("support"),
                    channel: ChannelKind::Sms,
                    priority: Priority::Normal,
                    required_skills: vec![],
                    enqueued_at_ms: 0,
                    last_agent: None,
                },
                0,
                &mut out
            ),
            Err(EngineError::UnknownQueue(_))
        ));
    }

    #[test]
    fn reconfiguring_a_queue_resorts_its_tickets_under_the_new_skills() {
        let mut q = support();
        q.required_skills = vec![skill("vip")];
        let mut w = World::with_queue(q);
        let a = w.agent(1, &["support"], &[], chats(1));
        let t = w.ticket(1, "support", Priority::Normal);
        assert!(w.is_queued(t));
        w.out.clear();
        w.e.configure_queues(vec![support()], w.now, &mut w.out)
            .unwrap();
        assert_eq!(w.offers(), vec![(t, a)]);
    }

    #[test]
    fn a_duplicate_ticket_is_refused() {
        let mut w = World::with_queue(support());
        w.ticket(1, "support", Priority::Normal);
        let mut out = Vec::new();
        let spec = TicketSpec {
            id: tid(1),
            team: team("support"),
            channel: ChannelKind::Sms,
            priority: Priority::Normal,
            required_skills: vec![],
            enqueued_at_ms: 0,
            last_agent: None,
        };
        assert_eq!(
            w.e.enqueue(spec, w.now, &mut out),
            Err(EngineError::DuplicateTicket(tid(1)))
        );
    }

    // ---- randomized: invariants and rebuild ---------------------------------------------------

    mod random {
        use super::*;
        use rand::rngs::StdRng;
        use rand::seq::IndexedRandom;
        use rand::{Rng, SeedableRng};
        use std::collections::{BTreeMap, HashSet};

        const TEAMS: [&str; 4] = ["alpha", "beta", "gamma", "night"];
        const SKILLS: [&str; 5] = ["billing", "tech", "lang:es", "lang:de", "vip"];
        const CHANNELS: [ChannelKind; 4] = [
            ChannelKind::WebChat,
            ChannelKind::WhatsApp,
            ChannelKind::Email,
            ChannelKind::Sms,
        ];
        const PRIORITIES: [Priority; 4] = [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ];

        fn queues() -> Vec<QueueConfig> {
            queues_for(false)
        }

        /// The random runs switch between two configurations to exercise reconfiguration.
        fn queues_for(variant: bool) -> Vec<QueueConfig> {
            let mut alpha = QueueConfig::new(team("alpha"));
            alpha.strategy = Strategy::LeastBusy;
            alpha.sticky_window_ms = Some(30 * 60_000);
            alpha.overflow_after_ms = Some(90_000);
            alpha.overflow_to = Some(team("beta"));
            let mut beta = QueueConfig::new(team("beta"));
            beta.strategy = Strategy::BestFit;
            beta.accept_timeout_ms = Some(15_000);
            beta.overflow_after_ms = Some(120_000);
            beta.overflow_priority = Some(Priority::High);
            // Open 08:00-18:00 on weekdays, the night team covers the rest.
            let mut gamma = QueueConfig::new(team("gamma"));
            gamma.required_skills = vec![skill("lang:es")];
            gamma.hours = Some(hours(
                "Europe/Berlin",
                &["mon", "tue", "wed", "thu", "fri"],
                "08:00-18:00",
            ));
            gamma.on_call = Some(team("night"));
            // Closed most of the time, nobody on call.
            let mut night = QueueConfig::new(team("night"));
            night.hours = Some(hours("UTC", &["mon", "wed", "sat"], "20:00-02:00"));
            night.accept_timeout_ms = None;
            if variant {
                alpha.strategy = Strategy::RoundRobin;
                beta.required_skills = vec![skill("tech")];
            }
            vec![alpha, beta, gamma, night]
        }

        fn random_agent(rng: &mut StdRng, n: u128) -> AgentSpec {
            let teams: Vec<Team> = TEAMS
                .iter()
                .filter(|_| rng.random_bool(0.4))
                .map(|t| team(t))
                .collect();
            let skills = SKILLS
                .iter()
                .filter(|_| rng.random_bool(0.5))
                .map(|s| skill(s))
                .collect();
            let capacity = Capacity {
                chat: rng.random_range(0..=3),
                messaging: rng.random_range(0..=3),
                email: rng.random_range(0..=4),
                total: rng.random_range(0..=6),
            };
            let presence = *[
                Presence::Online,
                Presence::Online,
                Presence::Away,
                Presence::Offline,
            ]
            .choose(rng)
            .unwrap();
            let shift = rng
                .random_bool(0.2)
                .then(|| hours("UTC", &["mon", "tue", "wed", "thu", "fri"], "06:00-15:00"));
            AgentSpec {
                id: aid(n),
                skills,
                teams,
                capacity,
                presence,
                shift,
            }
        }

        /// Replays decisions into the view a store would have, to check they describe every
        /// change of place.
        #[derive(Default)]
        struct Mirror {
            place: BTreeMap<HandoffId, (Team, Placement)>,
            excluded: BTreeMap<HandoffId, HashSet<AgentId>>,
        }

        impl Mirror {
            fn apply(&mut self, d: &Decision) {
                let Some(ctx) = d.ticket() else { return };
                let id = ctx.id;
                let team = ctx.team.clone();
                let ex = self.excluded.entry(id).or_default();
                let placement = match d {
                    Decision::Offered { agent, .. } => {
                        assert!(
                            !ex.contains(agent),
                            "offered {id} to excluded {agent}: {d:?}"
                        );
                        Some(Placement::Offered {
                            agent: *agent,
                            offered_at_ms: 0,
                            deadline_ms: None,
                        })
                    }
                    Decision::Accepted { agent, .. } => Some(Placement::Owned {
                        agent: *agent,
                        since_ms: 0,
                    }),
                    Decision::Declined { agent, .. } | Decision::OfferExpired { agent, .. } => {
                        ex.insert(*agent);
                        Some(Placement::Queued)
                    }
                    Decision::Transferred {
                        to, previous_agent, ..
                    } => {
                        match to {
                            TransferTarget::Team(_) => ex.extend(*previous_agent),
                            TransferTarget::Agent(a) => {
                                ex.remove(a);
                            }
                        }
                        Some(Placement::Queued)
                    }
                    Decision::ExclusionsReset { .. } => {
                        ex.clear();
                        None
                    }
                    Decision::Queued { .. }
                    | Decision::Withdrawn { .. }
                    | Decision::Overflowed { .. } => Some(Placement::Queued),
                    Decision::Released { .. } | Decision::Resolved { .. } => {
                        self.place.remove(&id);
                        self.excluded.remove(&id);
                        return;
                    }
                    Decision::QueueOpened { .. } | Decision::QueueClosed { .. } => None,
                };
                match placement {
                    Some(p) => {
                        self.place.insert(id, (team, p));
                    }
                    None => {
                        if let Some(entry) = self.place.get_mut(&id) {
                            entry.0 = team;
                        }
                    }
                }
            }
        }

        fn same_place(a: &Placement, b: &Placement) -> bool {
            match (a, b) {
                (Placement::Queued, Placement::Queued) => true,
                (Placement::Offered { agent: x, .. }, Placement::Offered { agent: y, .. })
                | (Placement::Owned { agent: x, .. }, Placement::Owned { agent: y, .. }) => x == y,
                _ => false,
            }
        }

        /// Checks every invariant by brute force over the engine's internals.
        fn check(e: &Engine, mirror: &Mirror, step: usize) {
            let ctx = |what: &str| format!("step {step}: {what}");
            // Tickets: exactly one place each, matching the buckets and agents' work lists.
            let mut in_buckets = HashSet::new();
            let mut queued = 0;
            for (qix, q) in e.queues.iter().enumerate() {
                let Some(q) = q else { continue };
                let mut len = 0;
                for (bix, b) in q.buckets.iter().enumerate() {
                    for k in &b.keys {
                        assert!(in_buckets.insert(k.id), "{}", ctx("ticket in two buckets"));
                        let t = &e.tickets[&k.id];
                        assert_eq!(t.place, Place::Queued { bucket: bix }, "{}", ctx("bucket"));
                        assert_eq!(t.queue as usize, qix, "{}", ctx("queue"));
                        assert_eq!(*k, t.key(), "{}", ctx("stale key"));
                        assert_eq!(b.class, t.class);
                        len += 1;
                    }
                }
                assert_eq!(len, q.len, "{}", ctx("queue length"));
                for k in &q.with_exclusions {
                    assert!(in_buckets.contains(&k.id) && k.excluded);
                }
            }
            let mut holders: HashMap<HandoffId, AgentIx> = HashMap::new();
            for (ix, a) in e.agents.iter().enumerate() {
                let Some(a) = a else { continue };
                let mut load = [0u32; 3];
                let mut offered = [0u32; 3];
                for id in &a.work {
                    assert!(
                        holders.insert(*id, ix as AgentIx).is_none(),
                        "{}",
                        ctx("ticket held twice")
                    );
                    let t = &e.tickets[id];
                    match t.place {
                        Place::Offered { agent, .. } => {
                            assert_eq!(agent as usize, ix);
                            assert!(
                                !t.excluded.contains(&a.spec.id),
                                "{}",
                                ctx("offered to excluded")
                            );
                            offered[t.class.ix()] += 1;
                        }
                        Place::Owned { agent, .. } => assert_eq!(agent as usize, ix),
                        _ => panic!("{}", ctx("work list holds a ticket not offered or owned")),
                    }
                    load[t.class.ix()] += 1;
                }
                assert_eq!(load, a.load, "{}", ctx("load"));
                assert_eq!(load.iter().sum::<u32>(), a.total);
                // Capacity: never exceeded by the engine; only owned work may stay above a
                // lowered capacity, and then there are no offers in that class.
                let cap = a.spec.capacity;
                let offers: u32 = offered.iter().sum();
                assert!(
                    a.total <= cap.total || offers == 0,
                    "{}",
                    ctx("total over capacity")
                );
                for c in WorkClass::ALL {
                    assert!(
                        a.load[c.ix()] <= cap.of(c) || offered[c.ix()] == 0,
                        "{}",
                        ctx("class over capacity")
                    );
                }
                // Indexes.
                for c in WorkClass::ALL {
                    let want = a.available() && a.has_room(c);
                    for &t in &a.teams {
                        assert_eq!(
                            e.team_state[t as usize].free[c.ix()].contains(&(ix as AgentIx)),
                            want,
                            "{}",
                            ctx("free index")
                        );
                        assert!(e.team_state[t as usize].members.contains(&(ix as AgentIx)));
                    }
                }
            }
            for (id, t) in &e.tickets {
                match t.place {
                    Place::Queued { .. } => {
                        queued += 1;
                        assert!(in_buckets.contains(id));
                    }
                    Place::Offered { .. } | Place::Owned { .. } => {
                        assert!(holders.contains_key(id), "{}", ctx("holder lost ticket"))
                    }
                    Place::Limbo => panic!("{}", ctx("ticket left in limbo")),
                }
            }
            assert_eq!(queued, in_buckets.len());
            assert_eq!(holders.len() + queued, e.tickets.len());

            // Serving: each queue is in exactly its serving team's list.
            for (ts_ix, ts) in e.team_state.iter().enumerate() {
                for &q in &ts.serves {
                    assert_eq!(e.queue(q).served_by, Some(ts_ix as TeamIx));
                }
            }

            // Work conservation, and no ticket stranded by exclusions.
            for t in e.tickets.values() {
                if !matches!(t.place, Place::Queued { .. }) {
                    continue;
                }
                let q = e.queue(t.queue);
                let Some(serving) = q.served_by else { continue };
                let needs = t.own.union(&q.required);
                let mut qualified = 0;
                let mut excluded = 0;
                for a in e.agents.iter().flatten() {
                    if !a.available()
                        || !a.teams.contains(&serving)
                        || !needs.is_subset_of(&a.skills)
                    {
                        continue;
                    }
                    let is_excluded = t.excluded.contains(&a.spec.id);
                    assert!(
                        is_excluded || !a.has_room(t.class),
                        "{}",
                        ctx(&format!(
                            "agent {} idle while {} waits",
                            a.spec.id, t.spec.id
                        ))
                    );
                    if a.spec.capacity.of(t.class) > 0 && a.spec.capacity.total > 0 {
                        qualified += 1;
                        excluded += usize::from(is_excluded);
                    }
                }
                assert!(
                    qualified == 0 || excluded < qualified,
                    "{}",
                    ctx("every qualified agent excluded yet not reset")
                );
            }

            // The decisions told the whole story.
            assert_eq!(
                mirror.place.len(),
                e.tickets.len(),
                "{}",
                ctx("mirror size")
            );
            for (id, (team, placement)) in &mirror.place {
                let r = e.ticket(*id).expect("mirror ticket exists");
                assert!(
                    same_place(placement, &r.placement),
                    "{}",
                    ctx("mirror place")
                );
                assert_eq!(team, &r.spec.team, "{}", ctx("mirror team"));
            }
        }

        /// One random operation chosen from the engine's state; returns its decisions.
        struct Driver {
            rng: StdRng,
            now: i64,
            next_agent: u128,
            next_ticket: u128,
        }

        impl Driver {
            fn new(seed: u64) -> Self {
                Driver {
                    rng: StdRng::seed_from_u64(seed),
                    now: MONDAY + 7 * HOUR,
                    next_agent: 1,
                    next_ticket: 1,
                }
            }

            fn step(&mut self, e: &Engine) -> Op {
                let rng = &mut self.rng;
                let mut tickets: Vec<HandoffId> = e.tickets.keys().copied().collect();
                tickets.sort_unstable();
                let mut agents: Vec<AgentId> = e.agent_ix.keys().copied().collect();
                agents.sort_unstable();
                let offered: Vec<(HandoffId, AgentId)> = tickets
                    .iter()
                    .filter_map(|t| match e.ticket(*t).map(|r| r.placement) {
                        Some(Placement::Offered { agent, .. }) => Some((*t, agent)),
                        _ => None,
                    })
                    .collect();
                let roll = rng.random_range(0..100);
                let op = match roll {
                    0..=4 => {
                        self.next_agent += 1;
                        Op::Upsert(Box::new(random_agent(rng, self.next_agent)))
                    }
                    5..=8 if !agents.is_empty() => {
                        let id = *agents.choose(rng).unwrap();
                        let mut spec = random_agent(rng, 0);
                        spec.id = id;
                        Op::Upsert(Box::new(spec))
                    }
                    9..=10 if !agents.is_empty() => Op::Remove(*agents.choose(rng).unwrap()),
                    11..=18 if !agents.is_empty() => Op::Presence(
                        *agents.choose(rng).unwrap(),
                        *[Presence::Online, Presence::Away, Presence::Offline]
                            .choose(rng)
                            .unwrap(),
                    ),
                    19..=45 => {
                        self.next_ticket += 1;
                        let skills = SKILLS
                            .iter()
                            .filter(|_| rng.random_bool(0.15))
                            .map(|s| skill(s))
                            .collect();
                        let last_agent = (rng.random_bool(0.3) && !agents.is_empty()).then(|| {
                            (
                                *agents.choose(rng).unwrap(),
                                self.now - rng.random_range(0..HOUR),
                            )
                        });
                        Op::Enqueue(TicketSpec {
                            id: tid(self.next_ticket),
                            team: team(TEAMS.choose(rng).unwrap()),
                            channel: *CHANNELS.choose(rng).unwrap(),
                            priority: *PRIORITIES.choose(rng).unwrap(),
                            required_skills: skills,
                            enqueued_at_ms: self.now,
                            last_agent,
                        })
                    }
                    46..=57 if !offered.is_empty() => {
                        let (t, a) = *offered.choose(rng).unwrap();
                        Op::Accept(t, a)
                    }
                    58..=65 if !offered.is_empty() => {
                        let (t, a) = *offered.choose(rng).unwrap();
                        Op::Decline(t, a)
                    }
                    66..=67 if !tickets.is_empty() && !agents.is_empty() => {
                        // Often refused (wrong agent): errors must leave things consistent.
                        Op::Accept(*tickets.choose(rng).unwrap(), *agents.choose(rng).unwrap())
                    }
                    68..=77 if !tickets.is_empty() => {
                        let t = *tickets.choose(rng).unwrap();
                        if rng.random_bool(0.8) {
                            Op::Resolve(t)
                        } else {
                            Op::Release(t)
                        }
                    }
                    78..=82 if !tickets.is_empty() => {
                        let t = *tickets.choose(rng).unwrap();
                        if rng.random_bool(0.5) || agents.is_empty() {
                            Op::Transfer(t, TransferTarget::Team(team(TEAMS.choose(rng).unwrap())))
                        } else {
                            Op::Transfer(t, TransferTarget::Agent(*agents.choose(rng).unwrap()))
                        }
                    }
                    83..=92 => {
                        self.now += rng.random_range(0..20_000);
                        Op::Tick
                    }
                    93..=94 => {
                        self.now += rng.random_range(HOUR..6 * HOUR);
                        Op::Tick
                    }
                    95..=96 => Op::Reconfigure(rng.random_bool(0.5)),
                    _ => {
                        self.now += rng.random_range(0..3_000);
                        Op::Tick
                    }
                };
                // Small clock drift between operations, so timers fire inside other calls too.
                self.now += rng.random_range(0..500);
                op
            }
        }

        #[derive(Debug, Clone)]
        enum Op {
            Upsert(Box<AgentSpec>),
            Remove(AgentId),
            Presence(AgentId, Presence),
            Enqueue(TicketSpec),
            Accept(HandoffId, AgentId),
            Decline(HandoffId, AgentId),
            Resolve(HandoffId),
            Release(HandoffId),
            Transfer(HandoffId, TransferTarget),
            Reconfigure(bool),
            Tick,
        }

        fn apply(e: &mut Engine, op: &Op, now: i64) -> (Vec<Decision>, Result<(), EngineError>) {
            let mut out = Vec::new();
            let r = match op.clone() {
                Op::Upsert(spec) => e.upsert_agent(*spec, now, &mut out),
                Op::Remove(a) => e.remove_agent(a, now, &mut out),
                Op::Presence(a, p) => e.set_presence(a, p, now, &mut out),
                Op::Enqueue(spec) => e.enqueue(spec, now, &mut out),
                Op::Accept(t, a) => e.accept(t, a, now, &mut out),
                Op::Decline(t, a) => e.decline(t, a, now, &mut out),
                Op::Resolve(t) => e.resolve(t, now, &mut out),
                Op::Release(t) => e.release(t, now, &mut out),
                Op::Transfer(t, to) => e.transfer(t, to, now, &mut out),
                Op::Reconfigure(variant) => e.configure_queues(queues_for(variant), now, &mut out),
                Op::Tick => {
                    out = e.tick(now);
                    Ok(())
                }
            };
            (out, r)
        }

        fn new_engine(now: i64) -> Engine {
            let mut e = Engine::new();
            let mut out = Vec::new();
            e.configure_queues(queues(), now, &mut out).unwrap();
            e
        }

        #[test]
        fn random_operations_never_break_an_invariant() {
            // 6 seeds x 2,500 operations; each run ends with a few hundred tickets and ~80
            // agents, so the brute-force checks stay meaningful without making debug builds slow.
            for seed in 0..6 {
                let mut d = Driver::new(seed);
                let mut e = new_engine(d.now);
                let mut mirror = Mirror::default();
                let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
                for step in 0..2_500 {
                    let op = d.step(&e);
                    let (out, _) = apply(&mut e, &op, d.now);
                    for dec in &out {
                        *counts.entry(dec.name()).or_default() += 1;
                        mirror.apply(dec);
                    }
                    check(&e, &mirror, step);
                }
                // The run exercised what it claims to.
                for kind in [
                    "offered",
                    "accepted",
                    "declined",
                    "offer_expired",
                    "withdrawn",
                    "overflowed",
                    "transferred",
                    "exclusions_reset",
                    "resolved",
                    "queue_opened",
                    "queue_closed",
                ] {
                    assert!(
                        counts.contains_key(kind),
                        "seed {seed}: no {kind} in {counts:?}"
                    );
                }
            }
        }

        #[test]
        fn a_rebuilt_engine_makes_identical_decisions() {
            for seed in 100..103 {
                let mut d = Driver::new(seed);
                let mut a = new_engine(d.now);
                let mut variant = false;
                for _ in 0..1_500 {
                    let op = d.step(&a);
                    if let Op::Reconfigure(v) = op {
                        variant = v;
                    }
                    let _ = apply(&mut a, &op, d.now);
                }
                let snap = a.snapshot();
                assert!(!snap.tickets.is_empty());
                let mut b = Engine::restore(queues_for(variant), snap.clone()).unwrap();
                assert_eq!(b.snapshot(), snap, "the restored state is the saved one");
                for step in 0..1_500 {
                    let op = d.step(&a);
                    let (da, ra) = apply(&mut a, &op, d.now);
                    let (db, rb) = apply(&mut b, &op, d.now);
                    assert_eq!(da, db, "seed {seed} step {step}: {op:?}");
                    assert_eq!(ra, rb);
                }
                assert_eq!(a.snapshot(), b.snapshot());
            }
        }
    }
}

//! The inbound pipeline: a normalized message is stored (and only then acknowledged), then
//! handled in the background: the customer asking for a person starts a handoff; otherwise,
//! while the bot owns the conversation, the bot answers.
//!
//! Handling is at least once: a message is marked handled after its replies are stored, and
//! on start-up every message not yet handled is picked up again, so a crash between the
//! acknowledgement and the bot's answer loses nothing. Messages of one conversation are
//! handled in order by the same worker.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::bot::{Bot, BotTurn};
use crate::channels::Dispatcher;
use crate::handoff::rules::{BotSignals, Pass, Signals};
use crate::handoff::{Escalation, Handoffs, frustration, intent};
use crate::model::{
    AuthorKind, ConversationId, DeliveryStatus, Direction, HandoffReason, MessageId, MessageText,
    Priority, Skill, Team, Timestamp,
};
use crate::store::{
    EmailReceipt, InboundEmail, InboundMessage, IngestReceipt, OutboundMessage, SharedStore,
    StoreError,
};

/// How many of the customer's latest messages the frustration score reads.
const FRUSTRATION_WINDOW: u32 = 5;

/// Parallel workers handling inbound messages (one conversation always maps to one worker).
const WORKERS: usize = 16;

type Job = (MessageId, ConversationId);

/// The inbound pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    store: SharedStore,
    bot: Arc<dyn Bot>,
    handoffs: Handoffs,
    dispatcher: Dispatcher,
    queues: Vec<mpsc::UnboundedSender<Job>>,
}

impl Pipeline {
    /// Builds the pipeline and spawns its workers; they stop when `shutdown` turns true.
    pub fn start(
        store: SharedStore,
        bot: Arc<dyn Bot>,
        handoffs: Handoffs,
        dispatcher: Dispatcher,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let mut queues = Vec::with_capacity(WORKERS);
        let mut receivers = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            let (tx, rx) = mpsc::unbounded_channel();
            queues.push(tx);
            receivers.push(rx);
        }
        let pipeline = Self {
            inner: Arc::new(Inner {
                store,
                bot,
                handoffs,
                dispatcher,
                queues,
            }),
        };
        for mut rx in receivers {
            let p = pipeline.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        job = rx.recv() => match job {
                            Some((message, conversation)) => p.handle_logged(message, conversation).await,
                            None => return,
                        },
                        _ = shutdown.changed() => return,
                    }
                }
            });
        }
        pipeline
    }

    /// Stores an inbound message and schedules its handling. Returns once it is durable.
    pub async fn accept(&self, inbound: InboundMessage) -> Result<IngestReceipt, StoreError> {
        let channel = inbound.channel;
        let receipt = self.inner.store.ingest(inbound).await?;
        if !receipt.duplicate {
            self.inner.dispatcher.counters().ingested(channel);
            self.enqueue(receipt.message_id, receipt.conversation_id);
        }
        Ok(receipt)
    }

    /// Threads and stores an inbound email and schedules its handling, unless it is an
    /// auto-reply or bounce (stored, never answered) or a redelivery. Returns once durable.
    pub async fn accept_email(&self, email: InboundEmail) -> Result<EmailReceipt, StoreError> {
        let receipt = self.inner.store.ingest_email(email).await?;
        if !receipt.receipt.duplicate {
            self.inner
                .dispatcher
                .counters()
                .ingested(crate::model::ChannelKind::Email);
        }
        if receipt.needs_processing && !receipt.receipt.duplicate {
            self.enqueue(receipt.receipt.message_id, receipt.receipt.conversation_id);
        }
        Ok(receipt)
    }

    /// Re-queues every stored message not yet handled (after a restart).
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let pending = self.inner.store.unprocessed_inbound(100_000).await?;
        for &(message, conversation) in &pending {
            self.enqueue(message, conversation);
        }
        Ok(pending.len())
    }

    fn enqueue(&self, message: MessageId, conversation: ConversationId) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        conversation.hash(&mut h);
        let worker = (h.finish() as usize) % self.inner.queues.len();
        // A send fails only when the workers stopped (shutdown); recovery picks it up next start.
        let _ = self.inner.queues[worker].send((message, conversation));
    }

    async fn handle_logged(&self, message: MessageId, conversation: ConversationId) {
        if let Err(e) = self.handle(message, conversation).await {
            tracing::error!(%message, %conversation, error = %e, "handling an inbound message failed; it is retried on restart");
        }
    }

    /// One step: handles one stored inbound message (bot answer or handoff) and marks it handled.
    ///
    /// The escalation rules run twice: those about the customer before the bot is asked (a
    /// customer who asks for a person gets one without reading a bot answer first), those
    /// about the bot's answer after it.
    pub async fn handle(
        &self,
        message_id: MessageId,
        conversation_id: ConversationId,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let rules = self.inner.handoffs.rules();
        // The bot's context and the frustration window: the latest messages, this one
        // included (usually the last).
        let window = if rules.needs_frustration() {
            FRUSTRATION_WINDOW
        } else {
            0
        };
        let context = self
            .inner
            .bot
            .context_messages()
            .max(window)
            .saturating_add(1);
        let (conversation, history) = store
            .conversation_with_recent(conversation_id, context)
            .await?;
        if !conversation.status.bot_answers() {
            // A person owns the conversation (or it waits for one): the bot stays silent.
            return store.mark_processed(message_id).await;
        }
        let message = match history.iter().find(|m| m.id == message_id) {
            Some(m) => m.clone(),
            None => store.message(message_id).await?,
        };
        let words = intent::normalize(&message.text);
        let frustration = if rules.needs_frustration() {
            let recent: Vec<&str> = history
                .iter()
                .filter(|m| m.direction == Direction::In)
                .map(|m| m.text.as_str())
                .rev()
                .take(FRUSTRATION_WINDOW as usize)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Some(frustration::score(&recent))
        } else {
            None
        };
        let tags = if rules.needs_customer_tags() {
            store.customer(conversation.customer_id).await?.tags
        } else {
            Vec::new()
        };
        let (bot_turns, bot_minutes) = if rules.needs_bot_session() {
            let session = store.bot_session(conversation.id).await?;
            let minutes = Timestamp::now().millis_since(session.since) / 60_000;
            (
                Some(session.turns),
                Some(minutes.clamp(0, u32::MAX as i64) as u32),
            )
        } else {
            (None, None)
        };
        let language = intent::human_request(&message.text);
        let mut signals = Signals {
            words: &words,
            asks_for_human: language.is_some(),
            frustration: frustration.as_ref().map_or(0.0, |f| f.score),
            customer_tags: &tags,
            channel: conversation.channel,
            bot_turns,
            bot_minutes,
            bot: None,
        };
        if let Some(fired) = rules.evaluate(Pass::BeforeBot, &signals) {
            let mut e = Escalation::from_rule(fired);
            e.reason_detail = Some(match (&e.reason, &frustration) {
                // Why the customer reads as frustrated, for the agent and the reports.
                (HandoffReason::Frustration, Some(f)) => {
                    format!("frustration {:.2}: {}", f.score, f.reason())
                }
                _ => message.text.chars().take(200).collect(),
            });
            e.language = language.map(|l| l.as_str().to_owned());
            self.escalate(conversation_id, e).await?;
            return store.mark_processed(message_id).await;
        }
        let turn = BotTurn {
            conversation: &conversation,
            message: &message,
            history: &history,
            handback_note: conversation.handback_note.as_deref(),
        };
        match self.inner.bot.respond(turn).await {
            Ok(reply) => {
                let replies = reply
                    .messages
                    .iter()
                    .filter_map(|text| match MessageText::parse(text) {
                        Ok(text) => Some(OutboundMessage::text(AuthorKind::Bot, None, text)),
                        Err(_) => {
                            tracing::warn!(conversation_id = %conversation.id, "bot sent an invalid message; skipped");
                            None
                        }
                    })
                    .collect();
                let stored = store
                    .complete_inbound(&conversation, message.id, replies)
                    .await?;
                if stored
                    .iter()
                    .any(|m| m.delivery_status == DeliveryStatus::Pending)
                {
                    self.inner.dispatcher.kick();
                }
                let streak = if reply.fallback {
                    conversation.bot_fallbacks.saturating_add(1)
                } else {
                    0
                };
                if streak != conversation.bot_fallbacks {
                    store.set_bot_fallbacks(conversation.id, streak).await?;
                }
                signals.bot = Some(BotSignals {
                    handoff: reply.handoff.is_some(),
                    confidence: reply.confidence,
                    fallbacks_in_row: streak,
                    failed: false,
                });
                if let Some(fired) = rules.evaluate(Pass::AfterBot, &signals) {
                    let mut e = Escalation::from_rule(fired);
                    if let Some(h) = reply.handoff {
                        e.reason_detail = h.reason;
                        e.summary = h.summary;
                        // The rule's routing wins; the bot's fills what the rule leaves open.
                        if e.priority == Priority::Normal
                            && let Some(p) = h.priority
                        {
                            e.priority = p;
                        }
                        if e.team.is_none() {
                            e.team = h.team.as_deref().and_then(|t| Team::parse(t).ok());
                        }
                        for skill in h.skills.iter().filter_map(|s| Skill::parse(s).ok()) {
                            if !e.required_skills.contains(&skill) {
                                e.required_skills.push(skill);
                            }
                        }
                    }
                    e.intent = reply.intent;
                    e.fields = reply.fields;
                    e.language = language.map(|l| l.as_str().to_owned());
                    self.escalate(conversation.id, e).await?;
                }
            }
            Err(err) => {
                // A bot that cannot answer must not leave the customer talking to nobody: if
                // no rule says where to, the ticket goes to the general queue anyway.
                tracing::warn!(conversation_id = %conversation.id, error = %err, "bot failed; handing off");
                signals.bot = Some(BotSignals {
                    failed: true,
                    ..BotSignals::default()
                });
                let mut e = match rules.evaluate(Pass::AfterBot, &signals) {
                    Some(fired) => Escalation::from_rule(fired),
                    None => Escalation::because(HandoffReason::BotFailure),
                };
                e.reason_detail = Some(err.to_string());
                self.escalate(conversation.id, e).await?;
                store.mark_processed(message.id).await?;
            }
        }
        Ok(())
    }

    async fn escalate(
        &self,
        conversation: ConversationId,
        e: Escalation,
    ) -> Result<(), StoreError> {
        match self.inner.handoffs.escalate(conversation, e).await {
            // Someone else escalated it meanwhile: nothing more to do.
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(other) => Err(other),
        }
    }
}

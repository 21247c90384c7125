//! The web chat channel: the widget posts messages over HTTP and receives replies over a
//! server-sent event stream per conversation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{Connector, SendError};
use crate::model::{ChannelKind, ConversationId, Message};
use crate::store::Delivery;

/// Live subscribers per conversation. A widget that is not connected misses nothing: on
/// connect it replays the stored messages after the last one it saw.
#[derive(Clone, Default)]
pub struct WebChatHub {
    topics: Arc<Mutex<HashMap<ConversationId, broadcast::Sender<Message>>>>,
}

impl WebChatHub {
    /// Subscribes to a conversation's new messages.
    pub fn subscribe(&self, id: ConversationId) -> broadcast::Receiver<Message> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        // Forget topics nobody listens to any more, so the map does not grow forever.
        topics.retain(|_, tx| tx.receiver_count() > 0);
        topics
            .entry(id)
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Sends a message to everyone watching its conversation.
    pub fn publish(&self, message: &Message) {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = topics.get(&message.conversation_id) {
            let _ = tx.send(message.clone());
        }
    }
}

/// Delivers outbound web chat messages to connected widgets.
pub struct WebChatConnector {
    hub: WebChatHub,
}

impl WebChatConnector {
    /// A connector publishing to `hub`.
    pub fn new(hub: WebChatHub) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Connector for WebChatConnector {
    fn kind(&self) -> ChannelKind {
        ChannelKind::WebChat
    }

    async fn send(&self, delivery: &Delivery) -> Result<Option<String>, SendError> {
        self.hub.publish(&delivery.message);
        Ok(None)
    }
}

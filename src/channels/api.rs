//! The generic API channel: messages come in over `POST /api/v1/messages`; replies are
//! read back by the integrating system from `GET /api/v1/conversations/{id}`.

use async_trait::async_trait;

use super::{Connector, SendError};
use crate::model::ChannelKind;
use crate::store::Delivery;

/// Replies on the API channel are delivered by being stored: the client pulls them.
pub struct ApiConnector;

#[async_trait]
impl Connector for ApiConnector {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Api
    }

    async fn send(&self, _delivery: &Delivery) -> Result<Option<String>, SendError> {
        Ok(None)
    }
}

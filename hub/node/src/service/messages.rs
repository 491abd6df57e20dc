//! `/v1/messages` over the [`MessageRelay`].

use super::accounts::{check_owner, AccountOwners};
use super::status::message_status;
use async_trait::async_trait;
use isthmus_hub_api::model::{CreateMessage, OperationStatus, Page};
use isthmus_hub_api::{BackendError, Messages, OpId, Principal};
use isthmus_interop::messages::{MessageError, MessageRecord, PortError};
use isthmus_interop::{Clock, MessageRelay, MessageRequest, NetworkDirectory};
use std::sync::Arc;

/// The hub's messages.
pub struct RelayMessages {
    pub relay: Arc<MessageRelay>,
    /// Network names in requests and statuses.
    pub directory: Arc<dyn NetworkDirectory>,
    pub clock: Clock,
    /// Which tenant may send with each hub-wallet account.
    pub owners: Arc<dyn AccountOwners>,
}

/// The API error of a message error.
pub fn from_message(e: MessageError) -> BackendError {
    match e {
        MessageError::Port(PortError::Retryable(r)) => BackendError::Unavailable(r),
        MessageError::Store(e) => BackendError::Unavailable(format!("message store: {e}")),
        MessageError::Port(PortError::Refused(r)) => BackendError::Rejected {
            message: format!("message refused: {r}"),
            details: vec![r],
        },
        MessageError::NotFound(id) => BackendError::NotFound(format!("message `{id}`")),
        e @ MessageError::Corrupt(_) => BackendError::Internal(e.to_string()),
    }
}

#[async_trait]
impl Messages for RelayMessages {
    async fn create_message(
        &self,
        id: &OpId,
        by: &Principal,
        req: CreateMessage,
    ) -> Result<OperationStatus, BackendError> {
        // The send is signed with the key the hub wallet keeps for the sender.
        check_owner(&*self.owners, by, "sender", &req.sender)?;
        let mut problems = Vec::new();
        let mut net = |field: &str, name: &str| {
            let n = self.directory.resolve(name);
            if n.is_none() {
                problems.push(format!("{field}: unknown network `{name}`"));
            }
            n
        };
        let (source, destination) = (
            net("source", &req.source),
            net("destination", &req.destination),
        );
        let (Some(source), Some(destination)) = (source, destination) else {
            return Err(BackendError::Rejected {
                message: format!("message refused: {}", problems.join("; ")),
                details: problems,
            });
        };
        let payload = hex::decode(&req.payload_hex).map_err(|e| BackendError::Rejected {
            message: format!("payload_hex: {e}"),
            details: vec![],
        })?;
        let now = (self.clock)();
        let req = MessageRequest {
            source,
            destination,
            sender: req.sender,
            recipient: req.recipient,
            payload,
            timeout_secs: req.timeout_secs,
        };
        let rec = self
            .relay
            .send_owned(&by.tenant, &id.0, req, now)
            .await
            .map_err(from_message)?;
        Ok(message_status(&rec, &*self.directory))
    }

    async fn get_message(&self, id: &str) -> Result<Option<OperationStatus>, BackendError> {
        Ok(self
            .relay
            .get(id)
            .map_err(from_message)?
            .map(|r| message_status(&r, &*self.directory)))
    }

    async fn list_messages(
        &self,
        tenants: &[String],
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<OperationStatus>, BackendError> {
        let mut all: Vec<MessageRecord> = self
            .relay
            .all()
            .map_err(from_message)?
            .into_iter()
            .filter(|r| tenants.contains(&r.tenant))
            .filter(|r| after.is_none_or(|a| r.api_id.as_str() > a))
            .collect();
        let more = all.len() > limit;
        all.truncate(limit);
        let items: Vec<OperationStatus> = all
            .iter()
            .map(|r| message_status(r, &*self.directory))
            .collect();
        let next = if more {
            items.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

//! The interop driver's changes, published as API events.

use super::status::status_of;
use isthmus_hub_api::EventBus;
use isthmus_interop::{Diagnosis, NetworkDirectory, Notifier, StoredInstance};
use std::sync::Arc;

/// Publishes every durable change of an instance as an API event.
pub struct ApiNotifier {
    pub bus: EventBus,
    pub directory: Arc<dyn NetworkDirectory>,
}

impl Notifier for ApiNotifier {
    fn changed(&self, inst: &StoredInstance) {
        self.changed_with(inst, None);
    }

    /// Publishes `{kind}.updated` with the status as it now reads, also when only the
    /// diagnosis appeared or cleared.
    fn changed_with(&self, inst: &StoredInstance, diagnosis: Option<&Diagnosis>) {
        let status = status_of(inst, diagnosis, &*self.directory);
        let kind = format!("{}.updated", status.kind.as_str());
        let networks = status.legs.iter().map(|l| l.network.clone()).collect();
        let data = serde_json::to_value(&status).unwrap_or_default();
        if let Err(e) = self
            .bus
            .publish_for(Some(&inst.tenant), &kind, &status.id, networks, data)
        {
            tracing::error!(%e, id = %status.id, "could not record the api event");
        }
    }
}

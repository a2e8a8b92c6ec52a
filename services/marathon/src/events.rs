//! The event bus behind `GET /v2/events`: every event is a JSON object with
//! `eventType` and `timestamp`, fanned out to SSE subscribers (and tests).

use serde_json::{Value as Json, json};
use tokio::sync::broadcast;

/// How many events a slow subscriber may lag before it misses some.
const CAPACITY: usize = 4096;

/// A cloneable publisher/subscriber handle.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Json>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    /// A new bus.
    pub fn new() -> EventBus {
        let (tx, _) = broadcast::channel(CAPACITY);
        EventBus { tx }
    }

    /// Publishes `fields` as an event of `event_type` (adds `eventType`, `timestamp`).
    pub fn publish(&self, event_type: &str, mut fields: Json) {
        if let Some(obj) = fields.as_object_mut() {
            obj.insert("eventType".into(), json!(event_type));
            obj.insert("timestamp".into(), json!(crate::time::now()));
        }
        tracing::debug!(event_type, "event");
        // No subscribers is fine.
        let _ = self.tx.send(fields);
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Json> {
        self.tx.subscribe()
    }
}

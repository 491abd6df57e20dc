//! Events as a stream, resumable from a checkpoint, built on [`Adapter::events_since`].

use crate::adapter::Adapter;
use crate::error::AdapterError;
use crate::types::{ChainEvent, Checkpoint};
use futures::stream::{self, Stream};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// How a subscription polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeConfig {
    /// Events fetched per request (the backlog is cleared in pages of this size).
    pub page: u32,
    /// Wait between polls once caught up.
    pub idle_poll: Duration,
}

impl Default for SubscribeConfig {
    fn default() -> Self {
        SubscribeConfig {
            page: 500,
            idle_poll: Duration::from_millis(200),
        }
    }
}

struct State {
    adapter: Arc<dyn Adapter>,
    at: Checkpoint,
    buffer: VecDeque<ChainEvent>,
    cfg: SubscribeConfig,
}

/// Every event after `from`, in order, forever. A failed poll yields the error (the caller
/// decides whether to go on; the stream resumes from the last event it yielded). The caller
/// persists `event.checkpoint` after handling an event and passes it back as `from` after a
/// restart, so nothing is missed and nothing is seen twice.
pub fn subscribe(
    adapter: Arc<dyn Adapter>,
    from: Checkpoint,
    cfg: SubscribeConfig,
) -> impl Stream<Item = Result<ChainEvent, AdapterError>> + Send {
    let state = State {
        adapter,
        at: from,
        buffer: VecDeque::new(),
        cfg,
    };
    stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.buffer.pop_front() {
                s.at = ev.checkpoint;
                return Some((Ok(ev), s));
            }
            match s.adapter.events_since(s.at, s.cfg.page.max(1)).await {
                Ok(page) if page.events.is_empty() => tokio::time::sleep(s.cfg.idle_poll).await,
                Ok(page) => s.buffer.extend(page.events),
                Err(e) => {
                    if e.is_retryable() {
                        tokio::time::sleep(s.cfg.idle_poll).await;
                    }
                    return Some((Err(e), s));
                }
            }
        }
    })
}

//! The driver: applies events to instances (journal first), then executes the actions
//! they call for, with retries, backoff and jitter, and a periodic sweep that re-derives
//! outstanding actions from the journal, which is also how it recovers after a crash.

use crate::contract::{Applied, Contract, ContractEvent, KindMismatch};
use crate::journal::{Journal, JournalError, StoredInstance};
use async_trait::async_trait;
use isthmus_lock_contracts::{Action, InstanceId, Rejection};
use rand::Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Why an action could not be executed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// Transport trouble, a node down, a fee spike: retried with backoff.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The platform refused the action for good (e.g. the escrow does not exist). The
    /// instance keeps its state; the sweep retries at its slower pace and the status says
    /// why.
    #[error("refused: {0}")]
    Refused(String),
}

/// Executes actions on chains. Implementations must be idempotent: an action names a
/// derived lock id, and executing it twice must have the effect of executing it once.
#[async_trait]
pub trait ActionExecutor: Send + Sync + 'static {
    /// Execute `action` for `contract`; return events that follow at once (e.g. the hub
    /// chain committed a decision). Later consequences (a release becoming final) arrive
    /// through [`Driver::apply`] from the watchers.
    async fn execute(
        &self,
        contract: &Contract,
        action: &Action,
    ) -> Result<Vec<ContractEvent>, ExecError>;
}

/// Told after every durable change (e.g. to publish an API event).
pub trait Notifier: Send + Sync + 'static {
    fn changed(&self, inst: &StoredInstance);
}

impl Notifier for () {
    fn changed(&self, _: &StoredInstance) {}
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("contract instance {0} does not exist")]
    UnknownInstance(InstanceId),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    WrongKind(#[from] KindMismatch),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the driver has shut down")]
    Stopped,
}

impl DriverError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DriverError::Journal(e) => e.is_retryable(),
            DriverError::Rejected(r) => r.is_retryable(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// First retry delay; doubles per attempt up to `retry_max`, with ±50% jitter.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How often every unfinished instance's outstanding actions are re-derived.
    pub sweep_interval: Duration,
    /// Actions executing at once.
    pub concurrency: usize,
    /// Bound of the work queue.
    pub queue: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(5),
            concurrency: 16,
            queue: 4096,
        }
    }
}

type Work = (InstanceId, Action);

/// The interop driver. Cheap to share behind an `Arc`.
pub struct Driver {
    journal: Arc<dyn Journal>,
    notifier: Arc<dyn Notifier>,
    locks: Mutex<HashMap<InstanceId, Arc<tokio::sync::Mutex<()>>>>,
    work: mpsc::Sender<Work>,
    work_rx: Mutex<Option<mpsc::Receiver<Work>>>,
    cfg: DriverConfig,
}

impl Driver {
    pub fn new(
        journal: Arc<dyn Journal>,
        notifier: Arc<dyn Notifier>,
        cfg: DriverConfig,
    ) -> Arc<Self> {
        let (work, rx) = mpsc::channel(cfg.queue.max(1));
        Arc::new(Driver {
            journal,
            notifier,
            locks: Mutex::new(HashMap::new()),
            work,
            work_rx: Mutex::new(Some(rx)),
            cfg,
        })
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    fn lock_for(&self, id: InstanceId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().clone()
    }

    /// Record a new instance, then schedule its first actions. Creating an id that exists
    /// returns the stored instance unchanged (idempotent create).
    pub async fn create(
        &self,
        contract: Contract,
        initial: Vec<Action>,
        api_id: String,
        now: u64,
    ) -> Result<StoredInstance, DriverError> {
        let id = contract.id();
        let lock = self.lock_for(id);
        let _g = lock.lock().await;
        if let Some(existing) = self.journal.get(&id)? {
            return Ok(existing);
        }
        let inst = StoredInstance {
            contract,
            seq: 0,
            api_id,
            created_at: now,
            updated_at: now,
        };
        self.journal.create(&inst)?;
        self.notifier.changed(&inst);
        self.enqueue(id, initial).await;
        Ok(inst)
    }

    /// Apply one event: journal the new state (flushed), notify, then schedule the actions
    /// that became due. A replayed event changes nothing and schedules nothing; a refused
    /// event changes nothing and returns the rejection.
    pub async fn apply(
        &self,
        id: InstanceId,
        event: ContractEvent,
        now: u64,
    ) -> Result<StoredInstance, DriverError> {
        let lock = self.lock_for(id);
        let _g = lock.lock().await;
        let mut inst = self
            .journal
            .get(&id)?
            .ok_or(DriverError::UnknownInstance(id))?;
        let actions = match inst.contract.step(&event)?? {
            Applied::Unchanged => return Ok(inst),
            Applied::Changed(a) => a,
        };
        inst.seq += 1;
        inst.updated_at = now.max(inst.updated_at);
        self.journal.append(&inst, &event)?;
        self.notifier.changed(&inst);
        self.enqueue(id, actions).await;
        Ok(inst)
    }

    async fn enqueue(&self, id: InstanceId, actions: Vec<Action>) {
        for a in actions {
            // A full queue only delays: the sweep re-derives every outstanding action.
            if self.work.try_send((id, a)).is_err() {
                tracing::warn!(instance = %id, "interop work queue full; the sweep will pick it up");
            }
        }
    }

    /// Feed the hub's clock to every unfinished instance.
    pub async fn tick_all(&self, now: u64) -> Result<usize, DriverError> {
        let mut changed = 0;
        for inst in self.journal.all()? {
            if inst.contract.status().terminal {
                continue;
            }
            let kind = inst.contract.kind();
            let before = inst.seq;
            let after = self
                .apply(inst.contract.id(), ContractEvent::tick(kind, now), now)
                .await?;
            if after.seq != before {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Execute actions until `shutdown` resolves. Call once; owns the work queue.
    pub async fn run(
        self: Arc<Self>,
        exec: Arc<dyn ActionExecutor>,
        clock: impl Fn() -> u64 + Send + Sync + 'static,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DriverError> {
        let mut rx = self
            .work_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(DriverError::Stopped)?;
        tokio::pin!(shutdown);
        let mut running: JoinSet<(Work, Result<Vec<ContractEvent>, ExecError>)> = JoinSet::new();
        let mut in_flight: HashSet<(InstanceId, String)> = HashSet::new();
        let mut attempts: HashMap<(InstanceId, String), u32> = HashMap::new();
        let mut retry_at: BTreeMap<Instant, Vec<Work>> = BTreeMap::new();
        let mut backlog: Vec<Work> = Vec::new();
        let mut sweep = tokio::time::interval(self.cfg.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let key = |w: &Work| (w.0, format!("{:?}", w.1));
        loop {
            // Start queued work while there is capacity.
            while running.len() < self.cfg.concurrency.max(1) {
                let Some(w) = backlog.pop() else { break };
                let k = key(&w);
                if !in_flight.insert(k) {
                    continue;
                }
                let contract = match self.journal.get(&w.0) {
                    Ok(Some(i)) => i.contract,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::error!(%e, "journal read failed; retrying later");
                        in_flight.remove(&key(&w));
                        continue;
                    }
                };
                // Skip actions the instance no longer calls for (superseded by events, or
                // stale by time): executing them late could break an HTLC's timing.
                if !contract.is_due_at(&w.1, clock()) {
                    in_flight.remove(&key(&w));
                    continue;
                }
                let exec = exec.clone();
                running.spawn(async move {
                    let r = exec.execute(&contract, &w.1).await;
                    (w, r)
                });
            }
            let next_retry = retry_at.keys().next().copied();
            tokio::select! {
                _ = &mut shutdown => {
                    running.shutdown().await;
                    return Ok(());
                }
                Some(w) = rx.recv() => backlog.push(w),
                Some(done) = running.join_next(), if !running.is_empty() => {
                    let Ok((w, res)) = done else { continue };
                    let k = key(&w);
                    in_flight.remove(&k);
                    match res {
                        Ok(events) => {
                            attempts.remove(&k);
                            for ev in events {
                                if let Err(e) = self.apply(w.0, ev, clock()).await {
                                    tracing::warn!(instance = %w.0, %e, "follow-up event refused");
                                }
                            }
                        }
                        Err(e) => {
                            let n = attempts.entry(k).or_insert(0);
                            *n += 1;
                            let delay = backoff(self.cfg.retry_base, self.cfg.retry_max, *n);
                            tracing::warn!(instance = %w.0, action = ?w.1, attempt = *n, ?delay, %e, "action failed; will retry");
                            retry_at.entry(Instant::now() + delay).or_default().push(w);
                        }
                    }
                }
                _ = async {
                    match next_retry {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = Instant::now();
                    let due: Vec<Instant> = retry_at.range(..=now).map(|(t, _)| *t).collect();
                    for t in due {
                        if let Some(ws) = retry_at.remove(&t) {
                            backlog.extend(ws);
                        }
                    }
                }
                _ = sweep.tick() => {
                    match self.journal.all() {
                        Ok(all) => {
                            let waiting: HashSet<(InstanceId, String)> =
                                retry_at.values().flatten().map(key).collect();
                            for inst in all.into_iter().filter(|i| !i.contract.status().terminal) {
                                for a in inst.contract.pending_actions() {
                                    let w = (inst.contract.id(), a);
                                    let k = key(&w);
                                    if !in_flight.contains(&k) && !waiting.contains(&k) {
                                        backlog.push(w);
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::error!(%e, "sweep could not read the journal"),
                    }
                }
            }
        }
    }
}

/// Exponential backoff with ±50% jitter, capped.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
    let capped = exp.min(max);
    let jitter = rand::thread_rng().gen_range(0.5..1.5);
    capped.mul_f64(jitter).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 1..30 {
            let d = backoff(base, max, attempt);
            assert!(d <= max);
            assert!(d >= base / 2);
        }
        assert!(backoff(base, max, 1) <= Duration::from_millis(150));
    }
}

//! The driver: applies events to instances (journal first), then executes the actions
//! they call for, with retries, backoff and jitter, and a periodic sweep that re-derives
//! outstanding actions from the journal, which is also how it recovers after a crash.

use crate::contract::{Applied, Contract, ContractEvent, KindMismatch};
use crate::diagnosis::{Diagnoses, Diagnosis, Failure};
use crate::journal::{Journal, JournalError, StoredInstance, DEFAULT_TENANT};
use async_trait::async_trait;
use isthmus_core::Backoff;
use isthmus_lock_contracts::{Action, InstanceId, Rejection};
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

    /// [`ActionExecutor::execute`], with the failure described for the instance's status
    /// (which network, which adapter error code). The driver calls this one; the default
    /// derives the description from the [`ExecError`].
    async fn execute_diagnosed(
        &self,
        contract: &Contract,
        action: &Action,
    ) -> Result<Vec<ContractEvent>, Failure> {
        self.execute(contract, action).await.map_err(Failure::from)
    }
}

/// Told after every durable change (e.g. to publish an API event).
pub trait Notifier: Send + Sync + 'static {
    fn changed(&self, inst: &StoredInstance);

    /// Told after every durable change and whenever the instance's diagnosis (an action
    /// that keeps failing) appears, changes or clears, with the diagnosis that now stands.
    /// The driver calls this one; the default ignores the diagnosis.
    fn changed_with(&self, inst: &StoredInstance, diagnosis: Option<&Diagnosis>) {
        let _ = diagnosis;
        self.changed(inst);
    }
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
    /// Retryable failures in a row before the status shows `action_retrying` (a refusal
    /// shows `adapter_refused` at once).
    pub retrying_after: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(5),
            concurrency: 16,
            queue: 4096,
            retrying_after: 3,
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
    diagnoses: Diagnoses,
    cfg: DriverConfig,
}

/// The driver's key of an action (the queue's dedup key and the diagnosis key).
fn key(w: &Work) -> (InstanceId, String) {
    (w.0, format!("{:?}", w.1))
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
            diagnoses: Diagnoses::new(cfg.retrying_after),
            cfg,
        })
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Why `id` is stuck, if one of its actions keeps failing: shown in its status over the
    /// machine's own reason, never applied to the machine.
    pub fn diagnosis(&self, id: &InstanceId) -> Option<Diagnosis> {
        self.diagnoses.current(id)
    }

    /// Tell the notifier about `id` as it stands, with its diagnosis.
    fn publish(&self, inst: &StoredInstance) {
        let diagnosis = if inst.contract.status().terminal {
            None
        } else {
            self.diagnoses.current(&inst.contract.id())
        };
        self.notifier.changed_with(inst, diagnosis.as_ref());
    }

    /// The shown diagnosis of `id` changed: publish the instance with it (under the
    /// instance's lock, so it cannot overtake a transition's event).
    async fn diagnosis_changed(&self, id: InstanceId) {
        let lock = self.lock_for(id);
        let _g = lock.lock().await;
        match self.journal.get(&id) {
            Ok(Some(inst)) => self.publish(&inst),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(instance = %id, %e, "journal read failed; diagnosis not published")
            }
        }
    }

    fn lock_for(&self, id: InstanceId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().clone()
    }

    /// Record a new instance of the default tenant ([`create_owned`](Self::create_owned)).
    pub async fn create(
        &self,
        contract: Contract,
        initial: Vec<Action>,
        api_id: String,
        now: u64,
    ) -> Result<StoredInstance, DriverError> {
        self.create_owned(DEFAULT_TENANT, contract, initial, api_id, now)
            .await
    }

    /// Record a new instance owned by `tenant`, then schedule its first actions. Creating
    /// an id that exists returns the stored instance unchanged (idempotent create).
    pub async fn create_owned(
        &self,
        tenant: &str,
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
            tenant: tenant.to_owned(),
            created_at: now,
            updated_at: now,
        };
        self.journal.create(&inst)?;
        self.publish(&inst);
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
        // Failures of actions the instance no longer calls for say nothing about it now.
        let due: HashSet<String> = inst
            .contract
            .pending_actions()
            .into_iter()
            .map(|a| key(&(id, a)).1)
            .collect();
        self.diagnoses.retain(id, |k| due.contains(k));
        self.publish(&inst);
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
        let mut running: JoinSet<(Work, Result<Vec<ContractEvent>, Failure>)> = JoinSet::new();
        let mut in_flight: HashSet<(InstanceId, String)> = HashSet::new();
        let mut retry_at: BTreeMap<Instant, Vec<Work>> = BTreeMap::new();
        let mut backlog: Vec<Work> = Vec::new();
        let mut sweep = tokio::time::interval(self.cfg.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                    let (id, k) = key(&w);
                    in_flight.remove(&(id, k.clone()));
                    if self.diagnoses.cleared(id, &k) {
                        self.diagnosis_changed(id).await;
                    }
                    continue;
                }
                let exec = exec.clone();
                running.spawn(async move {
                    let r = exec.execute_diagnosed(&contract, &w.1).await;
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
                            if self.diagnoses.cleared(w.0, &k.1) {
                                self.diagnosis_changed(w.0).await;
                            }
                            for ev in events {
                                if let Err(e) = self.apply(w.0, ev, clock()).await {
                                    tracing::warn!(instance = %w.0, %e, "follow-up event refused");
                                }
                            }
                        }
                        Err(f) => {
                            let network = f.network;
                            let (code, retryable) = (f.code.clone(), f.retryable);
                            let message = f.message.clone();
                            // A failure of an action a transition made moot while it ran
                            // says nothing about the instance now (its retry is dropped).
                            let due = self.journal.get(&w.0).ok().flatten().is_some_and(|i| {
                                i.contract.pending_actions().iter().any(|a| key(&(w.0, a.clone())).1 == k.1)
                            });
                            let (n, shown) = if due {
                                self.diagnoses.failed(w.0, &k.1, &w.1, f, clock())
                            } else {
                                (1, false)
                            };
                            let delay = Backoff::new(self.cfg.retry_base, self.cfg.retry_max)
                                .delay(n.saturating_sub(1));
                            tracing::warn!(
                                instance = %w.0, action = crate::diagnosis::action_name(&w.1),
                                leg = ?w.1.leg(), ?network, code, retryable, attempt = n, ?delay,
                                error = %message, "action failed; will retry"
                            );
                            if shown {
                                self.diagnosis_changed(w.0).await;
                            }
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

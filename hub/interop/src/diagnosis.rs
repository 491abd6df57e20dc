//! What the driver knows about actions that keep failing, so that a transfer or swap
//! whose escrow reverts (or whose node stays down) says so in its status instead of
//! showing the machine's own reason (`releasing`, ...) forever.
//!
//! A diagnosis is never a transition: it is not journalled and never reaches the contract
//! machine. It lives in memory and is re-derived after a restart: the driver's first sweep
//! re-executes every outstanding action, so a refusal shows again after one attempt and
//! `action_retrying` after the same number of failures as before. Every message is
//! stripped of URL credentials before it is stored, logged or shown.

use crate::driver::ExecError;
use isthmus_adapter_api::AdapterError;
use isthmus_core::NetworkId;
use isthmus_lock_contracts::{Action, InstanceId, LegId, ReasonCode};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// One failed execution of an action, as the executor describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Whether a retry can help (transport trouble) or not (the chain refused it).
    pub retryable: bool,
    /// The network that failed; `None` when it is the hub itself (e.g. its chain's record).
    pub network: Option<NetworkId>,
    /// The adapter's stable error code ([`AdapterError::code`]), or `retryable` /
    /// `refused` for failures that did not come from an adapter.
    pub code: String,
    /// The message, with credentials stripped from every URL in it.
    pub message: String,
}

impl Failure {
    /// A failure reported by `network`'s adapter.
    pub fn adapter(network: NetworkId, e: &AdapterError) -> Failure {
        Failure {
            retryable: e.is_retryable(),
            network: Some(network),
            code: e.code().to_owned(),
            message: redact_url_credentials(&e.to_string()),
        }
    }
}

impl From<ExecError> for Failure {
    fn from(e: ExecError) -> Failure {
        let (retryable, code, message) = match e {
            ExecError::Retryable(m) => (true, "retryable", m),
            ExecError::Refused(m) => (false, "refused", m),
        };
        Failure {
            retryable,
            network: None,
            code: code.to_owned(),
            message: redact_url_credentials(&message),
        }
    }
}

impl From<Failure> for ExecError {
    fn from(f: Failure) -> ExecError {
        if f.retryable {
            ExecError::Retryable(f.message)
        } else {
            ExecError::Refused(f.message)
        }
    }
}

/// An action's failures in a row, as the driver saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionFailure {
    /// `submit_lock`, `record_decision`, `release`, `refund` or `claim`.
    pub action: &'static str,
    pub leg: Option<LegId>,
    /// The last failure.
    pub failure: Failure,
    /// Failures in a row since the action last succeeded (since this process started).
    pub attempts: u32,
    /// Hub time of the first and the last failure in this run.
    pub first_failed_at: u64,
    pub last_failed_at: u64,
}

/// What an instance's status shows about its failing actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// [`ReasonCode::AdapterRefused`] or [`ReasonCode::ActionRetrying`].
    pub reason: ReasonCode,
    pub failure: ActionFailure,
}

impl Diagnosis {
    /// What identifies the diagnosis for events: a change of any of these is published,
    /// another failed attempt of the same kind is not.
    fn identity(&self) -> (ReasonCode, &'static str, Option<LegId>, &str, &str) {
        let f = &self.failure;
        (
            self.reason,
            f.action,
            f.leg,
            &f.failure.code,
            &f.failure.message,
        )
    }
}

/// The wire name of an action's kind (never its fields: a claim carries the preimage).
pub fn action_name(action: &Action) -> &'static str {
    match action {
        Action::SubmitLock { .. } => "submit_lock",
        Action::RecordDecision { .. } => "record_decision",
        Action::Release { .. } => "release",
        Action::Refund { .. } => "refund",
        Action::Claim { .. } => "claim",
    }
}

/// The failing actions of every instance, keyed by the driver's action key.
pub(crate) struct Diagnoses {
    by_instance: Mutex<HashMap<InstanceId, BTreeMap<String, ActionFailure>>>,
    /// Retryable failures in a row before the status shows `action_retrying`.
    retrying_after: u32,
}

/// Whether what the status shows changed.
pub(crate) type Shown = bool;

impl Diagnoses {
    pub(crate) fn new(retrying_after: u32) -> Diagnoses {
        Diagnoses {
            by_instance: Mutex::new(HashMap::new()),
            retrying_after: retrying_after.max(1),
        }
    }

    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<InstanceId, BTreeMap<String, ActionFailure>>> {
        self.by_instance.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pick(&self, actions: &BTreeMap<String, ActionFailure>) -> Option<Diagnosis> {
        // A refusal says more than a retry in progress; among equals, the latest failure.
        actions
            .values()
            .filter_map(|f| {
                let reason = if !f.failure.retryable {
                    ReasonCode::AdapterRefused
                } else if f.attempts >= self.retrying_after {
                    ReasonCode::ActionRetrying
                } else {
                    return None;
                };
                Some(Diagnosis {
                    reason,
                    failure: f.clone(),
                })
            })
            .max_by_key(|d| {
                (
                    d.reason == ReasonCode::AdapterRefused,
                    d.failure.last_failed_at,
                    d.failure.attempts,
                )
            })
    }

    /// What `id`'s status shows, if anything.
    pub(crate) fn current(&self, id: &InstanceId) -> Option<Diagnosis> {
        self.map().get(id).and_then(|a| self.pick(a))
    }

    /// Apply `edit` to `id`'s failures; returns whether the shown diagnosis changed.
    fn edit(
        &self,
        id: InstanceId,
        edit: impl FnOnce(&mut BTreeMap<String, ActionFailure>),
    ) -> Shown {
        let mut map = self.map();
        let actions = map.entry(id).or_default();
        let before = self.pick(actions);
        edit(actions);
        let after = self.pick(actions);
        if actions.is_empty() {
            map.remove(&id);
        }
        before.as_ref().map(Diagnosis::identity) != after.as_ref().map(Diagnosis::identity)
    }

    /// Record a failed attempt of `action`; returns the failures in a row and whether the
    /// shown diagnosis changed.
    pub(crate) fn failed(
        &self,
        id: InstanceId,
        key: &str,
        action: &Action,
        failure: Failure,
        now: u64,
    ) -> (u32, Shown) {
        let mut attempts = 0;
        let shown = self.edit(id, |actions| {
            let entry = actions
                .entry(key.to_owned())
                .or_insert_with(|| ActionFailure {
                    action: action_name(action),
                    leg: action.leg(),
                    failure: failure.clone(),
                    attempts: 0,
                    first_failed_at: now,
                    last_failed_at: now,
                });
            entry.failure = failure;
            entry.attempts = entry.attempts.saturating_add(1);
            entry.last_failed_at = now.max(entry.last_failed_at);
            attempts = entry.attempts;
        });
        (attempts, shown)
    }

    /// `key` succeeded or is no longer due: forget its failures.
    pub(crate) fn cleared(&self, id: InstanceId, key: &str) -> Shown {
        if !self.map().get(&id).is_some_and(|a| a.contains_key(key)) {
            return false;
        }
        self.edit(id, |actions| {
            actions.remove(key);
        })
    }

    /// Keep only the failures of actions `still_due` says the instance still calls for
    /// (after a transition, or dropping everything once it is terminal).
    pub(crate) fn retain(&self, id: InstanceId, still_due: impl Fn(&str) -> bool) -> Shown {
        if !self.map().contains_key(&id) {
            return false;
        }
        self.edit(id, |actions| actions.retain(|k, _| still_due(k)))
    }
}

/// `s` with the user-info part (`user:password@`) of every `scheme://` URL removed: RPC
/// endpoints often carry credentials, and adapter errors quote their endpoint.
pub fn redact_url_credentials(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the path, query or fragment, or where the URL ends.
        let end = tail
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`' | ')' | ']' | ','
                ) || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_lock_contracts::{HubRecord, LockId, TxId};

    #[test]
    fn url_credentials_are_stripped_and_the_rest_kept() {
        let cases = [
            (
                "error sending request for url (http://alice:s3cret@127.0.0.1:8545/): connection refused",
                "error sending request for url (http://127.0.0.1:8545/): connection refused",
            ),
            (
                "rpc https://key@node.example:443?x=1 and ws://u:p@h:1 failed",
                "rpc https://node.example:443?x=1 and ws://h:1 failed",
            ),
            ("http://token@host", "http://host"),
            ("no url here: user@host", "no url here: user@host"),
            ("http://127.0.0.1:9332/wallet/a@b", "http://127.0.0.1:9332/wallet/a@b"),
            ("trailing ://", "trailing ://"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url_credentials(input), want, "{input}");
        }
    }

    #[test]
    fn adapter_failures_keep_the_code_and_drop_credentials() {
        let e = AdapterError::Unavailable {
            network: NetworkId(7),
            reason: "http://rpc:hunter2@127.0.0.1:8545 refused".into(),
        };
        let f = Failure::adapter(NetworkId(7), &e);
        assert!(f.retryable);
        assert_eq!(f.code, "unavailable");
        assert!(!f.message.contains("hunter2"), "{}", f.message);
        assert!(f.message.contains("127.0.0.1:8545"), "{}", f.message);
        let back: ExecError = f.into();
        assert!(matches!(back, ExecError::Retryable(m) if !m.contains("hunter2")));
    }

    fn release() -> Action {
        let id = InstanceId::derive(&[b"diag"]);
        Action::Release {
            leg: LegId::B,
            lock_id: LockId::derive(id, LegId::B),
            record: HubRecord {
                height: 1,
                tx: TxId("t".into()),
            },
        }
    }

    fn failure(retryable: bool) -> Failure {
        Failure {
            retryable,
            network: Some(NetworkId(2)),
            code: if retryable { "timeout" } else { "rejected" }.into(),
            message: "no".into(),
        }
    }

    #[test]
    fn a_refusal_shows_at_once_and_a_retryable_failure_after_n() {
        let d = Diagnoses::new(3);
        let id = InstanceId::derive(&[b"diag"]);
        let a = release();
        assert_eq!(d.failed(id, "k", &a, failure(true), 10), (1, false));
        assert_eq!(d.failed(id, "k", &a, failure(true), 11), (2, false));
        assert!(d.current(&id).is_none());
        assert_eq!(d.failed(id, "k", &a, failure(true), 12), (3, true));
        let shown = d.current(&id).unwrap();
        assert_eq!(shown.reason, ReasonCode::ActionRetrying);
        assert_eq!(
            (shown.failure.first_failed_at, shown.failure.last_failed_at),
            (10, 12)
        );
        // another attempt of the same kind is no news
        assert_eq!(d.failed(id, "k", &a, failure(true), 13), (4, false));
        // the chain now refuses it: news, and it outranks a retry elsewhere
        assert_eq!(d.failed(id, "k", &a, failure(false), 14), (5, true));
        assert_eq!(d.current(&id).unwrap().reason, ReasonCode::AdapterRefused);
        assert!(!d.failed(id, "other", &a, failure(true), 15).1);
        assert_eq!(d.current(&id).unwrap().reason, ReasonCode::AdapterRefused);
        // success clears it; what remains shows only once past the threshold
        assert!(d.cleared(id, "k"));
        assert!(d.current(&id).is_none());
        assert!(!d.cleared(id, "k"));
        assert!(!d.retain(id, |_| false));
        assert!(d.map().is_empty());
    }
}

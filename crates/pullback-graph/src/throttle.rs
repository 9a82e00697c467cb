//! Staying inside Exchange Online's limits for one application and one mailbox: at most four
//! requests at a time, and about 10,000 requests in any ten minutes.
//!
//! Each mailbox has a gate. A caller enters it with the number of requests it is about to
//! make (a `$batch` counts each request inside it) and how many of them may run at once;
//! the gate holds that many of the mailbox's four permits until the answer is read, takes
//! the requests from a token bucket, and waits while Graph asked the mailbox to back off
//! (`Retry-After`). Limits are per mailbox, so a throttled mailbox never slows another.
//!
//! The bucket holds 5 % of the budget (at least a full `$batch` where the budget allows) and
//! refills at the rest of it, less a 3 % reserve, per window, so that no window of that length ever sees more than
//! the budget, whatever the server's window is aligned to; a server that still answers 429 is
//! obeyed through `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Gates for at most this many mailboxes are kept; idle ones are dropped beyond it.
const MAX_GATES: usize = 10_000;

/// The limits one application has on one mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight at once (Microsoft: 4).
    pub concurrent: u32,
    /// Requests in any `window` (Microsoft: 10,000 in 10 minutes).
    pub requests: u32,
    pub window: Duration,
}

impl Default for Limits {
    /// Microsoft's published Outlook limits.
    fn default() -> Limits {
        Limits {
            concurrent: 4,
            requests: 10_000,
            window: Duration::from_secs(600),
        }
    }
}

impl Limits {
    /// What the bucket holds: 5 % of the budget, but room for a full `$batch` (20) where the
    /// budget allows, and never more than half of it.
    fn burst(&self) -> f64 {
        let budget = f64::from(self.requests);
        (budget * 0.05).max(20.0).min(budget / 2.0).max(1.0)
    }

    /// The refill: the rest of the budget spread over the window, so that the bucket and its
    /// refill together never exceed the budget in any window. 3 % are kept in reserve for the
    /// difference between when a request leaves here and when Graph counts it.
    fn rate_per_sec(&self) -> f64 {
        let rest = (f64::from(self.requests) * 0.97 - self.burst()).max(1.0);
        rest / self.window.as_secs_f64().max(0.001)
    }
}

/// The gates of every mailbox one client talks to.
// FIXME: the buckets live in the leader's memory; a new leader starts with full buckets and
// learns of a budget its predecessor spent only from Graph's 429s.
pub(crate) struct Gates {
    limits: Limits,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

impl Gates {
    pub(crate) fn new(limits: Limits) -> Gates {
        Gates {
            limits,
            gates: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// The gate of `mailbox`, compared without case as Exchange does.
    pub(crate) fn gate(&self, mailbox: &str) -> Arc<Gate> {
        let key = mailbox.trim().to_ascii_lowercase();
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        if !gates.contains_key(&key) && gates.len() >= MAX_GATES {
            gates.retain(|_, gate| !gate.is_idle(&self.limits));
        }
        gates
            .entry(key)
            .or_insert_with(|| Arc::new(Gate::new(self.limits)))
            .clone()
    }
}

/// One mailbox's permits, bucket and back-off.
pub(crate) struct Gate {
    limits: Limits,
    permits: Arc<Semaphore>,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Graph asked for no requests to this mailbox before then.
    blocked_until: Option<Instant>,
}

/// Held while requests are in flight; dropping it frees their permits.
pub(crate) struct Pass {
    _permits: OwnedSemaphorePermit,
}

impl Gate {
    fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            permits: Arc::new(Semaphore::new(limits.concurrent.max(1) as usize)),
            state: Mutex::new(Bucket {
                tokens: limits.burst(),
                refilled: Instant::now(),
                blocked_until: None,
            }),
        }
    }

    /// Waits until `requests` more requests, `parallel` of them at once, are within the
    /// limits, and reserves them.
    pub(crate) async fn enter(&self, requests: u32, parallel: u32) -> Pass {
        let parallel = parallel.clamp(1, self.limits.concurrent.max(1));
        let permits = self
            .permits
            .clone()
            .acquire_many_owned(parallel)
            .await
            .expect("a gate's semaphore is never closed");
        loop {
            match self.reserve(requests) {
                None => return Pass { _permits: permits },
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Takes the tokens, or says how long to wait first.
    fn reserve(&self, requests: u32) -> Option<Duration> {
        let now = Instant::now();
        let mut bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = bucket.blocked_until {
            if until > now {
                return Some(until - now);
            }
            bucket.blocked_until = None;
        }
        let rate = self.limits.rate_per_sec();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(self.limits.burst());
        bucket.refilled = now;
        // A batch larger than the bucket could never fit; it waits for a full bucket and
        // runs into debt instead, which later requests pay back.
        let needed = f64::from(requests).min(self.limits.burst());
        if bucket.tokens >= needed {
            bucket.tokens -= f64::from(requests);
            return None;
        }
        let missing = needed - bucket.tokens;
        Some(Duration::from_secs_f64(missing / rate).max(Duration::from_millis(1)))
    }

    /// Graph answered 429 or 503 for this mailbox: nothing goes to it for `wait`.
    pub(crate) fn back_off(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
        bucket.blocked_until = Some(bucket.blocked_until.map_or(until, |u| u.max(until)));
    }

    /// No request in flight, no back-off, and a full bucket: dropping the gate loses nothing.
    fn is_idle(&self, limits: &Limits) -> bool {
        if self.permits.available_permits() < limits.concurrent.max(1) as usize {
            return false;
        }
        let bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let refilled = bucket.tokens
            + bucket.refilled.elapsed().as_secs_f64() * limits.rate_per_sec()
            >= limits.burst();
        refilled && bucket.blocked_until.is_none_or(|u| u <= Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            concurrent: 2,
            requests: 100,
            window: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_paces_requests_to_the_budget() {
        let gate = Gate::new(small());
        let start = Instant::now();
        // The bucket holds 20 of the 100; 77 more per 10 s come at 7.7 per second.
        for _ in 0..35 {
            drop(gate.enter(1, 1).await);
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!((1.9..2.2).contains(&elapsed), "{elapsed}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_concurrent_limit_is_in_flight() {
        let gate = Gate::new(small());
        let first = gate.enter(1, 2).await;
        let waiting = tokio::time::timeout(Duration::from_secs(1), gate.enter(1, 1)).await;
        assert!(waiting.is_err(), "a third request entered a gate of two");
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), gate.enter(1, 1))
            .await
            .expect("the permits came back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_back_off_holds_every_request_to_the_mailbox() {
        let gate = Gate::new(small());
        gate.back_off(Duration::from_secs(30));
        let start = Instant::now();
        drop(gate.enter(1, 1).await);
        assert!(start.elapsed() >= Duration::from_secs(30));
    }

    #[test]
    fn mailboxes_have_gates_of_their_own_without_case() {
        let gates = Gates::new(small());
        assert!(Arc::ptr_eq(
            &gates.gate("A@x.example"),
            &gates.gate("a@x.example")
        ));
        assert!(!Arc::ptr_eq(
            &gates.gate("a@x.example"),
            &gates.gate("b@x.example")
        ));
    }
}

//! The API's call quota and the backoff after it was exceeded.
//!
//! The quota is counted over the call times kept in the source's checkpoint, which is
//! replicated, so a node that takes over after a failover knows what its predecessor spent.

use chrono::TimeDelta;
use pullback_domain::Timestamp;
use std::time::Duration;

/// A limit on calls per rolling period, per credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Calls allowed within any one period.
    pub limit: u32,
    /// The rolling period, 24 hours for the TAP SIEM API.
    pub period: Duration,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            limit: 1800,
            period: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl Quota {
    /// Whether one more call may be made at `now`.
    pub fn allows(&self, calls: &[Timestamp], now: Timestamp) -> bool {
        self.used(calls, now) < self.limit as usize
    }

    /// Calls that still count against the quota at `now`.
    pub fn used(&self, calls: &[Timestamp], now: Timestamp) -> usize {
        let since = self.since(now);
        calls.iter().filter(|&&t| t > since).count()
    }

    /// Forgets calls that no longer count at `now`.
    pub fn prune(&self, calls: &mut Vec<Timestamp>, now: Timestamp) {
        let since = self.since(now);
        calls.retain(|&t| t > since);
    }

    /// How long until a call is allowed again; zero when one is allowed now.
    pub fn wait(&self, calls: &[Timestamp], now: Timestamp) -> Duration {
        let since = self.since(now);
        let mut counting: Vec<Timestamp> = calls.iter().copied().filter(|&t| t > since).collect();
        if counting.len() < self.limit as usize {
            return Duration::ZERO;
        }
        // The call that must expire is the one that leaves `limit - 1` newer calls behind it.
        counting.sort_unstable();
        let expiring = counting[counting.len() - self.limit as usize];
        (expiring - since).to_std().unwrap_or(Duration::ZERO)
    }

    fn since(&self, now: Timestamp) -> Timestamp {
        now - TimeDelta::from_std(self.period).unwrap_or(TimeDelta::MAX)
    }
}

/// Exponential backoff after a 429, which comes without a Retry-After.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    /// From one minute, doubling, to one hour.
    fn default() -> Self {
        Backoff::new(Duration::from_secs(60), Duration::from_secs(60 * 60))
    }
}

impl Backoff {
    /// A backoff that starts at `min` and doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay to wait now; the one after it is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.max);
        delay
    }

    /// Starts again from the minimum after a call went through.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
            .single()
            .expect("a valid time")
    }

    fn ago(minutes: i64) -> Timestamp {
        now() - TimeDelta::minutes(minutes)
    }

    #[test]
    fn calls_count_for_a_rolling_day() {
        let quota = Quota {
            limit: 3,
            ..Quota::default()
        };
        let calls = vec![ago(25 * 60), ago(23 * 60), ago(60), ago(1)];
        assert_eq!(quota.used(&calls, now()), 3);
        assert!(!quota.allows(&calls, now()));
        assert_eq!(quota.wait(&calls, now()), Duration::from_secs(60 * 60));

        // An hour later the call made 23 hours ago no longer counts.
        let later = now() + TimeDelta::minutes(60);
        assert!(quota.allows(&calls, later));
        assert_eq!(quota.wait(&calls, later), Duration::ZERO);
    }

    #[test]
    fn a_call_exactly_a_day_old_no_longer_counts() {
        let quota = Quota {
            limit: 1,
            ..Quota::default()
        };
        assert!(quota.allows(&[ago(24 * 60)], now()));
        assert!(!quota.allows(&[ago(24 * 60 - 1)], now()));
    }

    #[test]
    fn pruning_keeps_only_calls_that_count() {
        let quota = Quota::default();
        let mut calls = vec![ago(25 * 60), ago(24 * 60), ago(10), ago(1)];
        quota.prune(&mut calls, now());
        assert_eq!(calls, [ago(10), ago(1)]);
    }

    #[test]
    fn the_default_quota_is_the_apis() {
        let quota = Quota::default();
        let calls = vec![ago(1); 1799];
        assert!(quota.allows(&calls, now()));
        assert!(!quota.allows(&vec![ago(1); 1800], now()));
    }

    #[test]
    fn backoff_doubles_from_a_minute_to_an_hour_and_resets() {
        let mut backoff = Backoff::default();
        let minutes: Vec<u64> = (0..8)
            .map(|_| backoff.next_delay().as_secs() / 60)
            .collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(60));
    }
}

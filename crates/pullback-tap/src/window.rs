//! Planning which time windows a poll cycle asks the TAP SIEM API for.
//!
//! The planner is pure: given the cursor, the time and the limits, it returns the windows to
//! fetch in order and the stretch of time, if any, that can no longer be fetched.

use chrono::{SubsecRound, TimeDelta};
use pullback_domain::Timestamp;
use std::fmt;
use std::time::Duration;

/// How far back of the API's seven-day limit the planner stays, so that a request that
/// reaches the server a little later than planned is not refused.
pub const API_LIMIT_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The limits the planner works within.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    /// The longest window the API accepts in one call.
    pub max_window: Duration,
    /// The shortest window the API accepts in one call.
    pub min_window: Duration,
    /// How much before the cursor every cycle asks again, to catch events indexed late.
    pub overlap: Duration,
    /// How far back the first cycle, or the first after an outage, reaches.
    pub lookback_on_start: Duration,
    /// How far back the API keeps data.
    pub api_limit: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            max_window: Duration::from_secs(60 * 60),
            min_window: Duration::from_secs(30),
            overlap: Duration::from_secs(30 * 60),
            lookback_on_start: Duration::from_secs(12 * 60 * 60),
            api_limit: Duration::from_secs(7 * 24 * 60 * 60),
        }
    }
}

/// One call's time selector: events filed from `start` (included) to `end` (excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    /// The window's length.
    pub fn length(&self) -> TimeDelta {
        self.end - self.start
    }
}

impl fmt::Display for Window {
    /// Writes the window as the API's `interval` parameter does: `<start>/<end>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let start = crate::event::format_time(self.start);
        let end = crate::event::format_time(self.end);
        write!(f, "{start}/{end}")
    }
}

/// Time that was never fetched and will not be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from: Timestamp,
    pub to: Timestamp,
    pub reason: GapReason,
}

/// Why a stretch of time was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapReason {
    /// The cursor was older than the configured look-back after a restart.
    Lookback,
    /// The cursor was older than the data the API keeps.
    ApiLimit,
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GapReason::Lookback => "the cursor is older than the configured look-back",
            GapReason::ApiLimit => "the cursor is older than the data the API keeps",
        })
    }
}

/// What a cycle should fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Windows in time order, each between the minimum and maximum length; the last ends now.
    pub windows: Vec<Window>,
    pub gap: Option<Gap>,
}

/// Plans the windows from the cursor, less the overlap, up to `now` (truncated to the second).
pub fn plan(cursor: Option<Timestamp>, now: Timestamp, cfg: &WindowConfig) -> Plan {
    let now = now.trunc_subsecs(0);
    let api_reach = cfg.api_limit.saturating_sub(API_LIMIT_MARGIN);
    let (reach, reason) = if cfg.lookback_on_start <= api_reach {
        (cfg.lookback_on_start, GapReason::Lookback)
    } else {
        (api_reach, GapReason::ApiLimit)
    };
    let earliest = now - delta(reach);

    let gap = cursor.filter(|&cursor| cursor < earliest).map(|from| Gap {
        from,
        to: earliest,
        reason,
    });
    let start = match cursor {
        Some(cursor) => (cursor - delta(cfg.overlap)).max(earliest),
        None => earliest,
    };
    Plan {
        windows: walk(start, now, cfg),
        gap,
    }
}

/// Cuts `start..now` into windows of at most `max_window`, none shorter than `min_window`.
fn walk(start: Timestamp, now: Timestamp, cfg: &WindowConfig) -> Vec<Window> {
    let max = delta(cfg.max_window).max(TimeDelta::seconds(1));
    let min = delta(cfg.min_window).min(max);

    let mut windows = Vec::new();
    let mut from = start;
    while now - from > max {
        windows.push(Window {
            start: from,
            end: from + max,
        });
        from += max;
    }
    windows.push(Window {
        start: from,
        end: now,
    });

    // A short last window would be refused. Merging it into the one before would make that
    // one too long, so the boundary between them moves back instead.
    let last = windows.len() - 1;
    if windows[last].length() < min {
        windows[last].start = now - min;
        if last > 0 {
            windows[last - 1].end = now - min;
        }
    }
    windows
}

/// A std duration as a chrono one, saturating instead of overflowing.
fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const MIN: i64 = 60;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

    fn now() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
            .single()
            .expect("a valid time")
    }

    fn ago(secs: i64) -> Timestamp {
        now() - TimeDelta::seconds(secs)
    }

    /// Windows as (start, end) in seconds before now.
    fn spans(plan: &Plan) -> Vec<(i64, i64)> {
        let seconds_ago = |t: Timestamp| (now() - t).num_seconds();
        plan.windows
            .iter()
            .map(|w| (seconds_ago(w.start), seconds_ago(w.end)))
            .collect()
    }

    fn hourly(from_hours_ago: i64) -> Vec<(i64, i64)> {
        (0..from_hours_ago)
            .rev()
            .map(|h| ((h + 1) * HOUR, h * HOUR))
            .collect()
    }

    fn assert_within_limits(plan: &Plan, cfg: &WindowConfig) {
        for w in &plan.windows {
            assert!(w.length() >= delta(cfg.min_window), "{w} too short");
            assert!(w.length() <= delta(cfg.max_window), "{w} too long");
        }
        for pair in plan.windows.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "windows must be contiguous");
        }
    }

    #[test]
    fn first_run_reaches_back_the_lookback() {
        let cfg = WindowConfig::default();
        let plan = plan(None, now(), &cfg);
        assert_eq!(spans(&plan), hourly(12));
        assert_eq!(plan.gap, None);
        assert_within_limits(&plan, &cfg);
    }

    #[test]
    fn a_normal_cycle_asks_again_for_the_overlap() {
        let cfg = WindowConfig::default();
        let plan = plan(Some(ago(MIN)), now(), &cfg);
        assert_eq!(spans(&plan), [(31 * MIN, 0)]);
        assert_eq!(plan.gap, None);
    }

    #[test]
    fn a_cursor_inside_the_lookback_is_never_clamped() {
        let cfg = WindowConfig::default();
        let plan = plan(Some(ago(12 * HOUR - 10 * MIN)), now(), &cfg);
        assert_eq!(spans(&plan), hourly(12));
        assert_eq!(plan.gap, None);
    }

    #[test]
    fn a_thirteen_hour_outage_recovers_twelve_hours_and_reports_the_gap() {
        let cfg = WindowConfig::default();
        let plan = plan(Some(ago(13 * HOUR)), now(), &cfg);
        assert_eq!(spans(&plan), hourly(12));
        let gap = plan.gap.clone().expect("a gap");
        assert_eq!(
            (gap.from, gap.to, gap.reason),
            (ago(13 * HOUR), ago(12 * HOUR), GapReason::Lookback)
        );
        assert_within_limits(&plan, &cfg);
    }

    #[test]
    fn a_lookback_past_the_api_limit_is_clamped_to_seven_days() {
        let cfg = WindowConfig {
            lookback_on_start: Duration::from_secs(10 * DAY as u64),
            ..WindowConfig::default()
        };
        let plan = plan(Some(ago(8 * DAY)), now(), &cfg);
        let reach = 7 * DAY - 5 * MIN;
        let gap = plan.gap.clone().expect("a gap");
        assert_eq!(
            (gap.from, gap.to, gap.reason),
            (ago(8 * DAY), ago(reach), GapReason::ApiLimit)
        );

        assert_eq!(plan.windows.first().map(|w| w.start), Some(ago(reach)));
        assert_eq!(plan.windows.last().map(|w| w.end), Some(now()));
        assert_eq!(plan.windows.len(), 168);
        assert_within_limits(&plan, &cfg);
    }

    #[test]
    fn a_tiny_remainder_borrows_from_the_window_before() {
        let cfg = WindowConfig {
            overlap: Duration::ZERO,
            ..WindowConfig::default()
        };
        let plan = plan(Some(ago(2 * HOUR + 10)), now(), &cfg);
        assert_eq!(
            spans(&plan),
            [(2 * HOUR + 10, HOUR + 10), (HOUR + 10, 30), (30, 0)]
        );
        assert_within_limits(&plan, &cfg);
    }

    #[test]
    fn a_tiny_only_window_reaches_back_and_never_forward() {
        let cfg = WindowConfig {
            overlap: Duration::ZERO,
            ..WindowConfig::default()
        };
        assert_eq!(spans(&plan(Some(ago(10)), now(), &cfg)), [(30, 0)]);
        assert_eq!(
            spans(&plan(Some(now() + TimeDelta::seconds(5)), now(), &cfg)),
            [(30, 0)]
        );
    }

    #[test]
    fn now_is_truncated_to_the_second() {
        let cfg = WindowConfig::default();
        let plan = plan(Some(ago(MIN)), now() + TimeDelta::milliseconds(700), &cfg);
        assert_eq!(spans(&plan), [(31 * MIN, 0)]);
        assert_eq!(
            plan.windows[0].to_string(),
            "2024-05-01T11:29:00Z/2024-05-01T12:00:00Z"
        );
    }
}

//! Five-field cron expressions in UTC: minute, hour, day of month, month, day of week. Each
//! field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of those.
//! As in cron, when both day fields are restricted a day matching either one matches.

use crate::Timestamp;
use chrono::{Datelike, TimeDelta, Timelike};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

fn field(text: &str, (name, low, high): (&str, u32, u32)) -> Result<u64, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: {step:?} is not a step"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let number = |t: &str| -> Result<u32, String> {
            t.parse::<u32>()
                .ok()
                .filter(|n| (low..=high).contains(n))
                .ok_or_else(|| format!("{name}: {t:?} is not a number from {low} to {high}"))
        };
        let (from, to) = match range {
            "*" => (low, high),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let n = number(r)?;
                    (n, if part.contains('/') { high } else { n })
                }
            },
        };
        if from > to {
            return Err(format!("{name}: the range {range:?} runs backwards"));
        }
        for n in (from..=to).step_by(step as usize) {
            set |= 1 << n;
        }
    }
    Ok(set)
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "{text:?} has {} fields; give five: minute hour day-of-month month day-of-week",
                parts.len()
            ));
        }
        let mut sets = [0u64; 5];
        for (i, part) in parts.iter().enumerate() {
            sets[i] = field(part, FIELDS[i])?;
        }
        // Sunday is 0 or 7.
        let weekdays = (sets[4] | (sets[4] >> 7)) & 0x7f;
        Ok(Cron {
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays,
            days_restricted: parts[2] != "*",
            weekdays_restricted: parts[4] != "*",
        })
    }

    pub fn matches(&self, t: Timestamp) -> bool {
        let bit = |set: u64, n: u32| set & (1 << n) != 0;
        let day = bit(self.days, t.day());
        let weekday = bit(self.weekdays, t.weekday().num_days_from_sunday());
        let day_matches = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        };
        bit(self.minutes, t.minute())
            && bit(self.hours, t.hour())
            && bit(self.months, t.month())
            && day_matches
    }

    /// The latest minute in `(after, until]` that matches, looking back at most two days.
    pub fn latest_between(&self, after: Timestamp, until: Timestamp) -> Option<Timestamp> {
        let mut t = until
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(until);
        let floor = after.max(until - TimeDelta::days(2));
        while t > floor {
            if self.matches(t) {
                return Some(t);
            }
            t -= TimeDelta::minutes(1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    #[test]
    fn fields_combine_like_cron() {
        let nightly = Cron::parse("30 2 * * *").unwrap();
        assert!(nightly.matches(at("2026-12-05T02:30:00Z")));
        assert!(!nightly.matches(at("2026-12-05T02:31:00Z")));
        let sundays = Cron::parse("0 3 * * 7").unwrap();
        assert!(
            sundays.matches(at("2026-12-06T03:00:00Z")),
            "6 Dec 2026 is a Sunday"
        );
        assert!(!sundays.matches(at("2026-12-05T03:00:00Z")));
        let steps = Cron::parse("*/15 8-18/2 1,15 * *").unwrap();
        assert!(steps.matches(at("2026-12-15T10:45:00Z")));
        assert!(!steps.matches(at("2026-12-15T09:45:00Z")));
        // Both day fields restricted: either one.
        let either = Cron::parse("0 0 1 * 1").unwrap();
        assert!(either.matches(at("2026-12-01T00:00:00Z")));
        assert!(either.matches(at("2026-12-07T00:00:00Z")), "a Monday");
    }

    #[test]
    fn the_latest_due_minute_is_found() {
        let nightly = Cron::parse("30 2 * * *").unwrap();
        let due = nightly.latest_between(at("2026-12-04T00:00:00Z"), at("2026-12-05T09:10:42Z"));
        assert_eq!(due, Some(at("2026-12-05T02:30:00Z")));
        let none = nightly.latest_between(at("2026-12-05T03:00:00Z"), at("2026-12-05T09:00:00Z"));
        assert_eq!(none, None);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(Cron::parse("* * *").unwrap_err().contains("3 fields"));
        assert!(Cron::parse("61 * * * *").unwrap_err().contains("minute"));
        assert!(Cron::parse("* * * 0 *").unwrap_err().contains("month"));
        assert!(Cron::parse("*/0 * * * *").unwrap_err().contains("step"));
        assert!(
            Cron::parse("5-1 * * * *")
                .unwrap_err()
                .contains("backwards")
        );
    }
}

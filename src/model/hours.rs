//! Business hours: a weekly schedule in a time zone, minus holidays.
//!
//! Queues use them to decide whether a ticket is offered now or waits (and to tell the customer
//! when the queue opens), agents use them as their shift. The schedule is written in local
//! wall-clock time, because that is how people state opening hours, and every question is
//! answered in epoch milliseconds, because that is what the rest of Baton stores.
//!
//! # Model
//!
//! Each weekday has zero or more ranges `"HH:MM-HH:MM"`. A range whose end is not after its start
//! (`"22:00-06:00"`) runs overnight: the part after midnight belongs to the shift that started
//! the evening before, so it is still open on the next morning even if that day is a holiday or
//! has no ranges of its own. `24:00` may end a range (`"18:00-24:00"`). A holiday cancels the
//! shifts that *start* on it.
//!
//! Every shift is turned into an absolute interval `[start, end)` by resolving its local start
//! and end in the zone. Local times that do not exist (the hour skipped when clocks go forward)
//! or exist twice (the hour repeated when they go back) are resolved with the "compatible"
//! rule, as RFC 5545 and Temporal do: a skipped time moves forward by the length of the gap, a
//! repeated one takes its first occurrence. So a `01:00-05:00` shift lasts three hours on the
//! night clocks go forward and five on the night they go back, which is what the staff on it
//! actually work.
//!
//! Time zones come from `jiff`, with the IANA database bundled into the binary
//! (`tzdb-bundle-always`), so a container without `/usr/share/zoneinfo` still knows
//! `Europe/Berlin`; the system copy is preferred where there is one.
//!
//! # Cost
//!
//! [`BusinessHours::is_open`] resolves at most three days of shifts. [`BusinessHours::next_open`]
//! and [`BusinessHours::closes_at`] walk day by day up to [`HORIZON_DAYS`]; the routing engine
//! calls them only when a queue's state is due to change, never per routing decision.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp as Instant;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

/// How far ahead [`BusinessHours::next_open`] and [`BusinessHours::closes_at`] look, in days:
/// more than a year, so an annual holiday or a yearly closing week cannot hide the next opening.
pub const HORIZON_DAYS: u32 = 400;

const MINUTES_PER_DAY: u16 = 24 * 60;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Why a business-hours configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    /// The zone is not in the IANA database.
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/Berlin\"")]
    UnknownTimeZone(String),
    /// A key of `weekly` is not a day of the week.
    #[error("unknown day {0:?} in the weekly schedule: use mon, tue, wed, thu, fri, sat or sun")]
    UnknownDay(String),
    /// The same day appears twice (e.g. `mon` and `monday`).
    #[error("{0} appears more than once in the weekly schedule")]
    DuplicateDay(&'static str),
    /// A range is malformed or empty.
    #[error("bad time range {range:?} on {day}: {why}")]
    BadRange {
        /// The day it was listed under.
        day: &'static str,
        /// The range as written.
        range: String,
        /// What is wrong with it.
        why: String,
    },
    /// A holiday is not a calendar date.
    #[error("bad holiday {0:?}: expected a date like 2026-12-25")]
    BadHoliday(String),
}

/// The configuration form of [`BusinessHours`], exactly as written in a config file.
///
/// ```json
/// { "timezone": "Europe/Berlin",
///   "weekly": { "mon": ["09:00-17:00"], "tue": ["09:00-12:00", "13:00-17:00"], "sat": [] },
///   "holidays": ["2026-12-25", "2027-01-01"] }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursConfig {
    /// IANA zone name the schedule is written in.
    pub timezone: String,
    /// Ranges per day (`mon` .. `sun`, or full English names); a missing day is closed.
    #[serde(default)]
    pub weekly: BTreeMap<String, Vec<String>>,
    /// Dates (`YYYY-MM-DD`, local) on which no shift starts.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// One range of a day, in minutes after local midnight. `end` is past 1440 for overnight ranges,
/// so "22:00-06:00" is `1320..1800`: the arithmetic never needs to know it wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Shift {
    start: u16,
    end: u16,
}

/// A validated weekly schedule in a time zone, with holidays. Deserializes from (and serializes
/// back to) [`HoursConfig`]; every error is reported while parsing, never while asking.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "HoursConfig", into = "HoursConfig")]
pub struct BusinessHours {
    config: HoursConfig,
    tz: TimeZone,
    /// Monday first, each day sorted by start.
    weekly: [Vec<Shift>; 7],
    holidays: BTreeSet<Date>,
}

impl PartialEq for BusinessHours {
    /// Two schedules are equal when they were configured the same way.
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
    }
}

impl From<BusinessHours> for HoursConfig {
    fn from(h: BusinessHours) -> Self {
        h.config
    }
}

impl TryFrom<HoursConfig> for BusinessHours {
    type Error = HoursError;

    fn try_from(config: HoursConfig) -> Result<Self, Self::Error> {
        Self::new(config)
    }
}

impl BusinessHours {
    /// Validates a configuration.
    pub fn new(config: HoursConfig) -> Result<Self, HoursError> {
        let tz = TimeZone::get(config.timezone.trim())
            .map_err(|_| HoursError::UnknownTimeZone(config.timezone.clone()))?;
        let mut weekly: [Vec<Shift>; 7] = Default::default();
        let mut seen = [false; 7];
        for (key, ranges) in &config.weekly {
            let day = day_index(key).ok_or_else(|| HoursError::UnknownDay(key.clone()))?;
            if std::mem::replace(&mut seen[day], true) {
                return Err(HoursError::DuplicateDay(DAY_NAMES[day]));
            }
            for range in ranges {
                let shift = parse_range(range).map_err(|why| HoursError::BadRange {
                    day: DAY_NAMES[day],
                    range: range.clone(),
                    why,
                })?;
                weekly[day].push(shift);
            }
            weekly[day].sort();
        }
        let holidays = config
            .holidays
            .iter()
            .map(|s| {
                s.trim()
                    .parse::<Date>()
                    .map_err(|_| HoursError::BadHoliday(s.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            config,
            tz,
            weekly,
            holidays,
        })
    }

    /// Open around the clock in UTC: what a queue without hours behaves like.
    pub fn always() -> Self {
        let weekly = DAY_NAMES
            .iter()
            .map(|d| (d.to_string(), vec!["00:00-24:00".to_string()]))
            .collect();
        let config = HoursConfig {
            timezone: "UTC".into(),
            weekly,
            holidays: Vec::new(),
        };
        Self {
            weekly: std::array::from_fn(|_| {
                vec![Shift {
                    start: 0,
                    end: MINUTES_PER_DAY,
                }]
            }),
            tz: TimeZone::UTC,
            holidays: BTreeSet::new(),
            config,
        }
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &HoursConfig {
        &self.config
    }

    /// Whether `at_ms` (epoch milliseconds) falls inside a shift. Shifts are half-open: open at
    /// their start, closed at their end.
    pub fn is_open(&self, at_ms: i64) -> bool {
        let Some(day) = self.local_date(at_ms) else {
            return false;
        };
        // A shift is at most a day long, so only the shifts starting the day before, the same
        // day or (when a fold puts the local date behind) the day after can contain `at_ms`.
        let mut shifts = Vec::new();
        for d in [day.yesterday().ok(), Some(day), day.tomorrow().ok()]
            .into_iter()
            .flatten()
        {
            self.intervals_on(d, &mut shifts);
        }
        shifts.iter().any(|&(s, e)| s <= at_ms && at_ms < e)
    }

    /// When it is next open: `at_ms` itself if open now, the start of the next shift otherwise,
    /// `None` if nothing opens within [`HORIZON_DAYS`] (an empty schedule, say).
    pub fn next_open(&self, at_ms: i64) -> Option<i64> {
        if self.is_open(at_ms) {
            return Some(at_ms);
        }
        let mut shifts = Vec::new();
        let mut day = self.local_date(at_ms)?.yesterday().ok()?;
        for _ in 0..=HORIZON_DAYS + 1 {
            shifts.clear();
            self.intervals_on(day, &mut shifts);
            if let Some(&(s, _)) = shifts.iter().find(|&&(s, _)| s > at_ms) {
                return Some(s);
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// When the current opening ends, merging back-to-back and overlapping shifts (so
    /// "09:00-12:00" and "12:00-17:00" close at 17:00). `None` when closed at `at_ms`, or when it
    /// stays open without a break through [`HORIZON_DAYS`].
    pub fn closes_at(&self, at_ms: i64) -> Option<i64> {
        let mut day = self.local_date(at_ms)?.yesterday().ok()?;
        let mut shifts = Vec::new();
        let mut end: Option<i64> = None;
        for _ in 0..=HORIZON_DAYS + 1 {
            shifts.clear();
            self.intervals_on(day, &mut shifts);
            for &(s, e) in &shifts {
                end = match end {
                    None if s <= at_ms && at_ms < e => Some(e),
                    None => None,
                    Some(cur) if s <= cur => Some(cur.max(e)),
                    Some(cur) => return Some(cur),
                };
            }
            if let Some(cur) = end
                && day >= self.local_date(cur)?
            {
                // Every later shift starts at or after the next local midnight, which is past
                // `cur`: nothing can extend it.
                return Some(cur);
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    fn local_date(&self, at_ms: i64) -> Option<Date> {
        let at = Instant::from_millisecond(at_ms).ok()?;
        Some(self.tz.to_datetime(at).date())
    }

    /// The absolute intervals of the shifts starting on local date `d`, in start order.
    fn intervals_on(&self, d: Date, out: &mut Vec<(i64, i64)>) {
        if self.holidays.contains(&d) {
            return;
        }
        let weekday = d.weekday().to_monday_zero_offset();
        let Some(shifts) = usize::try_from(weekday)
            .ok()
            .and_then(|i| self.weekly.get(i))
        else {
            return;
        };
        for shift in shifts {
            if let (Some(s), Some(e)) = (self.resolve(d, shift.start), self.resolve(d, shift.end))
                && s < e
            {
                out.push((s, e));
            }
        }
    }

    /// The instant of `minutes` after local midnight of `d` (possibly into the next day).
    fn resolve(&self, d: Date, minutes: u16) -> Option<i64> {
        let d = if minutes >= MINUTES_PER_DAY {
            d.tomorrow().ok()?
        } else {
            d
        };
        let m = minutes % MINUTES_PER_DAY;
        let time = Time::new(i8::try_from(m / 60).ok()?, i8::try_from(m % 60).ok()?, 0, 0).ok()?;
        let dt: DateTime = d.to_datetime(time);
        let ts = self.tz.to_ambiguous_timestamp(dt).compatible().ok()?;
        Some(ts.as_millisecond())
    }
}

fn day_index(key: &str) -> Option<usize> {
    let key = key.trim().to_ascii_lowercase();
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    (0..7).find(|&i| DAY_NAMES[i] == key || FULL[i] == key)
}

/// Parses `"HH:MM-HH:MM"` into minutes; an end at or before the start runs past midnight.
fn parse_range(range: &str) -> Result<Shift, String> {
    let (a, b) = range
        .split_once('-')
        .ok_or_else(|| "expected HH:MM-HH:MM".to_string())?;
    let start = parse_time(a.trim())?;
    let end = parse_time(b.trim())?;
    if start == MINUTES_PER_DAY {
        return Err("24:00 can only end a range".into());
    }
    if start == end {
        return Err("start and end are equal; for a whole day write 00:00-24:00".into());
    }
    let end = if end < start {
        end + MINUTES_PER_DAY
    } else {
        end
    };
    Ok(Shift { start, end })
}

fn parse_time(s: &str) -> Result<u16, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a time like 09:30"))?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || m.len() != 2 || !digits(m) {
        return Err(format!("{s:?} is not a time like 09:30"));
    }
    let h: u16 = h.parse().map_err(|_| format!("bad hour in {s:?}"))?;
    let m: u16 = m.parse().map_err(|_| format!("bad minute in {s:?}"))?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("{s:?} is not a time of day (00:00 to 24:00)"));
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(json: &str) -> BusinessHours {
        serde_json::from_str(json).unwrap()
    }

    /// Epoch milliseconds of a UTC wall-clock time.
    fn utc(s: &str) -> i64 {
        s.parse::<Instant>().unwrap().as_millisecond()
    }

    const BERLIN_OFFICE: &str = r#"{ "timezone": "Europe/Berlin",
        "weekly": { "mon": ["09:00-17:00"], "tue": ["09:00-12:00", "13:00-17:00"], "sat": [] },
        "holidays": ["2026-12-28", "2027-01-01"] }"#;

    #[test]
    fn the_example_configuration_parses() {
        let h = hours(BERLIN_OFFICE);
        assert_eq!(h.config().timezone, "Europe/Berlin");
        // Monday 2026-06-01 10:00 CEST is 08:00 UTC.
        assert!(h.is_open(utc("2026-06-01T08:00:00Z")));
        assert!(!h.is_open(utc("2026-06-01T06:59:59Z")));
        assert!(h.is_open(utc("2026-06-01T07:00:00Z")));
        assert!(!h.is_open(utc("2026-06-01T15:00:00Z")), "17:00 is closed");
    }

    #[test]
    fn a_lunch_break_closes_the_queue_and_next_open_is_after_lunch() {
        let h = hours(BERLIN_OFFICE);
        // Tuesday 2026-06-02 12:30 CEST.
        let lunch = utc("2026-06-02T10:30:00Z");
        assert!(!h.is_open(lunch));
        assert_eq!(h.next_open(lunch), Some(utc("2026-06-02T11:00:00Z")));
        assert_eq!(h.closes_at(lunch), None);
        assert_eq!(
            h.closes_at(utc("2026-06-02T08:00:00Z")),
            Some(utc("2026-06-02T10:00:00Z"))
        );
    }

    #[test]
    fn next_open_skips_closed_days_and_holidays() {
        let h = hours(BERLIN_OFFICE);
        // Tuesday evening -> next Monday 09:00.
        assert_eq!(
            h.next_open(utc("2026-06-02T16:00:00Z")),
            Some(utc("2026-06-08T07:00:00Z"))
        );
        // Monday 2026-12-28 is a holiday: Tuesday 29th 09:00 CET.
        assert_eq!(
            h.next_open(utc("2026-12-27T12:00:00Z")),
            Some(utc("2026-12-29T08:00:00Z"))
        );
        assert!(!h.is_open(utc("2026-12-28T10:00:00Z")));
    }

    #[test]
    fn next_open_is_now_when_already_open() {
        let h = hours(BERLIN_OFFICE);
        let t = utc("2026-06-01T08:00:00Z");
        assert_eq!(h.next_open(t), Some(t));
    }

    #[test]
    fn an_empty_schedule_never_opens() {
        let h = hours(r#"{ "timezone": "UTC", "weekly": {} }"#);
        assert!(!h.is_open(0));
        assert_eq!(h.next_open(utc("2026-01-01T00:00:00Z")), None);
        assert_eq!(h.closes_at(utc("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn back_to_back_shifts_close_at_the_end_of_the_last_one() {
        let h = hours(
            r#"{ "timezone": "UTC", "weekly": { "mon": ["09:00-12:00", "12:00-17:00", "16:00-18:00"] } }"#,
        );
        assert_eq!(
            h.closes_at(utc("2026-06-01T10:00:00Z")),
            Some(utc("2026-06-01T18:00:00Z"))
        );
    }

    #[test]
    fn an_overnight_shift_belongs_to_the_evening_it_starts() {
        // Friday night shift only; Saturday has nothing of its own.
        let h = hours(r#"{ "timezone": "UTC", "weekly": { "fri": ["22:00-06:00"] } }"#);
        // 2026-06-05 is a Friday.
        assert!(!h.is_open(utc("2026-06-05T21:59:00Z")));
        assert!(h.is_open(utc("2026-06-05T22:00:00Z")));
        assert!(h.is_open(utc("2026-06-06T05:59:00Z")));
        assert!(!h.is_open(utc("2026-06-06T06:00:00Z")));
        assert_eq!(
            h.closes_at(utc("2026-06-06T01:00:00Z")),
            Some(utc("2026-06-06T06:00:00Z"))
        );
        // Thursday night is closed (the shift is Friday's).
        assert!(!h.is_open(utc("2026-06-05T02:00:00Z")));
    }

    #[test]
    fn an_overnight_shift_runs_into_a_holiday_but_none_starts_on_it() {
        let h = hours(
            r#"{ "timezone": "UTC", "weekly": { "thu": ["22:00-06:00"], "fri": ["22:00-06:00"] },
                 "holidays": ["2026-12-25"] }"#,
        );
        // Thursday 24th's shift runs into the holiday morning.
        assert!(h.is_open(utc("2026-12-25T05:00:00Z")));
        // Friday 25th (holiday) has no night shift.
        assert!(!h.is_open(utc("2026-12-25T23:00:00Z")));
    }

    #[test]
    fn a_shift_can_end_at_midnight_and_join_the_next_days_shift() {
        let h = hours(
            r#"{ "timezone": "UTC", "weekly": { "mon": ["18:00-24:00"], "tue": ["00:00-02:00"] } }"#,
        );
        let mon_evening = utc("2026-06-01T20:00:00Z");
        assert!(h.is_open(mon_evening));
        assert_eq!(h.closes_at(mon_evening), Some(utc("2026-06-02T02:00:00Z")));
    }

    #[test]
    fn an_around_the_clock_schedule_never_closes_within_the_horizon() {
        let h = BusinessHours::always();
        assert!(h.is_open(utc("2026-03-29T01:30:00Z")));
        assert_eq!(h.closes_at(utc("2026-03-29T01:30:00Z")), None);
    }

    #[test]
    fn berlin_nine_to_five_follows_the_march_clock_change() {
        let h = hours(
            r#"{ "timezone": "Europe/Berlin", "weekly": { "sat": ["09:00-17:00"], "mon": ["09:00-17:00"] } }"#,
        );
        // Saturday 2026-03-28 (CET, UTC+1) opens at 08:00 UTC; Monday 30th (CEST) at 07:00 UTC.
        assert!(!h.is_open(utc("2026-03-28T07:30:00Z")));
        assert!(h.is_open(utc("2026-03-28T08:00:00Z")));
        assert_eq!(
            h.next_open(utc("2026-03-28T17:00:00Z")),
            Some(utc("2026-03-30T07:00:00Z"))
        );
    }

    #[test]
    fn berlin_night_shifts_are_an_hour_shorter_in_march_and_longer_in_october() {
        // The last Sundays: 2026-03-29 (02:00 -> 03:00) and 2026-10-25 (03:00 -> 02:00).
        let h = hours(
            r#"{ "timezone": "Europe/Berlin", "weekly": { "sat": ["22:00-06:00"], "sun": ["01:00-05:00"] } }"#,
        );
        let march_start = utc("2026-03-28T21:00:00Z"); // 22:00 CET
        assert_eq!(h.next_open(utc("2026-03-28T12:00:00Z")), Some(march_start));
        // Merged with Sunday's 01:00-05:00, it ends at 06:00 CEST = 04:00 UTC: 7 hours, not 8.
        assert_eq!(h.closes_at(march_start), Some(utc("2026-03-29T04:00:00Z")));

        let oct_start = utc("2026-10-24T20:00:00Z"); // 22:00 CEST
        assert_eq!(h.next_open(utc("2026-10-24T12:00:00Z")), Some(oct_start));
        // Ends at 06:00 CET = 05:00 UTC: 9 hours.
        assert_eq!(h.closes_at(oct_start), Some(utc("2026-10-25T05:00:00Z")));
    }

    #[test]
    fn a_shift_starting_in_the_skipped_hour_starts_when_the_clock_resumes() {
        // 02:30 does not exist in Berlin on 2026-03-29: the shift starts at 03:30 CEST (01:30 UTC),
        // the same instant as 02:30 CET would have been.
        let h = hours(r#"{ "timezone": "Europe/Berlin", "weekly": { "sun": ["02:30-04:00"] } }"#);
        assert_eq!(
            h.next_open(utc("2026-03-28T12:00:00Z")),
            Some(utc("2026-03-29T01:30:00Z"))
        );
        assert_eq!(
            h.closes_at(utc("2026-03-29T01:30:00Z")),
            Some(utc("2026-03-29T02:00:00Z"))
        );
    }

    #[test]
    fn a_shift_starting_in_the_repeated_hour_starts_at_its_first_occurrence() {
        // 02:30 happens twice in Berlin on 2026-10-25; the first is 00:30 UTC (CEST).
        let h = hours(r#"{ "timezone": "Europe/Berlin", "weekly": { "sun": ["02:30-04:00"] } }"#);
        assert_eq!(
            h.next_open(utc("2026-10-24T12:00:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        // 04:00 CET is 03:00 UTC: two and a half hours that night.
        assert_eq!(
            h.closes_at(utc("2026-10-25T01:00:00Z")),
            Some(utc("2026-10-25T03:00:00Z"))
        );
    }

    #[test]
    fn new_york_hours_move_with_its_own_clock_changes() {
        let h = hours(
            r#"{ "timezone": "America/New_York",
            "weekly": { "fri": ["09:00-17:00"], "sat": ["22:00-06:00"], "mon": ["09:00-17:00"] } }"#,
        );
        // Friday 2026-03-06 09:00 EST = 14:00 UTC; Monday 2026-03-09 09:00 EDT = 13:00 UTC.
        assert!(h.is_open(utc("2026-03-06T14:00:00Z")));
        assert!(!h.is_open(utc("2026-03-06T13:59:00Z")));
        assert!(h.is_open(utc("2026-03-09T13:00:00Z")));
        // The Saturday night shift across the change on 2026-03-08: 22:00 EST (03:00 UTC) to
        // 06:00 EDT (10:00 UTC).
        assert_eq!(
            h.next_open(utc("2026-03-07T12:00:00Z")),
            Some(utc("2026-03-08T03:00:00Z"))
        );
        assert_eq!(
            h.closes_at(utc("2026-03-08T05:00:00Z")),
            Some(utc("2026-03-08T10:00:00Z"))
        );
        // And back in November (2026-11-01): 22:00 EDT (02:00 UTC) to 06:00 EST (11:00 UTC).
        assert_eq!(
            h.closes_at(utc("2026-11-01T04:00:00Z")),
            Some(utc("2026-11-01T11:00:00Z"))
        );
    }

    #[test]
    fn bad_configurations_are_rejected_with_a_reason() {
        let err = |json: &str| {
            serde_json::from_str::<BusinessHours>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{ "timezone": "Mars/Olympus" }"#).contains("unknown time zone"));
        assert!(
            err(r#"{ "timezone": "UTC", "weekly": { "funday": [] } }"#).contains("unknown day")
        );
        assert!(
            err(r#"{ "timezone": "UTC", "weekly": { "mon": ["9-17"] } }"#)
                .contains("bad time range")
        );
        assert!(
            err(r#"{ "timezone": "UTC", "weekly": { "mon": ["09:00-25:00"] } }"#)
                .contains("not a time of day")
        );
        assert!(
            err(r#"{ "timezone": "UTC", "weekly": { "mon": ["09:00-09:00"] } }"#).contains("equal")
        );
        assert!(
            err(r#"{ "timezone": "UTC", "weekly": { "mon": ["24:00-02:00"] } }"#).contains("24:00")
        );
        assert!(
            err(r#"{ "timezone": "UTC", "holidays": ["2026-02-30"] }"#).contains("bad holiday")
        );
        assert!(
            err(r#"{ "timezone": "UTC", "weekly": { "mon": [], "monday": [] } }"#)
                .contains("more than once")
        );
        assert!(err(r#"{ "timezone": "UTC", "hours": {} }"#).contains("unknown field"));
    }

    #[test]
    fn business_hours_serialize_back_to_their_configuration() {
        let h = hours(BERLIN_OFFICE);
        let again: BusinessHours =
            serde_json::from_value(serde_json::to_value(&h).unwrap()).unwrap();
        assert_eq!(again, h);
    }

    #[test]
    fn instants_outside_the_calendar_are_simply_closed() {
        let h = hours(BERLIN_OFFICE);
        assert!(!h.is_open(i64::MAX));
        assert_eq!(h.next_open(i64::MIN), None);
    }
}

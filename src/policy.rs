//! Which snapshots to keep: restic's `forget` policy.
//!
//! Snapshots are first split into groups (by host and paths unless told
//! otherwise); in each group, newest first, a snapshot is kept when any
//! rule wants it:
//!
//! - `last N`: the N newest;
//! - `hourly/daily/weekly/monthly/yearly N`: the newest snapshot of each
//!   of the N newest hours (days, ISO weeks, months, years) that hold one,
//!   counted in local time; when a rule still has counts left at the
//!   group's oldest snapshot, that one is kept too, so the history kept is
//!   as long as it can be;
//! - `N unlimited`: every such period;
//! - `within 1y2m3d4h`: every snapshot newer than that span before the
//!   newest one (never measured from now, so an old repository is not
//!   emptied by a policy read out of context);
//! - `within-daily 7d` and its kin: the newest of each period in the span;
//! - `tag a,b`: every snapshot with all of those tags.
//!
//! Each kept snapshot carries its reasons, for `forget --dry-run`.

use std::collections::BTreeMap;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};
use serde::Serialize;

use crate::format::snapshot::{GroupBy, GroupKey, SnapshotId, SnapshotRecord};

/// How many periods a rule keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Count {
    /// This many (0: the rule is off).
    #[default]
    Off,
    /// The newest N periods that hold a snapshot.
    Newest(u32),
    /// Every period.
    Unlimited,
}

impl Count {
    fn is_on(self) -> bool {
        !matches!(self, Count::Off | Count::Newest(0))
    }
}

impl FromStr for Count {
    type Err = String;

    /// `7`, `0` (off) or `unlimited`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Count::Unlimited);
        }
        match s.parse::<u32>() {
            Ok(0) => Ok(Count::Off),
            Ok(n) => Ok(Count::Newest(n)),
            Err(_) => Err(format!("{s:?} is not a count (a number, or unlimited)")),
        }
    }
}

/// A span of calendar time in restic's notation: `1y6m` (a year and six
/// months), `14d`, `36h`, `2y3m4d5h`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Within {
    /// Years.
    pub years: u32,
    /// Months (`m`: restic's letter for months).
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl Within {
    fn is_zero(self) -> bool {
        self == Within::default()
    }

    /// The instant this span before `newest`, on the calendar of `tz`.
    fn before(self, newest: Timestamp, tz: &TimeZone) -> Timestamp {
        let span = Span::new()
            .years(i64::from(self.years))
            .months(i64::from(self.months))
            .days(i64::from(self.days))
            .hours(i64::from(self.hours));
        newest
            .to_zoned(tz.clone())
            .checked_sub(span)
            .map_or(Timestamp::MIN, |z| z.timestamp())
    }
}

impl FromStr for Within {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a span like 1y6m, 14d or 2d12h (y, m, d, h)");
        let mut within = Within::default();
        let mut digits = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: u32 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let field = match c {
                'y' => &mut within.years,
                'm' => &mut within.months,
                'd' => &mut within.days,
                'h' => &mut within.hours,
                _ => return Err(bad()),
            };
            *field = field.checked_add(n).ok_or_else(bad)?;
        }
        if !digits.is_empty() || within.is_zero() {
            return Err(bad());
        }
        Ok(within)
    }
}

impl std::fmt::Display for Within {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// The periods snapshots are counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    const ALL: [Period; 5] = [
        Period::Hour,
        Period::Day,
        Period::Week,
        Period::Month,
        Period::Year,
    ];

    fn name(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    /// Which period `at` falls in: equal for two instants of one period.
    fn of(self, at: &Zoned) -> i64 {
        let (y, m, d, h) = (
            i64::from(at.year()),
            i64::from(at.month()),
            i64::from(at.day()),
            i64::from(at.hour()),
        );
        match self {
            Period::Hour => ((y * 100 + m) * 100 + d) * 100 + h,
            Period::Day => (y * 100 + m) * 100 + d,
            Period::Week => {
                let week = at.date().iso_week_date();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Period::Month => y * 100 + m,
            Period::Year => y,
        }
    }
}

/// A retention policy: the `--keep-*` options of `forget`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// The newest N snapshots.
    pub last: Count,
    /// The newest snapshot of each of the N newest hours, days, weeks,
    /// months and years, in that order.
    pub periods: [Count; 5],
    /// Every snapshot within this span of the newest.
    pub within: Option<Within>,
    /// The newest snapshot of each hour, day, week, month and year within
    /// these spans of the newest.
    pub within_periods: [Option<Within>; 5],
    /// Every snapshot holding all tags of any of these lists.
    pub tags: Vec<Vec<String>>,
}

impl KeepPolicy {
    /// Whether no rule is set: such a policy would remove everything, and
    /// `forget` refuses it.
    pub fn is_empty(&self) -> bool {
        !self.last.is_on()
            && self.periods.iter().all(|c| !c.is_on())
            && self.within.is_none_or(Within::is_zero)
            && self
                .within_periods
                .iter()
                .all(|w| w.is_none_or(Within::is_zero))
            && self.tags.is_empty()
    }

    /// Sets the count of one period by name (`hourly` … `yearly`).
    pub fn set_period(&mut self, name: &str, count: Count) {
        if let Some(i) = Period::ALL.iter().position(|p| p.name() == name) {
            self.periods[i] = count;
        }
    }

    /// Sets the span of one `within-<period>` rule by period name.
    pub fn set_within_period(&mut self, name: &str, within: Within) {
        if let Some(i) = Period::ALL.iter().position(|p| p.name() == name) {
            self.within_periods[i] = Some(within);
        }
    }

    /// Decides about each snapshot of one group, newest first. Periods are
    /// read on the calendar of `tz`; `now` bounds which snapshot counts as
    /// the newest for the `within` rules (one from the future does not).
    pub fn apply(
        &self,
        group: &[(SnapshotId, SnapshotRecord)],
        tz: &TimeZone,
        now: Timestamp,
    ) -> Vec<Decision> {
        let mut order: Vec<&(SnapshotId, SnapshotRecord)> = group.iter().collect();
        order.sort_by(|(a_id, a), (b_id, b)| (b.time_unix_ns, b_id).cmp(&(a.time_unix_ns, a_id)));
        let at = |r: &SnapshotRecord| {
            i128::try_from(r.time_unix_ns)
                .ok()
                .and_then(|ns| Timestamp::from_nanosecond(ns).ok())
                .unwrap_or(Timestamp::UNIX_EPOCH)
        };
        let newest = order
            .iter()
            .map(|(_, r)| at(r))
            .filter(|t| *t <= now)
            .max()
            .unwrap_or(now);
        let mut left: Vec<Count> = std::iter::once(self.last).chain(self.periods).collect();
        let mut last_seen: Vec<Option<i64>> = vec![None; left.len()];
        let mut last_within: [Option<i64>; 5] = [None; 5];
        let oldest = order.len().saturating_sub(1);
        let mut out = Vec::with_capacity(order.len());
        for (nr, (id, record)) in order.into_iter().enumerate() {
            let when = at(record).to_zoned(tz.clone());
            let mut reasons = Vec::new();
            for tags in &self.tags {
                if tags.iter().all(|t| record.tags.contains(t)) {
                    reasons.push(format!("has tags {}", tags.join(",")));
                }
            }
            if let Some(w) = self.within.filter(|w| !w.is_zero()) {
                if when.timestamp() > w.before(newest, tz) {
                    reasons.push(format!("within {w}"));
                }
            }
            for (i, count) in left.iter_mut().enumerate() {
                if !count.is_on() {
                    continue;
                }
                // Rule 0 is `last`: every snapshot is a period of its own.
                let period = if i == 0 {
                    i64::try_from(nr).unwrap_or(i64::MAX)
                } else {
                    Period::ALL[i - 1].of(&when)
                };
                if last_seen[i] != Some(period) || nr == oldest {
                    last_seen[i] = Some(period);
                    if let Count::Newest(n) = count {
                        *n -= 1;
                    }
                    reasons.push(if i == 0 {
                        "last snapshot".to_string()
                    } else {
                        format!("{} snapshot", Period::ALL[i - 1].name())
                    });
                }
            }
            for (i, within) in self.within_periods.iter().enumerate() {
                let Some(w) = within.filter(|w| !w.is_zero()) else {
                    continue;
                };
                let period = Period::ALL[i].of(&when);
                if when.timestamp() > w.before(newest, tz) && last_within[i] != Some(period) {
                    last_within[i] = Some(period);
                    reasons.push(format!("{} within {w}", Period::ALL[i].name()));
                }
            }
            out.push(Decision {
                id: *id,
                time: record.time.clone(),
                keep: !reasons.is_empty(),
                reasons,
            });
        }
        out
    }
}

impl std::fmt::Display for KeepPolicy {
    /// `keep 2 last, 7 daily and all snapshots within 1m of the newest`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rules = Vec::new();
        let names = std::iter::once("last").chain(Period::ALL.iter().map(|p| p.name()));
        for (count, name) in std::iter::once(self.last).chain(self.periods).zip(names) {
            match count {
                Count::Newest(n) if n > 0 => rules.push(format!("{n} {name}")),
                Count::Unlimited => rules.push(format!("all {name}")),
                _ => {}
            }
        }
        for (within, period) in self.within_periods.iter().zip(Period::ALL) {
            if let Some(w) = within.filter(|w| !w.is_zero()) {
                rules.push(format!("{} snapshots within {w}", period.name()));
            }
        }
        for tags in &self.tags {
            rules.push(format!("all snapshots tagged {}", tags.join(",")));
        }
        if let Some(w) = self.within.filter(|w| !w.is_zero()) {
            rules.push(format!("all snapshots within {w} of the newest"));
        }
        if rules.is_empty() {
            return f.write_str("keep everything (no rule given)");
        }
        let last = rules.pop().unwrap_or_default();
        if rules.is_empty() {
            write!(f, "keep {last}")
        } else {
            write!(f, "keep {} and {last}", rules.join(", "))
        }
    }
}

/// What a policy decided about one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot.
    pub id: SnapshotId,
    /// Its time, RFC 3339.
    pub time: String,
    /// Whether it stays.
    pub keep: bool,
    /// Why it stays (empty when it goes).
    pub reasons: Vec<String>,
}

/// One group's decisions, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupDecisions {
    /// What the group's snapshots share.
    pub group: GroupKey,
    /// A decision per snapshot, newest first.
    pub snapshots: Vec<Decision>,
}

/// Splits `snapshots` into groups and applies `policy` to each, in the
/// order of their keys.
pub fn plan(
    snapshots: &[(SnapshotId, SnapshotRecord)],
    group_by: GroupBy,
    policy: &KeepPolicy,
    tz: &TimeZone,
    now: Timestamp,
) -> Vec<GroupDecisions> {
    let mut groups: BTreeMap<GroupKey, Vec<(SnapshotId, SnapshotRecord)>> = BTreeMap::new();
    for (id, record) in snapshots {
        groups
            .entry(group_by.key(record))
            .or_default()
            .push((*id, record.clone()));
    }
    groups
        .into_iter()
        .map(|(group, members)| GroupDecisions {
            snapshots: policy.apply(&members, tz, now),
            group,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::record::RECORD_VERSION;
    use crate::format::snapshot::IngestSummary;
    use crate::id::ChunkId;

    /// A snapshot at `when` (UTC, `YYYY-MM-DD HH:MM`), named by its time.
    fn snap(when: &str, tags: &[&str]) -> (SnapshotId, SnapshotRecord) {
        let ts: Timestamp = format!("{}:00Z", when.replace(' ', "T")).parse().unwrap();
        let record = SnapshotRecord {
            version: RECORD_VERSION,
            time: when.to_string(),
            time_unix_ns: ts.as_nanosecond() as u128,
            hostname: "h".into(),
            username: "u".into(),
            paths: vec!["/data".into()],
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
            parent: None,
            tree: ChunkId::of(b""),
            root: None,
            summary: IngestSummary::default(),
            prev: None,
        };
        (SnapshotId::of(when.as_bytes()), record)
    }

    /// The times the policy keeps, newest first, with the clock fixed a
    /// day after the newest snapshot.
    fn kept(snaps: &[(SnapshotId, SnapshotRecord)], policy: &KeepPolicy) -> Vec<String> {
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        policy
            .apply(snaps, &TimeZone::UTC, now)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.time)
            .collect()
    }

    /// Two snapshots a day (03:00 and 15:00) from 2026-01-01 through
    /// 2026-03-31, and one on each of four earlier year ends.
    fn history() -> Vec<(SnapshotId, SnapshotRecord)> {
        let mut out = Vec::new();
        for year in 2022..=2025 {
            out.push(snap(&format!("{year}-12-31 12:00"), &[]));
        }
        let first: jiff::civil::Date = "2026-01-01".parse().unwrap();
        for day in 0..90 {
            let date = first.checked_add(Span::new().days(day)).unwrap();
            for hour in ["03:00", "15:00"] {
                out.push(snap(&format!("{date} {hour}"), &[]));
            }
        }
        out
    }

    fn policy(f: impl FnOnce(&mut KeepPolicy)) -> KeepPolicy {
        let mut p = KeepPolicy::default();
        f(&mut p);
        p
    }

    #[test]
    fn the_table_of_survivors() {
        let h = history();
        assert_eq!(h.len(), 184);
        let cases: Vec<(KeepPolicy, Vec<&str>)> = vec![
            (
                policy(|p| p.last = Count::Newest(3)),
                vec!["2026-03-31 15:00", "2026-03-31 03:00", "2026-03-30 15:00"],
            ),
            (
                policy(|p| p.set_period("daily", Count::Newest(3))),
                vec!["2026-03-31 15:00", "2026-03-30 15:00", "2026-03-29 15:00"],
            ),
            (
                // ISO weeks: 2026-03-30 is a Monday, so the newest week
                // holds two days; the week before ends Sunday the 29th.
                policy(|p| p.set_period("weekly", Count::Newest(3))),
                vec!["2026-03-31 15:00", "2026-03-29 15:00", "2026-03-22 15:00"],
            ),
            (
                policy(|p| p.set_period("monthly", Count::Newest(2))),
                vec!["2026-03-31 15:00", "2026-02-28 15:00"],
            ),
            (
                // Five years hold snapshots; four are asked for.
                policy(|p| p.set_period("yearly", Count::Newest(4))),
                vec![
                    "2026-03-31 15:00",
                    "2025-12-31 12:00",
                    "2024-12-31 12:00",
                    "2023-12-31 12:00",
                ],
            ),
            (
                // More years asked for than exist: every year's newest, and
                // the oldest snapshot (already one of them).
                policy(|p| p.set_period("yearly", Count::Newest(10))),
                vec![
                    "2026-03-31 15:00",
                    "2025-12-31 12:00",
                    "2024-12-31 12:00",
                    "2023-12-31 12:00",
                    "2022-12-31 12:00",
                ],
            ),
            (
                // Within is measured from the newest snapshot, not the clock.
                policy(|p| p.within = Some("1d12h".parse().unwrap())),
                vec!["2026-03-31 15:00", "2026-03-31 03:00", "2026-03-30 15:00"],
            ),
            (
                policy(|p| {
                    p.last = Count::Newest(1);
                    p.set_period("monthly", Count::Newest(1));
                    p.set_period("yearly", Count::Newest(2));
                }),
                vec!["2026-03-31 15:00", "2025-12-31 12:00"],
            ),
            (
                // Two months before the newest is 2026-01-31 15:00 exactly:
                // not within, so January has no snapshot in the span.
                policy(|p| p.set_within_period("monthly", "2m".parse().unwrap())),
                vec!["2026-03-31 15:00", "2026-02-28 15:00"],
            ),
            (
                policy(|p| p.set_within_period("monthly", "2m1h".parse().unwrap())),
                vec!["2026-03-31 15:00", "2026-02-28 15:00", "2026-01-31 15:00"],
            ),
        ];
        for (policy, expect) in cases {
            assert_eq!(kept(&h, &policy), expect, "policy: {policy}");
        }
    }

    #[test]
    fn leftover_counts_keep_the_oldest_snapshot() {
        let h = vec![
            snap("2026-05-02 10:00", &[]),
            snap("2026-05-02 09:00", &[]),
            snap("2026-05-01 08:00", &[]),
            snap("2026-05-01 07:00", &[]),
        ];
        // Three days asked for, two exist: the oldest snapshot stays too.
        let p = policy(|p| p.set_period("daily", Count::Newest(3)));
        assert_eq!(
            kept(&h, &p),
            ["2026-05-02 10:00", "2026-05-01 08:00", "2026-05-01 07:00"]
        );
        // Unlimited keeps every day, and the oldest.
        let p = policy(|p| p.set_period("daily", Count::Unlimited));
        assert_eq!(kept(&h, &p).len(), 3);
    }

    #[test]
    fn tags_keep_without_counting_and_reasons_are_given() {
        let h = vec![
            snap("2026-05-03 10:00", &[]),
            snap("2026-05-02 10:00", &["release", "v1"]),
            snap("2026-05-01 10:00", &["release"]),
        ];
        let p = policy(|p| {
            p.last = Count::Newest(1);
            p.tags = vec![vec!["release".into(), "v1".into()]];
        });
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let d = p.apply(&h, &TimeZone::UTC, now);
        assert_eq!(d[0].reasons, ["last snapshot"]);
        assert_eq!(d[1].reasons, ["has tags release,v1"]);
        assert!(!d[2].keep && d[2].reasons.is_empty());
        assert_eq!(
            p.to_string(),
            "keep 1 last and all snapshots tagged release,v1"
        );
    }

    #[test]
    fn a_snapshot_from_the_future_does_not_move_within() {
        let h = vec![
            snap("2030-01-01 00:00", &[]),
            snap("2026-05-02 10:00", &[]),
            snap("2026-04-01 10:00", &[]),
        ];
        let p = policy(|p| p.within = Some("7d".parse().unwrap()));
        // "Now" is 2027: the newest snapshot not after it is 2026-05-02.
        assert_eq!(kept(&h, &p), ["2030-01-01 00:00", "2026-05-02 10:00"]);
    }

    #[test]
    fn local_time_decides_the_day() {
        // 00:30 and 23:30 UTC fall on two days in UTC, on one (19:30 and
        // 18:30 of the 1st) in UTC-5.
        let h = vec![
            snap("2026-05-02 00:30", &[]),
            snap("2026-05-01 23:30", &[]),
            snap("2026-04-30 12:00", &[]),
        ];
        let p = policy(|p| p.set_period("daily", Count::Newest(2)));
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let kept_in = |tz: &TimeZone| -> Vec<String> {
            p.apply(&h, tz, now)
                .into_iter()
                .filter(|d| d.keep)
                .map(|d| d.time)
                .collect()
        };
        assert_eq!(
            kept_in(&TimeZone::UTC),
            ["2026-05-02 00:30", "2026-05-01 23:30"]
        );
        let minus5 = TimeZone::fixed(jiff::tz::offset(-5));
        assert_eq!(kept_in(&minus5), ["2026-05-02 00:30", "2026-04-30 12:00"]);
    }

    #[test]
    fn spans_and_counts_parse_as_restic_writes_them() {
        let w: Within = "1y6m2d3h".parse().unwrap();
        assert_eq!((w.years, w.months, w.days, w.hours), (1, 6, 2, 3));
        assert_eq!(w.to_string(), "1y6m2d3h");
        for bad in ["", "5", "1w", "y", "0d", "-1d"] {
            assert!(bad.parse::<Within>().is_err(), "{bad:?}");
        }
        assert_eq!("unlimited".parse::<Count>(), Ok(Count::Unlimited));
        assert_eq!("0".parse::<Count>(), Ok(Count::Off));
        assert!("-1".parse::<Count>().is_err());
        assert!(KeepPolicy::default().is_empty());
        assert!(!policy(|p| p.last = Count::Newest(1)).is_empty());
    }
}

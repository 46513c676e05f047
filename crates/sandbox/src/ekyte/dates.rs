//! eKyte's wall-clock dates: stored as UTC instants, served and accepted without a zone.
//!
//! eKyte serves `2022-08-09T06:01:15.9186831` and `2022-08-09T00:00:00`: ISO-8601 with no
//! offset (API.md §3.1), the way .NET prints a `DateTime` — seconds always, then up to seven
//! fractional digits with trailing zeros dropped. The simulator reads such strings as the
//! company's local time and keeps the instant in UTC, truncated to .NET's 100 ns tick, so a
//! value served and sent back unchanged names the same instant.
//!
//! Guarantee: `parse_local(&format_local(t, tz), tz) == t` for every `t` the store holds,
//! except inside the repeated hour when a zone turns its clocks back: a zone-less string cannot
//! tell the two occurrences apart (neither can eKyte's), and the earlier one is taken.
//! `America/Sao_Paulo` has had no DST since 2019.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

pub use super::config::DateOnlyMeans;

/// The company timezone eKyte presumably uses when none is configured (API.md §3.1: "presumably
/// America/Sao_Paulo").
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::America::Sao_Paulo;

/// Drop everything below .NET's 100 ns tick, so stored instants survive a round trip.
pub fn to_tick(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.timestamp_subsec_nanos();
    t - Duration::nanoseconds(i64::from(nanos % 100))
}

/// A UTC instant as eKyte serves it: the company's wall-clock time, no zone.
pub fn format_local(t: DateTime<Utc>, tz: Tz) -> String {
    let local = t.with_timezone(&tz).naive_local();
    let mut out = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    let ticks = local.and_utc().timestamp_subsec_nanos() / 100;
    if ticks > 0 {
        let digits = format!("{ticks:07}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// `Some(format_local(..))`, for optional fields.
pub fn format_opt(t: Option<DateTime<Utc>>, tz: Tz) -> Option<String> {
    t.map(|t| format_local(t, tz))
}

/// A parsed input date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedDate {
    pub instant: DateTime<Utc>,
    /// Only a date was given (`2024-05-10`): the caller may widen it to the whole day.
    pub date_only: bool,
    /// The string carried `Z` or an offset. eKyte's own values never do; the simulator accepts
    /// it (converting to the instant) but reports it so tests can catch a client that sends it.
    pub zoned: bool,
}

/// Why a date string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date {0:?}")]
pub struct BadDate(pub String);

/// Read a date as eKyte accepts it: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.f…]]` (a space instead
/// of `T` too) in the company's timezone, or the same with `Z`/`±HH:MM`.
pub fn parse_local(input: &str, tz: Tz) -> Result<ParsedDate, BadDate> {
    let s = input.trim();
    let bad = || BadDate(input.to_owned());
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(ParsedDate {
            instant: local_to_utc(d.and_time(NaiveTime::MIN), tz),
            date_only: true,
            zoned: false,
        });
    }
    let (body, offset) = split_offset(s);
    let naive = parse_naive(body).ok_or_else(bad)?;
    let instant = match offset {
        None => local_to_utc(naive, tz),
        Some(off) => {
            let fixed = parse_offset(off).ok_or_else(bad)?;
            match fixed.from_local_datetime(&naive) {
                LocalResult::Single(t) => t.with_timezone(&Utc),
                _ => return Err(bad()),
            }
        }
    };
    Ok(ParsedDate {
        instant: to_tick(instant),
        date_only: false,
        zoned: offset.is_some(),
    })
}

/// A filter bound (`createdFrom`, `dueTo`, …). A date-only upper bound is the day's midnight
/// or covers the whole day, as `date_only` says.
pub fn parse_bound(
    input: &str,
    tz: Tz,
    upper: bool,
    date_only: DateOnlyMeans,
) -> Result<DateTime<Utc>, BadDate> {
    let p = parse_local(input, tz)?;
    if upper && p.date_only && date_only == DateOnlyMeans::EndOfDay {
        let day = p.instant.with_timezone(&tz).date_naive();
        let next = day.succ_opt().ok_or_else(|| BadDate(input.to_owned()))?;
        return Ok(local_to_utc(next.and_time(NaiveTime::MIN), tz) - Duration::nanoseconds(100));
    }
    Ok(p.instant)
}

/// Wall-clock time in `tz` to an instant. An ambiguous time (clocks turned back) takes the
/// earlier instant; a time that does not exist (clocks turned forward) moves past the gap.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            let later = naive + Duration::hours(1);
            match tz.from_local_datetime(&later) {
                LocalResult::Single(t) => t.with_timezone(&Utc),
                LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
                LocalResult::None => naive.and_utc(),
            }
        }
    }
}

fn split_offset(s: &str) -> (&str, Option<&str>) {
    if let Some(body) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        return (body, Some("+00:00"));
    }
    // An offset starts after the time part: look for a sign past the date's own dashes.
    if let Some(t_pos) = s.find(['T', ' '])
        && let Some(rel) = s[t_pos..].rfind(['+', '-'])
    {
        let at = t_pos + rel;
        return (&s[..at], Some(&s[at..]));
    }
    (s, None)
}

fn parse_offset(off: &str) -> Option<chrono::FixedOffset> {
    let sign = match off.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    let s = s.replacen(' ', "T", 1);
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s.as_str(), None),
    };
    let base = NaiveDateTime::parse_from_str(main, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(main, "%Y-%m-%dT%H:%M"))
        .ok()?;
    let nanos = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            // Beyond nine digits nothing is representable; .NET itself keeps seven.
            let mut digits: String = f.chars().take(9).collect();
            while digits.len() < 9 {
                digits.push('0');
            }
            digits.parse::<i64>().ok()?
        }
        Some(_) => return None,
    };
    Some(base + Duration::nanoseconds(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn serves_dotnet_style_local_time() {
        let tz = DEFAULT_TIMEZONE;
        assert_eq!(
            format_local(utc("2022-08-09T03:00:00Z"), tz),
            "2022-08-09T00:00:00"
        );
        assert_eq!(
            format_local(utc("2022-08-09T09:01:15.9186831Z"), tz),
            "2022-08-09T06:01:15.9186831"
        );
        assert_eq!(
            format_local(utc("2022-08-09T09:01:15.5Z"), tz),
            "2022-08-09T06:01:15.5"
        );
    }

    #[test]
    fn local_strings_round_trip() {
        let tz = chrono_tz::Europe::Berlin;
        for s in [
            "2024-01-15T10:30:00",
            "2024-07-15T23:59:59.9999999",
            "2024-03-31T01:00:00.12",
        ] {
            let p = parse_local(s, tz).unwrap();
            assert!(!p.zoned && !p.date_only);
            assert_eq!(format_local(p.instant, tz), s);
        }
        let t = to_tick(utc("2024-10-27T00:30:00.123456789Z"));
        assert_eq!(
            parse_local(&format_local(t, tz), tz).unwrap().instant,
            t,
            "every stored instant survives"
        );
    }

    #[test]
    fn accepts_dates_offsets_and_minutes() {
        let tz = DEFAULT_TIMEZONE;
        let d = parse_local("2024-05-10", tz).unwrap();
        assert!(d.date_only);
        assert_eq!(d.instant, utc("2024-05-10T03:00:00Z"));
        let z = parse_local("2024-05-10T12:00:00Z", tz).unwrap();
        assert!(z.zoned);
        assert_eq!(z.instant, utc("2024-05-10T12:00:00Z"));
        let o = parse_local("2024-05-10T12:00:00-03:00", tz).unwrap();
        assert_eq!(o.instant, utc("2024-05-10T15:00:00Z"));
        let m = parse_local("2024-05-10 08:15", tz).unwrap();
        assert_eq!(m.instant, utc("2024-05-10T11:15:00Z"));
        assert!(parse_local("10/05/2024", tz).is_err());
        assert!(parse_local("", tz).is_err());
    }

    #[test]
    fn a_date_only_upper_bound_is_midnight_or_the_whole_day_as_set() {
        let tz = DEFAULT_TIMEZONE;
        let whole = DateOnlyMeans::EndOfDay;
        let end = parse_bound("2024-05-10", tz, true, whole).unwrap();
        assert_eq!(format_local(end, tz), "2024-05-10T23:59:59.9999999");
        let start = parse_bound("2024-05-10", tz, false, whole).unwrap();
        assert_eq!(format_local(start, tz), "2024-05-10T00:00:00");
        let midnight = parse_bound("2024-05-10", tz, true, DateOnlyMeans::Midnight).unwrap();
        assert_eq!(format_local(midnight, tz), "2024-05-10T00:00:00");
        // A full timestamp means itself under either reading.
        for means in [DateOnlyMeans::Midnight, whole] {
            let t = parse_bound("2024-05-10T23:59:59", tz, true, means).unwrap();
            assert_eq!(format_local(t, tz), "2024-05-10T23:59:59");
        }
    }
}

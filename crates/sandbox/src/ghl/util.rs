//! Identifiers, timestamps and small parsing helpers shared by the GHL simulator's modules.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use rand::Rng;
use rand::distributions::Alphanumeric;

/// A GHL-style record id: 20 alphanumeric characters (e.g. `seD4PfOuKoVMLkEZqohJ`, [C2]
/// examples).
pub fn ghl_id() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// A MongoDB-style 24-hex id, as businesses carry (`63771dcac1116f0e21de8e12`, [B2]).
pub fn object_id() -> String {
    let secs = u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX);
    let tail: [u8; 8] = rand::thread_rng().r#gen();
    let mut out = format!("{secs:08x}");
    for b in tail {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Now, truncated to milliseconds: every timestamp the simulator serves round-trips through
/// ISO strings and epoch-ms search cursors without loss.
pub fn now_ms() -> DateTime<Utc> {
    from_epoch_ms(Utc::now().timestamp_millis())
}

pub fn from_epoch_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// `2021-07-02T05:18:26.704Z`, the format of `dateAdded`/`dateUpdated` in [C2] examples.
pub fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The next `dateUpdated` of a record: now, but always later than the previous value, so a
/// client that syncs "dateUpdated greater than my checkpoint" never misses a write.
pub fn next_update(previous: &DateTime<Utc>) -> DateTime<Utc> {
    let now = now_ms();
    if now > *previous {
        now
    } else {
        *previous + chrono::Duration::milliseconds(1)
    }
}

/// Parse an RFC 3339 timestamp: date, time and zone (`2024-01-02T03:04:05.678Z`, or an offset).
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| from_epoch_ms(t.timestamp_millis()))
}

/// Parse an ISO 8601 / RFC 3339 timestamp (with or without zone, with or without time).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(from_epoch_ms(t.timestamp_millis()));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(from_epoch_ms(t.and_utc().timestamp_millis()));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| from_epoch_ms(t.and_utc().timestamp_millis()))
}

/// Parse `dateOfBirth` in the formats `CreateContactDto` lists: `YYYY/MM/DD, MM/DD/YYYY,
/// YYYY-MM-DD, MM-DD-YYYY, YYYY.MM.DD, MM.DD.YYYY, YYYY_MM_DD, MM_DD_YYYY` ([C2]), plus a full
/// ISO timestamp (what GHL itself returns).
pub fn parse_birth_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    for sep in ['/', '-', '.', '_'] {
        for order in ["%Y{}%m{}%d", "%m{}%d{}%Y"] {
            let f = order.replace("{}", &sep.to_string());
            if let Ok(d) = NaiveDate::parse_from_str(s, &f) {
                return Some(d);
            }
        }
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.date_naive())
}

/// Phone as the simulator stores and compares it: formatting characters removed, a leading
/// `+` kept (`+1 888-888-8888` → `+18888888888`). Country codes are not guessed.
pub fn normalise_phone(s: &str) -> String {
    let s = s.trim();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_digit() || (c == '+' && i == 0) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_ghl_ids() {
        let id = ghl_id();
        assert_eq!(id.len(), 20);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
        let b = object_id();
        assert_eq!(b.len(), 24);
        assert!(b.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn birth_dates_in_every_documented_format() {
        let want = NaiveDate::from_ymd_opt(1990, 9, 25);
        for s in [
            "1990/09/25",
            "09/25/1990",
            "1990-09-25",
            "09-25-1990",
            "1990.09.25",
            "09.25.1990",
            "1990_09_25",
            "09_25_1990",
            "1990-09-25T00:00:00.000Z",
        ] {
            assert_eq!(parse_birth_date(s), want, "{s}");
        }
        assert_eq!(parse_birth_date("25th of September"), None);
    }

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        let t = parse_datetime("2021-07-02T05:18:26.704Z").expect("valid");
        assert_eq!(iso(&t), "2021-07-02T05:18:26.704Z");
        assert_eq!(
            parse_datetime("2021-07-02T07:18:26.704+02:00"),
            Some(t),
            "offsets are normalised to UTC"
        );
        assert!(next_update(&t) > t);
        let future = now_ms() + chrono::Duration::seconds(60);
        assert_eq!(
            next_update(&future),
            future + chrono::Duration::milliseconds(1)
        );
    }

    #[test]
    fn phones_lose_formatting_only() {
        assert_eq!(normalise_phone("+1 888-888-8888"), "+18888888888");
        assert_eq!(normalise_phone("(555) 010.2000"), "5550102000");
    }
}

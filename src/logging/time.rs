//! UTC calendar time for the log: the `time` of every line (RFC 3339 with milliseconds) and
//! the timestamp in rotated file names. Written out here, without chrono or humantime's
//! formatter, because neither may panic in a logging path: humantime's RFC 3339 Display
//! panics on a time before 1970 ("all times should be after the epoch") and fails after
//! 9999, and a clock can be set anywhere. Times outside 0000..=9999 are clamped to its ends.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: i64 = 86_400;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z, in seconds from the Unix epoch.
const FIRST_SECOND: i64 = -62_167_219_200;
const LAST_SECOND: i64 = 253_402_300_799;

/// A moment in UTC, broken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

/// Whole seconds from the epoch (floored, so negative before it) and the milliseconds past them.
fn epoch_seconds(time: SystemTime) -> (i64, u32) {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => (i64::try_from(since.as_secs()).unwrap_or(i64::MAX), since.subsec_millis()),
        Err(before) => {
            let before = before.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-secs, 0),
                nanos => (-secs - 1, (1_000_000_000 - nanos) / 1_000_000),
            }
        }
    }
}

fn utc(time: SystemTime) -> Utc {
    let (secs, millis) = match epoch_seconds(time) {
        (secs, _) if secs < FIRST_SECOND => (FIRST_SECOND, 0),
        (secs, _) if secs > LAST_SECOND => (LAST_SECOND, 999),
        in_range => in_range,
    };
    let (year, month, day) = civil_from_days(secs.div_euclid(SECONDS_PER_DAY));
    // In 0..86_400: the casts below cannot truncate.
    let second_of_day = secs.rem_euclid(SECONDS_PER_DAY) as u32;
    Utc {
        year,
        month,
        day,
        hour: second_of_day / 3600,
        minute: second_of_day / 60 % 60,
        second: second_of_day % 60,
        millis,
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact for every day in range).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March is 0
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// `2024-05-01T10:00:00.123Z`, as logrus and lumberjack write it.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let t = utc(time);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    );
    out
}

/// `2024-05-01T10-00-00`: chrono's `%Y-%m-%dT%H-%M-%S`, the suffix format damon gave file-rotate
/// (no `:`, which Windows forbids in file names).
pub fn rotated_suffix(time: SystemTime) -> String {
    let t = utc(time);
    let mut out = String::with_capacity(19);
    let _ = write!(out, "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second);
    out
}

/// Whether `s` has the shape [`rotated_suffix`] writes (digits where it puts digits).
pub fn is_rotated_suffix(s: &str) -> bool {
    const SHAPE: &[u8; 19] = b"0000-00-00T00-00-00";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE.iter()).all(|(c, &shape)| if shape == b'0' { c.is_ascii_digit() } else { c == shape })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: i64, millis: u32) -> SystemTime {
        let offset = Duration::from_secs(secs.unsigned_abs());
        let base = if secs >= 0 { UNIX_EPOCH + offset } else { UNIX_EPOCH - offset };
        base + Duration::from_millis(u64::from(millis))
    }

    #[test]
    fn known_moments() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339_millis(at(1_714_557_600, 123)), "2024-05-01T10:00:00.123Z");
        assert_eq!(rotated_suffix(at(1_714_557_600, 999)), "2024-05-01T10-00-00");
        assert_eq!(rfc3339_millis(at(4_107_542_399, 0)), "2100-02-28T23:59:59.000Z");
        assert_eq!(rfc3339_millis(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn before_the_epoch_and_beyond_9999_neither_panic_nor_lie_much() {
        // 1969-12-31T23:59:59.750Z: a quarter second before the epoch.
        assert_eq!(rfc3339_millis(UNIX_EPOCH - Duration::from_millis(250)), "1969-12-31T23:59:59.750Z");
        assert_eq!(rfc3339_millis(at(-86_400 * 365, 0)), "1969-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(at(LAST_SECOND + 10, 0)), "9999-12-31T23:59:59.999Z");
        // Windows' SystemTime starts in 1601: earlier moments exist only elsewhere.
        let before = |secs: u64| UNIX_EPOCH.checked_sub(Duration::from_secs(secs));
        if let Some(time) = before(FIRST_SECOND.unsigned_abs() + 10) {
            assert_eq!(rfc3339_millis(time), "0000-01-01T00:00:00.000Z");
        }
        if let Some(time) = before(i64::MAX.unsigned_abs() / 4) {
            assert_eq!(rotated_suffix(time), "0000-01-01T00-00-00");
        }
    }

    #[test]
    fn agrees_with_humantime_where_humantime_works() {
        // Every 7919 s plus a few ms, over 1970..2100: days, months, leap years, centuries.
        let mut secs: i64 = 0;
        while secs < 4_102_444_800 {
            let time = at(secs, (secs % 1000) as u32);
            assert_eq!(rfc3339_millis(time), humantime::format_rfc3339_millis(time).to_string());
            secs += 7919 * 97;
        }
    }

    #[test]
    fn suffix_shape() {
        assert!(is_rotated_suffix("2024-05-01T10-00-00"));
        assert!(is_rotated_suffix(&rotated_suffix(SystemTime::now())));
        for bad in ["2024-05-01T10-00-0", "2024-05-01T10:00:00", "2024-05-01T10-00-0x", "2024-05-01T10-00-001", ""] {
            assert!(!is_rotated_suffix(bad), "{}", bad);
        }
    }
}

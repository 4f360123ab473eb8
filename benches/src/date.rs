//! UTC timestamps for result files, without a date-time dependency.

/// `unix_time` (seconds) as `YYYY-MM-DDTHH:MM:SSZ`, proleptic Gregorian (Howard Hinnant's
/// civil-from-days).
pub fn iso_date(unix_time: u64) -> String {
    let days = (unix_time / 86_400) as i64;
    let secs = unix_time % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_and_proleptic_gregorian() {
        assert_eq!(iso_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_date(1_763_683_200 + 3_661), "2025-11-21T01:01:01Z");
        assert_eq!(iso_date(951_782_400), "2000-02-29T00:00:00Z");
    }
}

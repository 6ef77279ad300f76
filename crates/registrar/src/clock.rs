//! Wall-clock helpers. Job timestamps are epoch milliseconds in UTC.

use time::{Date, OffsetDateTime};

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Today's date in UTC, the date an enrollment is recorded with.
pub fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

/// Formats epoch milliseconds as RFC 3339 in UTC.
pub fn rfc3339_from_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn now_rfc3339() -> String {
    rfc3339_from_ms(now_ms())
}

//! How a schema says to read the timestamps real files hold: local times without an offset, read
//! in a named time zone (`timezone = "UTC"`, any IANA name), and numbers of seconds or
//! milliseconds since the epoch (`epoch = "s" | "ms"`). Without either, only RFC 3339 (or a plain
//! date, midnight UTC) is a timestamp, as before: a local time is refused with a hint naming them.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
pub use chrono_tz::Tz;

use crate::value::{ValueError, parse_timestamp};

/// What a number stands for in a timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    Seconds,
    Milliseconds,
}

impl Epoch {
    pub fn from_name(name: &str) -> Option<Epoch> {
        match name {
            "s" => Some(Epoch::Seconds),
            "ms" => Some(Epoch::Milliseconds),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Epoch::Seconds => "s",
            Epoch::Milliseconds => "ms",
        }
    }

    fn micros_per_unit(self) -> i64 {
        match self {
            Epoch::Seconds => 1_000_000,
            Epoch::Milliseconds => 1_000,
        }
    }
}

/// How one timestamp field reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TimestampInput {
    pub timezone: Option<Tz>,
    pub epoch: Option<Epoch>,
}

/// Local date-time layouts a file may use, most common first.
const LOCAL_LAYOUTS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

impl TimestampInput {
    /// Whether anything differs from the default reading.
    pub fn is_default(&self) -> bool {
        self.timezone.is_none() && self.epoch.is_none()
    }

    /// Reads text: RFC 3339 always; a local time with `timezone`; digits with `epoch`.
    pub fn read_text(&self, text: &str) -> Result<i64, ValueError> {
        if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
            return Ok(instant.timestamp_micros());
        }
        if let Some(epoch) = self.epoch
            && let Ok(n) = text.trim().parse::<i64>()
        {
            return self.epoch_micros(epoch, n);
        }
        let local = LOCAL_LAYOUTS
            .iter()
            .find_map(|layout| NaiveDateTime::parse_from_str(text, layout).ok());
        match (local, self.timezone) {
            (Some(local), Some(zone)) => in_zone(local, zone, text),
            (None, Some(zone)) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                Ok(date) => in_zone(date.and_time(chrono::NaiveTime::MIN), zone, text),
                Err(_) => Err(self.not_a_timestamp(text)),
            },
            (Some(_), None) => Err(ValueError::new(
                "type",
                format!(
                    "`{text}` has no UTC offset: write one (`Z`, `+02:00`), or declare how to read local times with `timezone = \"UTC\"` (or an IANA zone such as \"America/Sao_Paulo\") on the field or dataset"
                ),
            )),
            (None, None) => parse_timestamp(text).ok_or_else(|| self.not_a_timestamp(text)),
        }
    }

    /// Reads a JSON number: a count of `epoch` units, refused without `epoch`.
    pub fn read_number(&self, number: &serde_json::Number) -> Result<i64, ValueError> {
        let Some(epoch) = self.epoch else {
            return Err(ValueError::new(
                "type",
                format!(
                    "expected an RFC 3339 timestamp or a date as YYYY-MM-DD, found the number {number}; to read numbers as time since 1970, declare `epoch = \"s\"` or `epoch = \"ms\"` on the field"
                ),
            ));
        };
        match number.as_i64() {
            Some(n) => self.epoch_micros(epoch, n),
            None => Err(ValueError::new(
                "type",
                format!(
                    "expected a whole number of {} since 1970, found {number}",
                    unit(epoch)
                ),
            )),
        }
    }

    fn epoch_micros(&self, epoch: Epoch, n: i64) -> Result<i64, ValueError> {
        n.checked_mul(epoch.micros_per_unit())
            .filter(|micros| DateTime::from_timestamp_micros(*micros).is_some())
            .ok_or_else(|| {
                ValueError::new(
                    "overflow",
                    format!(
                        "{n} {} since 1970 is out of the timestamp range",
                        unit(epoch)
                    ),
                )
            })
    }

    fn not_a_timestamp(&self, text: &str) -> ValueError {
        let mut what = String::from("an RFC 3339 timestamp or a date as YYYY-MM-DD");
        if let Some(zone) = self.timezone {
            what.push_str(&format!(
                ", or a local time in {zone} like 2024-01-31 12:00:00"
            ));
        }
        if let Some(epoch) = self.epoch {
            what.push_str(&format!(", or whole {} since 1970", unit(epoch)));
        }
        ValueError::new("type", format!("expected {what}, found `{text}`"))
    }
}

fn unit(epoch: Epoch) -> &'static str {
    match epoch {
        Epoch::Seconds => "seconds",
        Epoch::Milliseconds => "milliseconds",
    }
}

/// A local time in `zone` as epoch microseconds. In the hour a clock is set back the earlier
/// instant is taken (as PostgreSQL does); a time skipped when it is set forward is refused.
fn in_zone(local: NaiveDateTime, zone: Tz, text: &str) -> Result<i64, ValueError> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.timestamp_micros()),
        LocalResult::None => Err(ValueError::new(
            "type",
            format!("`{text}` does not exist in {zone} (skipped when clocks were set forward)"),
        )),
    }
}

/// A time zone by IANA name (`UTC`, `America/Sao_Paulo`).
pub fn zone_named(name: &str) -> Option<Tz> {
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> i64 {
        parse_timestamp(text).unwrap()
    }

    #[test]
    fn without_options_a_local_time_is_refused_with_the_hint() {
        let default = TimestampInput::default();
        assert_eq!(
            default.read_text("2024-01-31T12:00:00Z"),
            Ok(micros("2024-01-31T12:00:00Z"))
        );
        assert_eq!(
            default.read_text("2024-01-31"),
            Ok(micros("2024-01-31T00:00:00Z"))
        );
        let refused = default.read_text("2024-01-31 12:00:00").unwrap_err();
        assert!(
            refused.message.contains("timezone = \"UTC\""),
            "{refused:?}"
        );
        let number = default
            .read_number(&serde_json::Number::from(1))
            .unwrap_err();
        assert!(number.message.contains("epoch = \"s\""), "{number:?}");
    }

    #[test]
    fn local_times_are_read_in_the_zone() {
        let sao_paulo = TimestampInput {
            timezone: zone_named("America/Sao_Paulo"),
            epoch: None,
        };
        assert_eq!(
            sao_paulo.read_text("2024-01-31 12:00:00"),
            Ok(micros("2024-01-31T15:00:00Z"))
        );
        assert_eq!(
            sao_paulo.read_text("2024-01-31T12:00"),
            Ok(micros("2024-01-31T15:00:00Z"))
        );
        assert_eq!(
            sao_paulo.read_text("2024-01-31"),
            Ok(micros("2024-01-31T03:00:00Z"))
        );
        assert_eq!(
            sao_paulo.read_text("2024-01-31T12:00:00+01:00"),
            Ok(micros("2024-01-31T11:00:00Z")),
            "an offset written wins"
        );
        let berlin = TimestampInput {
            timezone: zone_named("Europe/Berlin"),
            epoch: None,
        };
        assert!(
            berlin
                .read_text("2024-03-31 02:30:00")
                .unwrap_err()
                .message
                .contains("does not exist")
        );
        assert_eq!(
            berlin.read_text("2024-10-27 02:30:00"),
            Ok(micros("2024-10-27T00:30:00Z")),
            "the earlier of an hour lived twice"
        );
        assert!(zone_named("Mars/Olympus").is_none());
    }

    #[test]
    fn numbers_are_read_as_epoch_units() {
        let seconds = TimestampInput {
            timezone: None,
            epoch: Some(Epoch::Seconds),
        };
        assert_eq!(
            seconds.read_text("1706702400"),
            Ok(micros("2024-01-31T12:00:00Z"))
        );
        assert_eq!(
            seconds.read_number(&serde_json::Number::from(1_706_702_400)),
            Ok(micros("2024-01-31T12:00:00Z"))
        );
        let millis = TimestampInput {
            timezone: None,
            epoch: Some(Epoch::Milliseconds),
        };
        assert_eq!(
            millis.read_number(&serde_json::Number::from(1_706_702_400_123_i64)),
            Ok(micros("2024-01-31T12:00:00.123Z"))
        );
        assert_eq!(
            seconds
                .read_number(&serde_json::Number::from(i64::MAX))
                .unwrap_err()
                .code,
            "overflow"
        );
        let fraction = serde_json::Number::from_f64(1.5).unwrap();
        assert!(seconds.read_number(&fraction).is_err());
    }
}

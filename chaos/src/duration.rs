//! Durations as humantime strings ("200ms", "1m 30s") in TOML and JSON, so
//! schedules, ledgers and events read the way users write them.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// Parse a humantime duration, with an error that says what was expected. A
/// leading `-` gets its own message because "negative duration" is the mistake.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(format!(
            "negative duration `{text}`: durations must be >= 0"
        ));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("invalid duration `{text}` ({e}); write e.g. \"200ms\", \"5s\", \"1m\"")
    })
}

/// [`parse`], refusing zero: for lengths that must be positive (a stage, a
/// window, a recovery limit).
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    let d = parse(text)?;
    if d.is_zero() {
        return Err(format!("`{text}`: the duration must be more than 0"));
    }
    Ok(d)
}

/// A duration the way users write them ("1m 30s", "200ms"): the inverse of [`parse`].
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The same for `Option<Duration>` fields.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

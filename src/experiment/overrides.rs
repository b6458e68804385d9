//! `--set FIELD=VALUE`: a profile field overridden from the command line, then
//! checked as strictly as the file.

use super::profile::ProfileError;

/// Applies `--set FIELD=VALUE` overrides (`stack.gateway=builtin`,
/// `load.stage[1].duration=5s`; arrays of tables counted from 1 as in error
/// messages) to profile text. VALUE is read as TOML, else taken as a string.
pub(super) fn apply(text: &str, sets: &[String]) -> Result<String, ProfileError> {
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| ProfileError::Override {
        set: sets.join(" --set "),
        message: format!("the profile is not TOML: {}", e.message().trim()),
    })?;
    for set in sets {
        let bad = |message: String| ProfileError::Override {
            set: set.clone(),
            message,
        };
        let (field, value) = set
            .split_once('=')
            .ok_or_else(|| bad("expected FIELD=VALUE".into()))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        set_field(&mut doc, field.trim(), value).map_err(bad)?;
    }
    Ok(toml::to_string(&doc).expect("a TOML table serialises"))
}

/// Sets `a.b[2].c` (1-based array index) in a TOML document, creating tables
/// on the way but never array entries.
fn set_field(doc: &mut toml::Table, field: &str, value: toml::Value) -> Result<(), String> {
    let segments: Vec<&str> = field.split('.').collect();
    let mut table = doc;
    for (i, seg) in segments.iter().enumerate() {
        let (key, index) = match seg.split_once('[') {
            Some((k, rest)) => {
                let n: usize = rest
                    .strip_suffix(']')
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("bad index in `{seg}` (write e.g. stage[1])"))?;
                (k, Some(n))
            }
            None => (*seg, None),
        };
        let last = i + 1 == segments.len();
        if last && index.is_none() {
            table.insert(key.to_string(), value);
            return Ok(());
        }
        let entry = table
            .entry(key.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let next = match (entry, index) {
            (toml::Value::Array(items), Some(n)) => {
                let len = items.len();
                items
                    .get_mut(n - 1)
                    .ok_or_else(|| format!("`{key}` has {len} entries, not {n}"))?
            }
            (v, None) => v,
            (_, Some(_)) => return Err(format!("`{key}` is not an array of tables")),
        };
        if last {
            *next = value;
            return Ok(());
        }
        table = next
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    Ok(())
}

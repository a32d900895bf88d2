//! Loading: defaults → TOML file → `REGISTRY_*` → `WHARF_*`, then typed deserialization that
//! names the failing key. Environment values take the type of the key they override.

use std::path::Path;

use toml::Value;

use super::Config;

/// A configuration problem, as one line: which key (and where it came from), and why.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {key}{source_note}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub source_note: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, source_note: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            source_note: source_note.into(),
            reason: reason.into(),
        }
    }
}

/// Something worth telling the user about the configuration that does not stop start-up (an
/// ignored key, a setting with no effect). Loading happens before logging is set up, so notes
/// are collected and logged by the caller.
#[derive(Clone, Debug)]
pub struct ConfigNote {
    /// A warning (the configuration asks for something Wharf will not do), else information.
    pub warning: bool,
    pub message: String,
}

impl ConfigNote {
    pub fn warn(message: String) -> Self {
        ConfigNote { warning: true, message }
    }
    pub fn info(message: String) -> Self {
        ConfigNote {
            warning: false,
            message,
        }
    }
    pub fn log(&self) {
        if self.warning {
            tracing::warn!("configuration: {}", self.message);
        } else {
            tracing::info!("configuration: {}", self.message);
        }
    }
}

/// Environment variables that name the configuration file rather than a key.
const NOT_KEYS: &[&str] = &["REGISTRY_CONFIGURATION_PATH", "WHARF_CONFIG"];

/// [`load_with_notes`], logging the notes right away (for callers whose logging is set up).
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut notes = Vec::new();
    let config = load_with_notes(file, env, &mut notes);
    notes.iter().for_each(ConfigNote::log);
    config
}

/// Load the configuration: defaults, then `file` (Distribution's YAML if it ends in `.yml` or
/// `.yaml`, else TOML), then `env`. Ignored keys and settings without effect go to `notes`.
pub fn load_with_notes(
    file: Option<&Path>,
    env: &[(String, String)],
    notes: &mut Vec<ConfigNote>,
) -> Result<Config, ConfigError> {
    let mut tree = Value::try_from(Config::default()).expect("defaults serialize");
    // Where each overridden key's value came from, for error messages.
    let mut sources: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut file_note = String::new();
    if let Some(path) = file {
        let note = format!(" (in {})", path.display());
        file_note = note.clone();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("config file", note.clone(), format!("cannot read: {e}")))?;
        let file_tree: toml::Table = if super::distribution::is_yaml(path) {
            super::distribution::from_yaml(&text, notes).map_err(|(k, r)| ConfigError::new(k, note.clone(), r))?
        } else {
            toml::from_str(&text).map_err(|e| {
                ConfigError::new(
                    "config file",
                    note.clone(),
                    e.to_string().lines().next().unwrap_or("").to_owned(),
                )
            })?
        };
        merge(&mut tree, Value::Table(file_tree));
    }

    let mut vars: Vec<&(String, String)> = env.iter().collect();
    // REGISTRY_* first, WHARF_* after (so ours win); each group in sorted order, as Distribution does.
    vars.sort_by_key(|(k, _)| (k.starts_with("WHARF_"), k.clone()));
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("REGISTRY_").or_else(|| name.strip_prefix("WHARF_")) else {
            continue;
        };
        if NOT_KEYS.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split('_').map(|s| s.to_ascii_lowercase()).collect();
        let key = path.join(".");
        let note = format!(" (from {name})");
        match lookup_mut(&mut tree, &path) {
            Some(slot) => {
                *slot = typed_like(slot, value).map_err(|r| ConfigError::new(&key, &note, r))?;
                sources.insert(key, note);
            }
            None => notes.extend(
                super::distribution::missing_env_key(name, &key).map_err(|r| ConfigError::new(&key, &note, r))?,
            ),
        }
    }

    let note_for = |key: &str| sources.get(key).unwrap_or(&file_note).clone();
    let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::new(&key, note_for(&key), e.into_inner().to_string())
    })?;
    config
        .validate()
        .map_err(|(key, reason)| ConfigError::new(&key, note_for(&key), reason))?;
    Ok(config)
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn lookup_mut<'a>(tree: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = tree;
    for p in path {
        cur = cur.as_table_mut()?.get_mut(p)?;
    }
    Some(cur)
}

/// Parse an environment value as the type of the value it replaces.
fn typed_like(old: &Value, v: &str) -> Result<Value, String> {
    Ok(match old {
        // A whole section given as a map, e.g. REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}'
        // (Distribution parses these values as YAML; JSON and `{enabled: true}` cover what users write).
        Value::Table(t) => {
            let mut merged = Value::Table(t.clone());
            merge(&mut merged, parse_map(v)?);
            merged
        }
        Value::Boolean(_) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Value::Boolean(true),
            "false" | "0" | "no" | "off" => Value::Boolean(false),
            _ => return Err(format!("expected true or false, got {v:?}")),
        },
        Value::Integer(_) => Value::Integer(
            v.trim()
                .parse()
                .map_err(|_| format!("expected an integer, got {v:?}"))?,
        ),
        Value::Float(_) => Value::Float(v.trim().parse().map_err(|_| format!("expected a number, got {v:?}"))?),
        _ => Value::String(v.to_owned()),
    })
}

/// A map written inline: JSON (`{"enabled": true}`) or YAML flow style with bare keys (`{enabled: true}`).
fn parse_map(v: &str) -> Result<Value, String> {
    let err = || format!("expected a map such as {{\"enabled\": true}}, got {v:?}");
    let json: serde_json::Value = match serde_json::from_str(v) {
        Ok(j) => j,
        Err(_) => {
            // Quote bare keys: `{enabled: true, a: "x"}` -> `{"enabled": true, "a": "x"}`.
            let mut quoted = String::new();
            let mut key = String::new();
            for c in v.chars() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    key.push(c);
                    continue;
                }
                if c == ':' && !key.is_empty() && !key.chars().all(|k| k.is_ascii_digit()) {
                    quoted.push_str(&format!("\"{key}\""));
                } else {
                    quoted.push_str(&key);
                }
                key.clear();
                quoted.push(c);
            }
            quoted.push_str(&key);
            serde_json::from_str(&quoted).map_err(|_| err())?
        }
    };
    if !json.is_object() {
        return Err(err());
    }
    Value::try_from(json).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn registry_variables_override_defaults() {
        let c = load(
            None,
            &env(&[
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:5001"),
                ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/tmp/x"),
                ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.addr, "127.0.0.1:5001");
        assert_eq!(c.storage.filesystem.rootdirectory, Path::new("/tmp/x"));
        assert!(c.storage.delete.enabled);
    }

    #[test]
    fn wharf_variables_win_over_registry_ones() {
        let c = load(
            None,
            &env(&[("WHARF_HTTP_ADDR", ":6000"), ("REGISTRY_HTTP_ADDR", ":7000")]),
        )
        .unwrap();
        assert_eq!(c.http.addr, ":6000");
    }

    #[test]
    fn a_section_can_be_given_as_a_map() {
        let c = load(
            None,
            &env(&[("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{\"enabled\": true}")]),
        )
        .unwrap();
        assert!(c.storage.maintenance.readonly.enabled);
        let c = load(
            None,
            &env(&[("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{enabled: true}")]),
        )
        .unwrap();
        assert!(c.storage.maintenance.readonly.enabled);
        let c = load(None, &env(&[("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")])).unwrap();
        assert!(c.storage.maintenance.readonly.enabled);
        assert!(load(None, &env(&[("REGISTRY_STORAGE_MAINTENANCE_READONLY", "yes")])).is_err());
        let e = load(
            None,
            &env(&[("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "soon")]),
        )
        .unwrap_err();
        assert_eq!(e.key, "storage.maintenance.uploadpurging.age");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = load(None, &env(&[("REGISTRY_STORAGE_DELETE_ENABLED", "maybe")])).unwrap_err();
        assert_eq!(e.key, "storage.delete.enabled");
        assert!(e.to_string().contains("REGISTRY_STORAGE_DELETE_ENABLED"), "{e}");
        let e = load(None, &env(&[("REGISTRY_HTTP_ADDR", "nonsense")])).unwrap_err();
        assert_eq!(e.key, "http.addr");
    }

    #[test]
    fn file_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[storage.delete]\nenabled = \"yes\"\n").unwrap();
        let e = load(Some(&f), &[]).unwrap_err();
        assert_eq!(e.key, "storage.delete.enabled");
        std::fs::write(&f, "[http]\nadress = \":1\"\n").unwrap();
        let e = load(Some(&f), &[]).unwrap_err();
        assert!(e.reason.contains("adress"), "{e}");
        std::fs::write(
            &f,
            "[http]\naddr = \"127.0.0.1:0\"\n[storage.filesystem]\nrootdirectory = \"/srv/r\"\n",
        )
        .unwrap();
        let c = load(Some(&f), &[]).unwrap();
        assert_eq!(c.http.addr, "127.0.0.1:0");
        assert_eq!(c.storage.filesystem.rootdirectory, Path::new("/srv/r"));
    }
}

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

/// Environment variables that name the configuration file rather than a key.
const NOT_KEYS: &[&str] = &["REGISTRY_CONFIGURATION_PATH", "WHARF_CONFIG"];

pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut tree = Value::try_from(Config::default()).expect("defaults serialize");
    // Where each overridden key's value came from, for error messages.
    let mut sources: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut file_note = String::new();
    if let Some(path) = file {
        let note = format!(" (in {})", path.display());
        file_note = note.clone();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("config file", note.clone(), format!("cannot read: {e}")))?;
        let file_tree: toml::Table = toml::from_str(&text).map_err(|e| {
            ConfigError::new(
                "config file",
                note.clone(),
                e.to_string().lines().next().unwrap_or("").to_owned(),
            )
        })?;
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
            None => tracing::warn!("ignoring {name}: {key} is not a setting Wharf knows"),
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
    (!cur.is_table()).then_some(cur)
}

/// Parse an environment value as the type of the value it replaces.
fn typed_like(old: &Value, v: &str) -> Result<Value, String> {
    Ok(match old {
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

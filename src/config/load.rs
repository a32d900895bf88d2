//! Loading: defaults → TOML file → `REGISTRY_*` → `WHARF_*`, then typed deserialization that
//! names the failing key. Environment values take the type of the key they override.

use std::path::Path;

use toml::Value;

use super::Config;
use super::note::ConfigNote;

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
/// Test hooks (`crate::hooks`) are not configuration either.
const NOT_KEYS: &[&str] = &[
    "REGISTRY_CONFIGURATION_PATH",
    "WHARF_CONFIG",
    "WHARF_FAILPOINTS",
    "WHARF_FAILPOINT_GC_ABORT_AFTER",
    "WHARF_TIMEOUTS",
];

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
        fill_optional_sections(&mut tree);
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
        // registry:2 users write REGISTRY_STORAGE=s3 to pick the driver; here the driver follows
        // from the keys given (storage.s3.bucket selects S3), so the bare name is accepted as is.
        if rest == "STORAGE" && ["s3", "filesystem"].contains(&value.trim()) {
            continue;
        }
        // ... except the in-memory driver, which has no key to give: its name selects it.
        if rest == "STORAGE" && value.trim() == "inmemory" {
            lookup_mut(&mut tree, &["storage".to_owned()])
                .and_then(|t| t.as_table_mut())
                .map(|t| t.insert("inmemory".into(), Value::Table(Default::default())));
            sources.insert("storage.inmemory".into(), format!(" (from {name})"));
            continue;
        }
        let path: Vec<String> = rest.split('_').map(|s| s.to_ascii_lowercase()).collect();
        let key = path.join(".");
        let note = format!(" (from {name})");
        if key == "auth" && !value.trim_start().starts_with('{') {
            select_auth(&mut tree, value).map_err(|r| ConfigError::new(&key, &note, r))?;
            sources.insert(key, note);
            continue;
        }
        add_optional_section(&mut tree, &path);
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
        // The message alone: toml's Display adds "in `key`" on a line of its own, and the key
        // leads the error already.
        ConfigError::new(&key, note_for(&key), e.into_inner().message().trim_end())
    })?;
    config
        .validate()
        .map_err(|(key, reason)| ConfigError::new(&key, note_for(&key), reason))?;
    Ok(config)
}

/// Sections that are absent by default (their presence turns a feature on), with their defaults,
/// so that `REGISTRY_AUTH_HTPASSWD_PATH` or `REGISTRY_HTTP_TLS_CERTIFICATE` can create them.
fn optional_section(path: &[&str]) -> Option<Value> {
    let v = match path {
        ["auth", "htpasswd"] => Value::try_from(super::HtpasswdConfig::default()),
        ["auth", "token"] => Value::try_from(super::TokenConfig::default()),
        ["http", "tls"] => Value::try_from(super::TlsConfig::default()),
        _ => return None,
    };
    Some(v.expect("defaults serialize"))
}

/// Give optional sections that the file wrote partly their missing keys (so the environment
/// can still set them, e.g. REGISTRY_HTTP_TLS_CERTIFICATE beside a file's `[http.tls] minimumtls`).
fn fill_optional_sections(tree: &mut Value) {
    for section in [["auth", "htpasswd"], ["auth", "token"], ["http", "tls"]] {
        let path: Vec<String> = section.iter().map(|s| s.to_string()).collect();
        if let Some(slot) = lookup_mut(tree, &path) {
            let mut full = optional_section(&section).expect("known section");
            merge(&mut full, slot.clone());
            *slot = full;
        }
    }
}

fn add_optional_section(tree: &mut Value, path: &[String]) {
    if path.len() < 2 {
        return;
    }
    let section = [path[0].as_str(), path[1].as_str()];
    if let Some(defaults) = optional_section(&section)
        && let Some(parent) = lookup_mut(tree, &path[..1]).and_then(Value::as_table_mut)
        && !parent.contains_key(section[1])
    {
        parent.insert(section[1].to_owned(), defaults);
    }
}

/// `REGISTRY_AUTH=htpasswd` (or `token`, or `none`) selects the auth type, as Distribution's
/// `auth` map with one entry: the other type's section goes, the selected one is created.
fn select_auth(tree: &mut Value, value: &str) -> Result<(), String> {
    let kind = value.trim().to_ascii_lowercase();
    let auth = lookup_mut(tree, &["auth".to_owned()])
        .and_then(Value::as_table_mut)
        .expect("auth section");
    match kind.as_str() {
        "none" | "" => {
            auth.remove("htpasswd");
            auth.remove("token");
        }
        "htpasswd" | "token" => {
            let other = if kind == "htpasswd" { "token" } else { "htpasswd" };
            auth.remove(other);
            if !auth.contains_key(&kind) {
                auth.insert(kind.clone(), optional_section(&["auth", &kind]).expect("auth section"));
            }
        }
        _ => return Err(format!("{value:?} is not one of htpasswd, token, none")),
    }
    Ok(())
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
        // A list: JSON (`["a.pem","b.pem"]`), or items separated by commas.
        Value::Array(_) => match serde_json::from_str::<Vec<String>>(v) {
            Ok(items) => Value::Array(items.into_iter().map(Value::String).collect()),
            Err(_) if v.trim_start().starts_with('[') => return Err(format!("expected a list of strings, got {v:?}")),
            Err(_) => Value::Array(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
        },
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
#[path = "load_tests.rs"]
mod tests;

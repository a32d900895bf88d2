//! Distribution's `config.yml` (the `registry:2` configuration file), mapped onto Wharf's
//! configuration, and the meaning of `REGISTRY_*` variables that name keys Wharf lacks.
//!
//! Wharf's keys have Distribution's names, so most keys pass through unchanged. Each key of
//! Distribution's schema is classified in [`RULES`]:
//! - `Same`: passed through, if this build's [`Config`] has the key (checked by deserializing a
//!   tree holding only that key, so a section that lands later, such as `storage.s3`, passes
//!   through with no change here); otherwise ignored with a warning;
//! - `Required`: as `Same`, but a build without the key refuses to start (authentication, TLS,
//!   a storage driver): serving without them would be open, plain or in the wrong place;
//! - `Moot`: accepted, logged at info: Wharf behaves so that the setting does not matter;
//! - `Ignored`: not supported, logged as a warning that says what that means.
//!
//! Keys in no rule are ignored with a warning naming them.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value as Json;
use toml::Value;

use super::Config;
use super::note::ConfigNote;

#[derive(Clone, Copy, Debug)]
enum Class {
    Same,
    Required(&'static str),
    Moot(&'static str),
    Ignored(&'static str),
    /// An old name of a `Same` key.
    Renamed(&'static str),
}

use Class::*;

/// Distribution's configuration keys (docs/content/about/configuration.md). `*` matches one
/// key component.
const RULES: &[(&str, Class)] = &[
    ("version", Same),
    ("loglevel", Renamed("log.level")),
    ("log.level", Same),
    ("log.formatter", Same),
    ("log.accesslog.disabled", Same),
    ("log.fields", Ignored("Wharf adds no static fields to its log lines")),
    ("log.hooks", Ignored("log hooks (mail alerts) are not supported")),
    ("log.reportcaller", Ignored("log lines carry no caller location")),
    ("storage.filesystem.rootdirectory", Same),
    (
        "storage.filesystem.maxthreads",
        Moot("Wharf sizes its blocking thread pool itself"),
    ),
    ("storage.delete.enabled", Same),
    ("storage.maintenance.uploadpurging.enabled", Same),
    ("storage.maintenance.uploadpurging.age", Same),
    ("storage.maintenance.uploadpurging.interval", Same),
    ("storage.maintenance.uploadpurging.dryrun", Same),
    ("storage.maintenance.readonly.enabled", Same),
    (
        "storage.cache",
        Moot("Wharf caches parsed manifests in memory on its own"),
    ),
    ("storage.redirect.disable", Same),
    (
        "storage.tag.concurrencylimit",
        Moot("tag lookups are bounded by Wharf itself"),
    ),
    ("storage.s3", Required("the s3 storage driver")),
    ("storage.s3.*", Required("the s3 storage driver")),
    ("storage.azure", Required("the azure storage driver")),
    ("storage.gcs", Required("the gcs storage driver")),
    ("storage.swift", Required("the swift storage driver")),
    ("storage.oss", Required("the oss storage driver")),
    ("storage.inmemory", Required("the inmemory storage driver")),
    ("http.addr", Same),
    ("http.net", Moot("Wharf listens on TCP")),
    ("http.prefix", Ignored("Wharf serves the API at /v2/ only")),
    ("http.host", Same),
    (
        "http.relativeurls",
        Moot("Wharf's Location headers are always relative"),
    ),
    (
        "http.secret",
        Moot("upload state lives in storage, so there is nothing to sign"),
    ),
    ("http.draintimeout", Same),
    ("http.headers", Same),
    ("http.tls", Required("TLS")),
    ("http.tls.*", Required("TLS")),
    ("http.debug.addr", Same),
    ("http.debug.prometheus.enabled", Same),
    ("http.debug.prometheus.path", Same),
    ("http.http2.disabled", Moot("Wharf speaks HTTP/1.1")),
    ("http.h2c.enabled", Moot("Wharf speaks HTTP/1.1")),
    ("auth", Required("authentication")),
    ("auth.*", Required("this authentication type")),
    ("auth.htpasswd.*", Required("htpasswd authentication")),
    ("auth.token.*", Required("token authentication")),
    ("notifications", Ignored("webhook notifications are not sent")),
    ("redis", Ignored("Wharf needs no Redis: its caches are in memory")),
    ("proxy.remoteurl", Same),
    ("proxy.username", Same),
    ("proxy.password", Same),
    ("proxy.ttl", Same),
    (
        "proxy.exec",
        Ignored("upstream credentials come from proxy.username and proxy.password only"),
    ),
    ("health.storagedriver.enabled", Same),
    ("health.storagedriver.interval", Same),
    ("health.storagedriver.threshold", Same),
    ("health.file", Ignored("only the storage driver check is run")),
    ("health.http", Ignored("only the storage driver check is run")),
    ("health.tcp", Ignored("only the storage driver check is run")),
    (
        "middleware",
        Ignored("storage and registry middleware (such as CloudFront redirects) is not supported"),
    ),
    (
        "validation",
        Ignored("manifests are checked Wharf's way (no URL allow or deny lists)"),
    ),
    ("compatibility", Ignored("schema 1 manifests are refused")),
    (
        "catalog.maxentries",
        Ignored("the catalog is paginated with n and last instead"),
    ),
    (
        "reporting",
        Ignored("bugsnag and New Relic reporting are not supported"),
    ),
    ("policy", Ignored("repository class policies are not supported")),
];

/// Files Wharf reads as Distribution's YAML instead of TOML.
pub(super) fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("yml" | "yaml")
    )
}

/// Translate a `config.yml` into a Wharf configuration tree. Errors are (key, reason).
pub(super) fn from_yaml(text: &str, notes: &mut Vec<ConfigNote>) -> Result<toml::Table, (String, String)> {
    let doc: Json = yaml_serde::from_str(text).map_err(|e| ("config file".to_owned(), format!("invalid YAML: {e}")))?;
    let mut out = toml::Table::new();
    match doc {
        Json::Null => {}
        Json::Object(map) => {
            for (k, v) in map {
                walk(&[k.as_str()], &v, &mut out, notes)?;
            }
        }
        _ => return Err(("config file".into(), "expected a map of settings at the top".into())),
    }
    Ok(out)
}

/// What to do about a `REGISTRY_*` variable whose key is not in Wharf's configuration:
/// `Ok(None)` to skip it quietly, `Ok(Some(note))` to skip it with a note, `Err` to stop.
pub(super) fn missing_env_key(name: &str, key: &str) -> Result<Option<ConfigNote>, String> {
    // podman, skopeo and buildah read REGISTRY_AUTH_FILE; it is not registry configuration.
    if name == "REGISTRY_AUTH_FILE" {
        return Ok(None);
    }
    let path: Vec<&str> = key.split('.').collect();
    let rule = exact(&path, false).or_else(|| exact(&path, true)).or_else(|| {
        RULES
            .iter()
            .filter(|(p, _)| is_prefix(p, &path))
            .map(|(_, c)| *c)
            .next_back()
    });
    Ok(Some(match rule {
        // A newer option inside a feature's section this build has: as in a file, a warning.
        Some(Required(_)) if path.len() >= 3 && accepts(&path[..path.len() - 1], Value::Table(toml::Table::new())) => {
            ConfigNote::warn(format!(
                "ignoring {name}: {key} is not supported by this build of Wharf"
            ))
        }
        Some(Required(what)) => {
            return Err(format!(
                "{what} ({key}) is not supported by this build of Wharf; refusing to start without it"
            ));
        }
        Some(Moot(why)) => ConfigNote::info(format!("{name} has no effect: {why}")),
        Some(Ignored(why)) => ConfigNote::warn(format!("ignoring {name}: {why}")),
        Some(Same | Renamed(_)) => ConfigNote::warn(format!(
            "ignoring {name}: {key} is not supported by this build of Wharf"
        )),
        None => ConfigNote::warn(format!("ignoring {name}: {key} is not a setting Wharf knows")),
    }))
}

fn matches(pattern: &str, path: &[&str]) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    p.len() == path.len() && p.iter().zip(path).all(|(a, b)| *a == "*" || a == b)
}

/// The rule for exactly this key, among literal patterns or among those with a wildcard.
fn exact(path: &[&str], wildcard: bool) -> Option<Class> {
    RULES
        .iter()
        .filter(|(p, _)| p.contains('*') == wildcard)
        .find(|(p, _)| matches(p, path))
        .map(|(_, c)| *c)
}

/// `pattern` names a section that contains `path`.
fn is_prefix(pattern: &str, path: &[&str]) -> bool {
    let n = pattern.split('.').count();
    n < path.len() && matches(pattern, &path[..n])
}

/// Some rule names a key inside `path`, so `path` is a section to walk into.
fn is_section(path: &[&str]) -> bool {
    RULES.iter().any(|(p, _)| {
        let p: Vec<&str> = p.split('.').collect();
        p.len() > path.len() && p.iter().zip(path).all(|(a, b)| *a == "*" || a == b)
    })
}

fn walk(
    path: &[&str],
    value: &Json,
    out: &mut toml::Table,
    notes: &mut Vec<ConfigNote>,
) -> Result<(), (String, String)> {
    let key = path.join(".");
    if let Json::Object(map) = value
        && is_section(path)
    {
        for (k, v) in map {
            let mut child = path.to_vec();
            child.push(k);
            walk(&child, v, out, notes)?;
        }
        return Ok(());
    }
    let rule = exact(path, false).or_else(|| exact(path, true));
    match rule {
        None => notes.push(ConfigNote::warn(format!(
            "ignoring {key}: not a Distribution setting Wharf knows"
        ))),
        Some(Moot(why)) => notes.push(ConfigNote::info(format!("{key} has no effect: {why}"))),
        Some(Ignored(why)) => notes.push(ConfigNote::warn(format!("ignoring {key}: {why}"))),
        Some(Renamed(to)) => {
            let to: Vec<&str> = to.split('.').collect();
            pass_through(&to, value, out, notes, None)?;
        }
        Some(Same) => pass_through(path, value, out, notes, None)?,
        Some(Required(what)) => pass_through(path, value, out, notes, Some(what))?,
    }
    Ok(())
}

fn pass_through(
    path: &[&str],
    value: &Json,
    out: &mut toml::Table,
    notes: &mut Vec<ConfigNote>,
    required: Option<&str>,
) -> Result<(), (String, String)> {
    let key = path.join(".");
    let value = match (path, value) {
        // `version: 0.1` is a YAML number.
        (["version"], Json::Number(n)) => Value::String(n.to_string()),
        (["log", "formatter"], Json::String(s)) if s == "logstash" => {
            notes.push(ConfigNote::info(
                "log.formatter: logstash is written as json (one JSON object per line)".to_owned(),
            ));
            Value::String("json".into())
        }
        // A selected driver or auth type with no settings (`inmemory:`, `htpasswd:`).
        (_, Json::Null) if required.is_some() => Value::Table(toml::Table::new()),
        _ => match to_toml(value) {
            Some(v) => v,
            None => return Ok(()), // `key:` with no value: as if absent
        },
    };
    if accepts(path, value.clone()) {
        insert(out, path, value);
        return Ok(());
    }
    match required {
        // A key inside a feature's section (`http.tls.ciphersuites`) that this build has, only
        // not that key: a newer option of a supported feature.
        Some(_) if path.len() >= 3 && accepts(&path[..path.len() - 1], Value::Table(toml::Table::new())) => {
            notes.push(ConfigNote::warn(format!(
                "ignoring {key}: not supported by this build of Wharf"
            )));
            Ok(())
        }
        Some(what) => Err((
            key,
            format!("{what} is not supported by this build of Wharf; refusing to start without it"),
        )),
        None => {
            notes.push(ConfigNote::warn(format!(
                "ignoring {key}: not supported by this build of Wharf"
            )));
            Ok(())
        }
    }
}

/// Whether Wharf's configuration has this key: a tree holding only it deserializes without an
/// unknown-field error (a wrong type is reported later, naming the key).
fn accepts(path: &[&str], value: Value) -> bool {
    let mut tree = toml::Table::new();
    insert(&mut tree, path, value);
    match Config::deserialize(Value::Table(tree)) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains("unknown field"),
    }
}

fn insert(tree: &mut toml::Table, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("a key");
    let mut cur = tree;
    for p in parents {
        let slot = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(toml::Table::new()));
        if !slot.is_table() {
            *slot = Value::Table(toml::Table::new());
        }
        cur = slot.as_table_mut().expect("table");
    }
    cur.insert(last.to_string(), value);
}

/// JSON (from YAML) to TOML; `None` for null, which TOML cannot hold.
fn to_toml(v: &Json) -> Option<Value> {
    Some(match v {
        Json::Null => return None,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().filter_map(to_toml).collect()),
        Json::Object(m) => Value::Table(m.iter().filter_map(|(k, v)| Some((k.clone(), to_toml(v)?))).collect()),
    })
}

#[cfg(test)]
#[path = "distribution_tests.rs"]
mod tests;

//! Every reading of a manifest's bytes: the keys case-insensitive JSON readers (Go's
//! encoding/json) take for the fields Wharf reads, refused on push when readers would disagree
//! ([`audit_signals`]), and every reference any reading names, which garbage collection marks
//! ([`references`]).

use serde::Deserialize;

use super::format::invalid;
use crate::error::Result;
use crate::registry::digest::Digest;

/// Every blob and child manifest any reading of a stored manifest names: config, layers (also
/// non-distributable ones), index children and the subject, under the exact keys and under any
/// spelling a case-insensitive reader matches, whatever its `mediaType` says. Garbage
/// collection marks all of them, so it never deletes what some reader of a kept manifest pulls.
pub fn references(bytes: &[u8]) -> Result<References> {
    let tree: Json = serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    let mut out = References::default();
    let Json::Object(top) = &tree else {
        return Err(invalid("a manifest is a JSON object"));
    };
    let digests_of = |d: &Json, into: &mut Vec<Digest>| {
        if let Json::Object(fields) = d {
            for (k, v) in fields {
                if let (true, Json::String(s)) = (fold_eq(k, "digest"), v)
                    && let Ok(d) = s.parse()
                {
                    into.push(d);
                }
            }
        }
    };
    for (k, v) in top {
        let into = if fold_eq(k, "manifests") {
            &mut out.children
        } else if fold_eq(k, "config") || fold_eq(k, "layers") || fold_eq(k, "subject") {
            &mut out.blobs
        } else {
            continue;
        };
        match v {
            Json::Array(items) => items.iter().for_each(|d| digests_of(d, into)),
            other => digests_of(other, into),
        }
    }
    Ok(out)
}

/// What [`references`] finds.
#[derive(Debug, Default)]
pub struct References {
    /// Configs, layers, subjects: blobs (or manifests) that must stay.
    pub blobs: Vec<Digest>,
    /// Index children: manifests that must stay, with what they use.
    pub children: Vec<Digest>,
}

/// Case-insensitive equality as Go's encoding/json matches object keys to fields (Unicode
/// simple folding, so `ſ` matches `s` and the Kelvin sign `k`).
fn fold_eq(a: &str, b: &str) -> bool {
    let fold = |s: &str| -> String {
        s.chars()
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
            .collect()
    };
    a == b || fold(a) == fold(b)
}

/// The keys a registry reads from a manifest and from its descriptors.
const TOP_KEYS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "manifests",
    "subject",
];
const DESCRIPTOR_KEYS: &[&str] = &["mediaType", "digest", "size"];

/// Refuse keys that readers disagree on: a second occurrence of a field we read (serde would
/// refuse it, Go takes the last), or another spelling of it that Go's case-insensitive
/// matching takes for it while we ignore it.
pub(super) fn audit_signals(bytes: &[u8]) -> Result<()> {
    let tree: Json = serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    fn check(fields: &[(String, Json)], known: &[&str], at: &str) -> Result<()> {
        for name in known {
            let spellings: Vec<&str> = fields
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| fold_eq(k, name))
                .collect();
            if let Some(other) = spellings.iter().find(|k| *k != name) {
                return Err(invalid(format!(
                    "conflicting type signals: {at}key {other:?} is read as {name:?} by case-insensitive JSON readers"
                )));
            }
            if spellings.len() > 1 {
                return Err(invalid(format!("conflicting type signals: {at}{name:?} appears twice")));
            }
        }
        Ok(())
    }
    let Json::Object(top) = &tree else {
        return Err(invalid("a manifest is a JSON object"));
    };
    check(top, TOP_KEYS, "")?;
    for (k, v) in top {
        let items: Vec<&Json> = match v {
            Json::Array(items) if k == "layers" || k == "manifests" => items.iter().collect(),
            one if k == "config" || k == "subject" => vec![one],
            _ => continue,
        };
        for (i, d) in items.into_iter().enumerate() {
            if let Json::Object(fields) = d {
                check(fields, DESCRIPTOR_KEYS, &format!("{k}[{i}]: "))?;
            }
        }
    }
    Ok(())
}

/// A JSON document that keeps every key of every object, duplicates and order included (a
/// `serde_json::Value` keeps only the last of duplicate keys).
enum Json {
    Object(Vec<(String, Json)>),
    Array(Vec<Json>),
    String(String),
    Other,
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Json, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> std::result::Result<Json, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Json>()? {
                    fields.push((k, v));
                }
                Ok(Json::Object(fields))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> std::result::Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = s.next_element::<Json>()? {
                    items.push(v);
                }
                Ok(Json::Array(items))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Json, E> {
                Ok(Json::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Json, E> {
                Ok(Json::String(v))
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
            fn visit_unit<E>(self) -> std::result::Result<Json, E> {
                Ok(Json::Other)
            }
        }
        d.deserialize_any(V)
    }
}

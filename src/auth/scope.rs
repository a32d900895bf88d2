//! Resource scopes as the Docker token spec writes them (`repository:team/app:pull,push`), and
//! the single accesses a request needs.

use serde::{Deserialize, Serialize};

pub const PULL: &str = "pull";
pub const PUSH: &str = "push";
pub const DELETE: &str = "delete";

/// One action on one resource, as a request needs it (Distribution's `auth.Access`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// `repository` or `registry`.
    pub typ: String,
    pub name: String,
    pub action: String,
}

impl Access {
    pub fn repository(name: &str, action: &str) -> Access {
        Access {
            typ: "repository".into(),
            name: name.into(),
            action: action.into(),
        }
    }

    /// `registry:catalog:*`, which Distribution's token servers grant for `/v2/_catalog`.
    pub fn catalog() -> Access {
        Access {
            typ: "registry".into(),
            name: "catalog".into(),
            action: "*".into(),
        }
    }

    /// The spec's error detail entry: `{"Type","Name","Action"}`.
    pub fn detail(&self) -> serde_json::Value {
        serde_json::json!({ "Type": self.typ, "Name": self.name, "Action": self.action })
    }
}

/// One entry of a token's `access` claim, and one parsed `scope` item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    #[serde(rename = "type")]
    pub typ: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl ResourceActions {
    /// `*` grants every action on the resource, as in Distribution.
    pub fn covers(&self, a: &Access) -> bool {
        resource_type(&self.typ) == resource_type(&a.typ)
            && self.name == a.name
            && self.actions.iter().any(|x| x == "*" || *x == a.action)
    }
}

/// `repository(plugin)` and `repository` are the same type (resource classes are ignored).
fn resource_type(t: &str) -> &str {
    t.split_once('(').map_or(t, |(base, _)| base)
}

/// Parse space-separated scopes. The name may contain one `:` (a registry host with a port),
/// so the type ends at the first `:` and the actions start after the last one. Malformed items
/// are skipped (a token server grants nothing for them).
pub fn parse_scopes(s: &str) -> Vec<ResourceActions> {
    s.split_whitespace()
        .filter_map(|item| {
            let (typ, rest) = item.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            if typ.is_empty() || name.is_empty() {
                return None;
            }
            Some(ResourceActions {
                typ: typ.to_owned(),
                name: name.to_owned(),
                actions: actions
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// The `scope` value of a challenge: accesses grouped by resource, in order of appearance
/// (`repository:a:pull,push repository:b:pull`).
pub fn challenge_scope(required: &[Access]) -> String {
    let mut groups: Vec<(String, String, Vec<String>)> = Vec::new();
    for a in required {
        match groups.iter_mut().find(|(t, n, _)| *t == a.typ && *n == a.name) {
            Some((_, _, actions)) => {
                if !actions.contains(&a.action) {
                    actions.push(a.action.clone());
                }
            }
            None => groups.push((a.typ.clone(), a.name.clone(), vec![a.action.clone()])),
        }
    }
    groups
        .iter()
        .map(|(t, n, a)| format!("{t}:{n}:{}", a.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_with_ports_and_classes() {
        let s = parse_scopes("repository:localhost:5000/a/b:pull,push registry:catalog:* bogus");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "localhost:5000/a/b");
        assert_eq!(s[0].actions, vec!["pull", "push"]);
        assert!(s[1].covers(&Access::catalog()));
        let plugin = ResourceActions {
            typ: "repository(plugin)".into(),
            name: "a".into(),
            actions: vec!["pull".into()],
        };
        assert!(plugin.covers(&Access::repository("a", PULL)));
        assert!(!plugin.covers(&Access::repository("a", PUSH)));
        assert!(!plugin.covers(&Access::repository("b", PULL)));
    }

    #[test]
    fn challenges_group_actions_by_resource() {
        let req = [
            Access::repository("a", PULL),
            Access::repository("a", PUSH),
            Access::repository("b", PULL),
        ];
        assert_eq!(challenge_scope(&req), "repository:a:pull,push repository:b:pull");
    }
}

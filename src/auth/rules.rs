//! Access rules: `[[auth.access]]` entries grant actions on repository globs to users, groups
//! and anonymous callers. Rules only grant, so the order does not matter: a caller may do the
//! union of what every matching rule grants. With no rules, every authenticated user may do
//! everything and anonymous callers nothing (registry:2's htpasswd behaviour).

use std::collections::HashMap;

use globset::{GlobBuilder, GlobMatcher};

use super::scope::{Access, DELETE, PULL, PUSH};
use crate::config::AuthConfig;

/// A set of repository actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const ALL: Actions = Actions(0b111);

    fn bit(action: &str) -> u8 {
        match action {
            PULL => 1,
            PUSH => 2,
            DELETE => 4,
            "*" => 0b111,
            _ => 0,
        }
    }

    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Actions {
        Actions(names.iter().fold(0, |acc, n| acc | Actions::bit(n.as_ref())))
    }

    pub fn contains(self, action: &str) -> bool {
        let b = Actions::bit(action);
        b != 0 && self.0 & b == b
    }

    pub fn names(self) -> Vec<String> {
        [PULL, PUSH, DELETE]
            .into_iter()
            .filter(|a| self.contains(a))
            .map(str::to_owned)
            .collect()
    }
}

struct Rule {
    patterns: Vec<GlobMatcher>,
    users: Vec<String>,
    groups: Vec<String>,
    anonymous: bool,
    actions: Actions,
}

pub struct Rules {
    rules: Vec<Rule>,
    /// user -> groups
    memberships: HashMap<String, Vec<String>>,
}

impl Rules {
    pub fn from_config(auth: &AuthConfig) -> Rules {
        let mut memberships: HashMap<String, Vec<String>> = HashMap::new();
        for (group, users) in &auth.groups {
            for u in users {
                memberships.entry(u.clone()).or_default().push(group.clone());
            }
        }
        let rules = auth
            .access
            .iter()
            .map(|r| Rule {
                // A pattern globset refuses cannot match anything (rules only grant).
                patterns: r.repositories.iter().filter_map(|p| repository_glob(p).ok()).collect(),
                users: r.users.clone(),
                groups: r.groups.clone(),
                anonymous: r.anonymous,
                actions: Actions::from_names(&r.actions),
            })
            .collect();
        Rules { rules, memberships }
    }

    /// Whether any `[[auth.access]]` rule is configured.
    pub fn configured(&self) -> bool {
        !self.rules.is_empty()
    }

    /// What `user` (None: anonymous) may do on repository `repo`.
    pub fn repository(&self, user: Option<&str>, repo: &str) -> Actions {
        if self.rules.is_empty() {
            return if user.is_some() { Actions::ALL } else { Actions::NONE };
        }
        let mut granted = 0;
        for r in self.rules.iter().filter(|r| self.applies(r, user)) {
            if r.patterns.iter().any(|p| p.is_match(repo)) {
                granted |= r.actions.0;
            }
        }
        Actions(granted)
    }

    /// Whether one access is allowed. `registry:catalog:*` is open to every authenticated caller,
    /// and to anonymous ones when some rule grants them anything: the catalog is then filtered
    /// down to what the caller may pull.
    pub fn allows(&self, user: Option<&str>, a: &Access) -> bool {
        match a.typ.split_once('(').map_or(a.typ.as_str(), |(t, _)| t) {
            "repository" => self.repository(user, &a.name).contains(&a.action),
            "registry" if a.name == "catalog" => {
                user.is_some() || self.rules.iter().any(|r| r.anonymous && r.actions != Actions::NONE)
            }
            _ => false,
        }
    }

    fn applies(&self, r: &Rule, user: Option<&str>) -> bool {
        match user {
            None => r.anonymous,
            Some(u) => {
                r.users.iter().any(|x| x == "*" || x == u)
                    || self
                        .memberships
                        .get(u)
                        .is_some_and(|gs| gs.iter().any(|g| r.groups.contains(g)))
            }
        }
    }
}

/// A repository pattern as a glob over the whole name. `**` as a whole component matches any
/// number of components (at least one when it ends the pattern, so `team/**` is what is inside
/// `team`); within a component `*` matches any run of characters and `?` one character, never
/// a `/`. Everything else is literal: `[`, `]`, `{`, `}` and `\` are escaped (repository names
/// never hold them, so such a pattern matches nothing, as it always has), and a `**` inside a
/// component is a `*`.
fn repository_glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    let components: Vec<String> = pattern
        .split('/')
        .map(|c| {
            if c == "**" {
                return c.to_owned();
            }
            let mut out = String::new();
            for ch in c.chars() {
                match ch {
                    '*' if out.ends_with('*') => {}
                    '[' | ']' | '{' | '}' | '\\' => out.extend(['[', ch, ']']),
                    _ => out.push(ch),
                }
            }
            out
        })
        .collect();
    Ok(GlobBuilder::new(&components.join("/"))
        .literal_separator(true)
        .backslash_escape(false)
        .build()?
        .compile_matcher())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessRuleConfig;

    fn m(p: &str, n: &str) -> bool {
        repository_glob(p).unwrap().is_match(n)
    }

    #[test]
    fn globs() {
        assert!(m("team-a/**", "team-a/app"));
        assert!(m("team-a/**", "team-a/x/y"));
        assert!(!m("team-a/**", "team-a"));
        assert!(!m("team-a/**", "team-ab/app"));
        assert!(m("*", "app"));
        assert!(!m("*", "a/b"));
        assert!(m("**", "a/b/c"));
        assert!(m("**/cache", "cache"));
        assert!(m("**/cache", "a/b/cache"));
        assert!(m("team-*/app?", "team-b/app1"));
        assert!(!m("team-*/app?", "team-b/app"));
        assert!(m("a/**/z", "a/z"));
        assert!(m("a/**/z", "a/b/c/z"));
    }

    /// What the hand-written matcher did with characters globset would read as syntax.
    #[test]
    fn other_characters_are_literal() {
        assert!(m("a**b", "axyb"));
        assert!(!m("a**b", "ax/yb"));
        assert!(m("a[b]", "a[b]") && !m("a[b]", "ab"));
        assert!(m("{a,b}", "{a,b}") && !m("{a,b}", "a"));
        assert!(m("a\\*", "a\\x") && !m("a\\*", "a*"));
        assert!(m("[", "[") && m("a/]/**", "a/]/x"));
        assert!(!m("a/", "a") && m("a.b-c_d", "a.b-c_d") && !m("a.b", "axb"));
    }

    fn rule(repos: &[&str], users: &[&str], groups: &[&str], anonymous: bool, actions: &[&str]) -> AccessRuleConfig {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        AccessRuleConfig {
            repositories: v(repos),
            users: v(users),
            groups: v(groups),
            anonymous,
            actions: v(actions),
        }
    }

    #[test]
    fn rules_grant_the_union_of_matches() {
        let mut auth = AuthConfig::default();
        auth.groups.insert("team-a".into(), vec!["alice".into()]);
        auth.access = vec![
            rule(&["public/**"], &[], &[], true, &["pull"]),
            rule(&["public/**"], &["*"], &[], false, &["pull"]),
            rule(&["team-a/**"], &[], &["team-a"], false, &["pull", "push"]),
            rule(&["**"], &["admin"], &[], false, &["*"]),
        ];
        let r = Rules::from_config(&auth);
        assert_eq!(r.repository(None, "public/x").names(), vec!["pull"]);
        assert_eq!(r.repository(None, "team-a/x"), Actions::NONE);
        assert_eq!(r.repository(Some("alice"), "team-a/x").names(), vec!["pull", "push"]);
        assert_eq!(r.repository(Some("bob"), "team-a/x"), Actions::NONE);
        assert_eq!(r.repository(Some("bob"), "public/x").names(), vec!["pull"]);
        assert_eq!(r.repository(Some("admin"), "public/x"), Actions::ALL);
        assert!(r.allows(None, &Access::catalog()));
        assert!(r.allows(Some("bob"), &Access::catalog()));
        assert!(!r.allows(Some("alice"), &Access::repository("team-a/x", DELETE)));
    }

    #[test]
    fn no_rules_means_authenticated_users_do_everything() {
        let r = Rules::from_config(&AuthConfig::default());
        assert_eq!(r.repository(Some("anyone"), "x/y"), Actions::ALL);
        assert_eq!(r.repository(None, "x/y"), Actions::NONE);
        assert!(!r.allows(None, &Access::catalog()));
    }
}

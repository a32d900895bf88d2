//! `WWW-Authenticate` challenges (RFC 7235) as registries send them: `Basic realm="…"` or the
//! Docker token spec's `Bearer realm="…",service="…",scope="…"`.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// The auth-params, keys lowercased, in order.
    Bearer(Vec<(String, String)>),
}

pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let h = header.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer(auth_params(rest))),
        _ => None,
    }
}

/// `key="value", key2=value2` in order; quoted values may hold `,` and `\"`.
pub fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let mut value = String::new();
        if let Some(q) = rest.strip_prefix('"') {
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &q[end.min(q.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        out.push((key, value));
        rest = rest.trim_start_matches([',', ' ']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer(vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/alpine:pull".into()),
            ]))
        );
    }

    #[test]
    fn odd_spellings() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        let Some(Challenge::Bearer(p)) = parse_challenge(
            r#"bearer realm=http://x/token, scope="repository:a:pull,push repository:b:pull",error="insufficient_scope""#,
        ) else {
            panic!()
        };
        assert_eq!(p[0], ("realm".into(), "http://x/token".into()));
        assert_eq!(p[1].1, "repository:a:pull,push repository:b:pull");
        assert_eq!(p[2], ("error".into(), "insufficient_scope".into()));
        let Some(Challenge::Bearer(p)) = parse_challenge(r#"Bearer realm="a\"b",service=s"#) else {
            panic!()
        };
        assert_eq!(p, vec![("realm".into(), "a\"b".into()), ("service".into(), "s".into())]);
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}

//! Property tests of every parser that reads client input (proptest; the same parsers have
//! cargo-fuzz targets in fuzz/ for longer runs): repository names, tags, digests, upload ids,
//! `/v2/` routes, `Range`, `Content-Range`, token scopes, `Authorization`, the
//! `WWW-Authenticate` values Wharf writes, configuration overlays and manifests. Each must never
//! panic on any input, and what it accepts must round-trip.

use proptest::prelude::*;
use wharf::auth::scope::{Access, challenge_scope, parse_scopes};
use wharf::http::headers::{RangeRequest, parse_content_range, parse_range};
use wharf::http::route::{self, Reference, V2Route};
use wharf::registry::digest::{Algorithm, Digest};
use wharf::registry::manifests::{
    MAX_JSON_DEPTH, ManifestInfo, nesting_exceeds, parse_manifest, read_stored, references,
};
use wharf::registry::names::{RepoName, Tag, UploadId};
use wharf::storage::fs::{is_temp, temp_name};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A repository name from the spec's grammar: components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn repo_name() -> impl Strategy<Value = String> {
    let component = (
        "[a-z0-9]{1,6}",
        prop::collection::vec(("(\\.|_|__|-{1,3})", "[a-z0-9]{1,6}"), 0..3),
    )
        .prop_map(|(first, rest)| {
            let mut s = first;
            for (sep, part) in rest {
                s.push_str(&sep);
                s.push_str(&part);
            }
            s
        });
    prop::collection::vec(component, 1..5).prop_map(|c| c.join("/"))
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
    ]
}

/// Text that looks like what attackers send: path and header punctuation, encodings, unicode.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9./_%:-]{0,40}",
        prop::collection::vec(
            prop_oneof![
                Just("/".to_owned()),
                Just("..".to_owned()),
                Just("%2e".to_owned()),
                Just("%2f".to_owned()),
                Just("%252e".to_owned()),
                Just("\0".to_owned()),
                Just("sha256:".to_owned()),
                Just("blobs".to_owned()),
                Just("uploads".to_owned()),
                Just("manifests".to_owned()),
                "[a-z]{1,3}",
            ],
            0..12
        )
        .prop_map(|v| v.concat()),
    ]
}

/// Garbage collection's mark of `body` holds every blob, subject and child of the reading `info`.
fn marks_every_reference(info: &ManifestInfo, body: &str) -> Result<(), TestCaseError> {
    let marked = references(body.as_bytes()).unwrap();
    for d in info.blobs.iter().chain(&info.subject) {
        prop_assert!(marked.blobs.contains(d), "{} not marked in {}", d, body);
    }
    for d in &info.children {
        prop_assert!(marked.children.contains(d), "{} not marked in {}", d, body);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn repo_names_round_trip_and_never_escape(s in hostile_text()) {
        if let Ok(n) = RepoName::parse(&s) {
            prop_assert_eq!(n.as_str(), s.as_str());
            prop_assert!(s.len() <= 255);
            prop_assert!(s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
            prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._/-".contains(&b)));
        }
    }

    #[test]
    fn grammar_names_are_accepted(s in repo_name()) {
        prop_assume!(s.len() <= 255);
        prop_assert_eq!(RepoName::parse(&s).map(|n| n.as_str().to_owned()).ok(), Some(s));
    }

    #[test]
    fn tags_follow_the_grammar(s in hostile_text(), good in tag()) {
        if let Some(t) = Tag::parse(&s) {
            prop_assert_eq!(t.as_str(), s.as_str());
            prop_assert!(!s.contains('/') && !s.starts_with('.') && !s.starts_with('-') && s.len() <= 128);
        }
        prop_assert_eq!(Tag::parse(&good).map(|t| t.as_str().to_owned()), Some(good));
    }

    #[test]
    fn digests_round_trip(s in hostile_text(), good in digest()) {
        if let Ok(d) = s.parse::<Digest>() {
            prop_assert_eq!(d.to_string(), s);
        }
        let d: Digest = good.parse().unwrap();
        prop_assert_eq!(d.to_string(), good.clone());
        prop_assert_eq!(d.hex().len(), match d.algorithm() { Algorithm::Sha256 => 64, Algorithm::Sha512 => 128 });
        // uppercase hex is a different, invalid digest
        let upper = good.to_uppercase().replacen("SHA", "sha", 1);
        prop_assert!(upper == good || upper.parse::<Digest>().is_err());
    }

    #[test]
    fn upload_ids_are_canonical_uuids(s in hostile_text()) {
        if let Some(id) = UploadId::parse(&s) {
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(s.len(), 36);
        }
        let id = UploadId::new();
        prop_assert_eq!(UploadId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn routes_never_panic_and_only_carry_valid_names(tail in hostile_text()) {
        for path in [format!("/v2/{tail}"), format!("/v2/a/{tail}"), tail.clone()] {
            if let Ok(r) = route::parse(&path) {
                let name = r.name().map(|n| n.as_str().to_owned());
                // a reference kept as invalid is neither a tag nor a digest (so it is unknown)
                if let V2Route::BadReference { reference, .. } = &r {
                    prop_assert!(Tag::parse(reference).is_none());
                    prop_assert!(reference.parse::<Digest>().is_err());
                }
                if let Some(n) = name {
                    prop_assert!(RepoName::parse(&n).is_ok());
                    let prefix = format!("/v2/{n}/");
                    prop_assert!(path.starts_with(&prefix));
                }
            }
        }
    }

    #[test]
    fn routes_round_trip(name in repo_name(), t in tag(), d in digest()) {
        prop_assume!(name.len() <= 255);
        let n = RepoName::parse(&name).unwrap();
        let dg: Digest = d.parse().unwrap();
        let id = UploadId::new();
        prop_assert_eq!(route::parse(&format!("/v2/{name}/tags/list")).unwrap(), V2Route::Tags { name: n.clone() });
        prop_assert_eq!(route::parse(&format!("/v2/{name}/blobs/uploads/")).unwrap(), V2Route::UploadStart { name: n.clone() });
        prop_assert_eq!(
            route::parse(&format!("/v2/{name}/blobs/uploads/{id}")).unwrap(),
            V2Route::Upload { name: n.clone(), id }
        );
        prop_assert_eq!(
            route::parse(&format!("/v2/{name}/blobs/{d}")).unwrap(),
            V2Route::Blob { name: n.clone(), digest: dg.clone() }
        );
        prop_assert_eq!(
            route::parse(&format!("/v2/{name}/manifests/{t}")).unwrap(),
            V2Route::Manifest { name: n.clone(), reference: Reference::Tag(Tag::parse(&t).unwrap()) }
        );
        prop_assert_eq!(
            route::parse(&format!("/v2/{name}/manifests/{d}")).unwrap(),
            V2Route::Manifest { name: n.clone(), reference: Reference::Digest(dg.clone()) }
        );
        prop_assert_eq!(
            route::parse(&format!("/v2/{name}/referrers/{d}")).unwrap(),
            V2Route::Referrers { name: n, digest: dg }
        );
    }

    #[test]
    fn content_range_round_trips(s in hostile_text(), start in 0u64..u64::MAX / 2, len in 1u64..1 << 40) {
        if let Ok((a, Some(l))) = parse_content_range(&s) {
            prop_assert!(l >= 1);
            prop_assert!(a.checked_add(l - 1).is_some());
        }
        let end = start + len - 1;
        for v in [format!("{start}-{end}"), format!("bytes {start}-{end}/*"), format!("bytes={start}-{end}")] {
            prop_assert_eq!(parse_content_range(&v).unwrap(), (start, Some(len)));
        }
        if len > 1 {
            let backwards = format!("{end}-{start}");
            prop_assert!(parse_content_range(&backwards).is_err());
        }
    }

    /// Arithmetic on client numbers: over the whole u64 domain, a chunk's length is exact when it
    /// fits and `None` (refused with 416) when it does not; nothing wraps, nothing panics.
    #[test]
    fn content_range_lengths_never_wrap(a in any::<u64>(), b in any::<u64>(), edge in 0u64..4) {
        for (start, end) in [(a, b), (a.min(edge), u64::MAX - edge.min(1)), (edge, u64::MAX)] {
            match parse_content_range(&format!("{start}-{end}")) {
                Ok((s, len)) => {
                    prop_assert!(end >= start);
                    prop_assert_eq!(s, start);
                    let exact = u128::from(end) - u128::from(start) + 1;
                    prop_assert_eq!(len.map(u128::from), (exact <= u128::from(u64::MAX)).then_some(exact));
                }
                Err(_) => prop_assert!(end < start),
            }
        }
    }

    #[test]
    fn ranges_stay_inside_the_blob(h in hostile_text(), size in 0u64..1 << 20, a in 0u64..1 << 21, b in 0u64..1 << 21) {
        for header in [h.clone(), format!("bytes={h}"), format!("bytes={a}-{b}"), format!("bytes=-{b}"), format!("bytes={a}-")] {
            match parse_range(Some(&header), size) {
                RangeRequest::Partial(x, y) => prop_assert!(x < y && y <= size, "{header} on {size}: {x}..{y}"),
                RangeRequest::Full | RangeRequest::Unsatisfiable => {}
            }
        }
        let want = if a > b { RangeRequest::Full } else if a >= size { RangeRequest::Unsatisfiable } else { RangeRequest::Partial(a, b.min(size - 1) + 1) };
        prop_assert_eq!(parse_range(Some(&format!("bytes={a}-{b}")), size), want);
    }

    #[test]
    fn scopes_round_trip_through_challenges(s in hostile_text(), names in prop::collection::vec(repo_name(), 1..4), actions in prop::collection::vec(prop_oneof![Just("pull"), Just("push"), Just("delete")], 1..4)) {
        let _ = parse_scopes(&s);
        let required: Vec<Access> = names.iter().flat_map(|n| actions.iter().map(move |a| Access::repository(n, a))).collect();
        let parsed = parse_scopes(&challenge_scope(&required));
        for a in &required {
            prop_assert!(parsed.iter().any(|r| r.covers(a)), "{:?} lost", a);
        }
        for r in &parsed {
            prop_assert!(names.contains(&r.name));
            prop_assert!(r.actions.iter().all(|x| actions.contains(&x.as_str())));
        }
        // names with a registry host and port keep their colons
        let host = format!("localhost:5000/{}", names[0]);
        let p = parse_scopes(&format!("repository:{host}:pull,push"));
        prop_assert_eq!(p.len(), 1);
        prop_assert_eq!(&p[0].name, &host);
    }

    #[test]
    fn challenge_parameters_round_trip(realm in any::<String>(), service in any::<String>()) {
        prop_assume!(!realm.contains(['\r', '\n']) && !service.contains(['\r', '\n']));
        let header = format!("Bearer realm={},service={}", wharf::auth::quoted(&realm), wharf::auth::quoted(&service));
        let params = parse_challenge(header.strip_prefix("Bearer ").unwrap());
        prop_assert_eq!(params, vec![("realm".to_owned(), realm), ("service".to_owned(), service)]);
    }

    #[test]
    fn authorization_headers_never_panic_and_basic_round_trips(v in any::<String>(), user in "[^:\\x00-\\x1f]{1,20}", pass in any::<String>()) {
        use base64::Engine;
        let mut h = axum::http::HeaderMap::new();
        if let Ok(value) = axum::http::HeaderValue::from_str(&v) {
            h.insert("authorization", value);
            let _ = wharf::auth::credentials(&h);
        }
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert("authorization", axum::http::HeaderValue::from_str(&format!("Basic {b}")).unwrap());
        match wharf::auth::credentials(&h) {
            wharf::auth::Credentials::Basic { user: u, password: p } => {
                prop_assert_eq!(u, user);
                prop_assert_eq!(p, pass);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn manifests_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), ct in hostile_text(), json in json_value()) {
        let _ = parse_manifest(&bytes, Some(&ct));
        let _ = parse_manifest(&bytes, None);
        let text = json.to_string();
        let _ = parse_manifest(text.as_bytes(), Some("application/vnd.oci.image.manifest.v1+json"));
        let _ = parse_manifest(text.as_bytes(), None);
    }

    #[test]
    fn image_manifests_parse_to_what_they_reference(config in digest(), layers in prop::collection::vec(digest(), 0..8), subject in prop::option::of(digest()), docker in any::<bool>()) {
        let mt = if docker { "application/vnd.docker.distribution.manifest.v2+json" } else { "application/vnd.oci.image.manifest.v1+json" };
        let desc = |d: &str| serde_json::json!({"mediaType": "application/octet-stream", "digest": d, "size": 1});
        let mut m = serde_json::json!({"schemaVersion": 2, "mediaType": mt, "config": desc(&config),
            "layers": layers.iter().map(|l| desc(l)).collect::<Vec<_>>()});
        if let Some(s) = &subject {
            m["subject"] = desc(s);
        }
        let info = parse_manifest(m.to_string().as_bytes(), Some(mt)).unwrap();
        let blobs: Vec<String> = info.blobs.iter().map(|d| d.to_string()).collect();
        let mut want = vec![config];
        want.extend(layers);
        prop_assert_eq!(blobs, want);
        prop_assert_eq!(info.media_type, mt);
        prop_assert_eq!(info.subject.map(|d| d.to_string()), subject);
        prop_assert!(!info.is_index);
    }

    #[test]
    fn nesting_is_measured_exactly(depth in 0usize..200, noise in "[a-z\\[\\]{}\\\\\"]{0,20}") {
        let mut s = String::new();
        for i in 0..depth {
            s.push_str(if i % 2 == 0 { "[" } else { "{\"k\":" });
        }
        // a string full of brackets and escapes does not count
        s.push_str(&serde_json::to_string(&noise).unwrap());
        for i in (0..depth).rev() {
            s.push(if i % 2 == 0 { ']' } else { '}' });
        }
        prop_assert_eq!(nesting_exceeds(s.as_bytes(), MAX_JSON_DEPTH), depth > MAX_JSON_DEPTH);
        let _ = nesting_exceeds(noise.as_bytes(), MAX_JSON_DEPTH);
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("schemaVersion".to_owned()),
            Just("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned()),
            Just("application/vnd.oci.image.index.v1+json".to_owned()),
            any::<String>()
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        let key = prop_oneof![
            Just("schemaVersion".to_owned()),
            Just("mediaType".to_owned()),
            Just("config".to_owned()),
            Just("layers".to_owned()),
            Just("manifests".to_owned()),
            Just("subject".to_owned()),
            Just("digest".to_owned()),
            Just("size".to_owned()),
            Just("annotations".to_owned()),
            Just("artifactType".to_owned()),
            Just("Manifests".to_owned()),
            Just("MediaType".to_owned()),
            Just("Digest".to_owned()),
            "[a-z]{1,4}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// RFC 9110 auth-params (`key=token` or `key="quoted \" string"`), as a client reads a challenge.
fn parse_challenge(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || *c == ' ') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_ascii_lowercase(), value));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Environment overlays: any REGISTRY_*/WHARF_* variable with any value loads or fails with
    /// a message naming a key, never a panic; and the values that should apply do.
    #[test]
    fn config_overlays_never_panic_and_apply(
        keys in prop::collection::vec(prop_oneof![
            Just("REGISTRY_HTTP_ADDR"), Just("REGISTRY_STORAGE_DELETE_ENABLED"), Just("WHARF_LOG_LEVEL"),
            Just("REGISTRY_AUTH"), Just("REGISTRY_AUTH_HTPASSWD_REALM"), Just("REGISTRY_HTTP_TLS_MINIMUMTLS"),
            Just("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE"), Just("WHARF_HTTP_DRAINTIMEOUT"),
            Just("REGISTRY_STORAGE"), Just("REGISTRY_"), Just("WHARF_"), Just("REGISTRY_NOTIFICATIONS_ENDPOINTS"),
            Just("WHARF_STORAGE_S3_CHUNKSIZE"), Just("REGISTRY_HTTP_HEADERS_X"),
        ], 0..5),
        values in prop::collection::vec(any::<String>(), 5),
        file in any::<String>(),
        delete in any::<bool>(),
        port in 1u16..,
    ) {
        let env: Vec<(String, String)> = keys.iter().zip(&values).map(|(k, v)| (k.to_string(), v.clone())).collect();
        let _ = wharf::config::load(None, &env);
        let dir = tempfile::tempdir().unwrap();
        for name in ["c.toml", "c.yml"] {
            let p = dir.path().join(name);
            std::fs::write(&p, &file).unwrap();
            let _ = wharf::config::load(Some(&p), &env);
        }
        let env = vec![
            ("REGISTRY_STORAGE_DELETE_ENABLED".to_owned(), (!delete).to_string()),
            ("WHARF_STORAGE_DELETE_ENABLED".to_owned(), delete.to_string()),
            ("REGISTRY_HTTP_ADDR".to_owned(), format!("127.0.0.1:{port}")),
        ];
        let c = wharf::config::load(None, &env).unwrap();
        prop_assert_eq!(c.storage.delete.enabled, delete, "WHARF_* wins over REGISTRY_*");
        prop_assert_eq!(c.http.addr, format!("127.0.0.1:{port}"));
    }
}

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// A manifest whose type signals are drawn independently: `mediaType` (absent, any of the four
/// types), `config`, `layers`, `manifests` (absent, null, empty, one child), a second spelling
/// of a field that case-insensitive readers match, `schemaVersion`.
fn signal_manifest() -> impl Strategy<Value = String> {
    let field = |name: &'static str, values: Vec<&'static str>| {
        prop::sample::select(values).prop_map(move |v| {
            if v.is_empty() {
                String::new()
            } else {
                format!(r#","{name}":{v}"#)
            }
        })
    };
    const DESC: &str = r#"{"mediaType":"application/octet-stream","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":1}"#;
    const OTHER: &str = r#"{"mediaType":"application/octet-stream","digest":"sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9","size":1}"#;
    let layers = format!("[{DESC}]");
    let children = format!("[{OTHER}]");
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    (
        prop::sample::select(vec![
            "",
            "\"application/vnd.oci.image.manifest.v1+json\"",
            "\"application/vnd.oci.image.index.v1+json\"",
            "\"application/vnd.docker.distribution.manifest.v2+json\"",
            "\"application/vnd.docker.distribution.manifest.list.v2+json\"",
        ]),
        field("config", vec!["", DESC]),
        field("layers", vec!["", "[]", leak(layers.clone())]),
        field("manifests", vec!["", "null", "[]", leak(children.clone())]),
        prop_oneof![
            6 => Just(String::new()),
            1 => Just(format!(r#","Manifests":{children}"#)),
            1 => Just(r#","MediaType":"application/vnd.oci.image.index.v1+json""#.to_owned()),
            1 => Just(format!(r#","Layers":{children}"#)),
            1 => Just(format!(r#","config":{OTHER}"#)),
        ],
        prop_oneof![8 => Just("2"), 1 => Just("1"), 1 => Just("\"2\"")],
    )
        .prop_map(|(mt, config, layers, manifests, extra, version)| {
            let mt = if mt.is_empty() {
                String::new()
            } else {
                format!(r#","mediaType":{mt}"#)
            };
            format!(r#"{{"schemaVersion":{version}{mt}{config}{layers}{manifests}{extra}}}"#)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    /// Class: manifests with conflicting type signals. Whatever a push's signals, a manifest is
    /// accepted only if every later reader of its stored bytes (GET, referrers, garbage
    /// collection) reads it exactly as it was accepted, and garbage collection's mark covers
    /// everything it names.
    #[test]
    fn an_accepted_manifest_has_one_reading_everywhere(
        body in prop_oneof![signal_manifest(), json_value().prop_map(|v| v.to_string())],
        ct in prop_oneof![Just(None), prop::sample::select(MANIFEST_TYPES).prop_map(Some),
            Just(Some("application/json")), Just(Some("application/octet-stream"))],
    ) {
        let Ok(info) = parse_manifest(body.as_bytes(), ct) else { return Ok(()) };
        let stored = read_stored(body.as_bytes()).expect("an accepted manifest reads back");
        prop_assert_eq!(&stored, &info, "{} pushed as {:?}", body, ct);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let o = v.as_object().unwrap();
        let present = |k: &str| o.get(k).is_some_and(|x| !x.is_null());
        prop_assert!(!(present("manifests") && (present("config") || present("layers"))), "{}", body);
        prop_assert!(!o.keys().any(|k| ["Manifests", "MediaType", "Layers", "Config"].contains(&k.as_str())), "{}", body);
        if info.media_type.contains("docker") {
            prop_assert_eq!(o.get("mediaType").and_then(|m| m.as_str()), Some(info.media_type.as_str()));
        }
        marks_every_reference(&info, &body)?;
    }

    /// Stored manifests of any shape (written by registry:2 or an older Wharf): garbage
    /// collection's mark covers the reading GET serves.
    #[test]
    fn gc_marks_at_least_the_served_reading(body in prop_oneof![signal_manifest(), json_value().prop_map(|v| v.to_string())]) {
        let Ok(info) = read_stored(body.as_bytes()) else { return Ok(()) };
        marks_every_reference(&info, &body)?;
    }

    /// Class: names that collide with storage files. No valid tag or repository component is
    /// one of the filesystem driver's own (hidden) files, and every temporary name it makes is.
    #[test]
    fn storage_files_never_hide_a_valid_name(
        t in tag(),
        repo in repo_name(),
        hex in "[0-9a-f]{32}",
        name in prop_oneof![Just("link".to_owned()), Just("data".to_owned()), Just("startedat".to_owned()), "[0-9]{1,12}", any::<String>()],
    ) {
        for n in [t.clone(), format!("{t}.tmp-{hex}")] {
            if let Some(valid) = Tag::parse(&n) {
                prop_assert!(!is_temp(valid.as_str()), "tag {}", n);
            }
        }
        let with_suffix = format!("{repo}.tmp-{hex}");
        for r in [&repo, &with_suffix] {
            let parsed = RepoName::parse(r);
            prop_assert!(parsed.is_ok(), "{}", r);
            for component in r.split('/') {
                prop_assert!(!is_temp(component), "component {} of {}", component, r);
            }
        }
        let tmp = temp_name(&name);
        prop_assert!(is_temp(&tmp));
        prop_assert!(Tag::parse(&tmp).is_none() && RepoName::parse(&tmp).is_err(), "{}", tmp);
    }
}

//! The loader: defaults, file, `REGISTRY_*` and `WHARF_*`, and the keys errors name.

use std::time::Duration;

use super::super::EvictAfter;
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
fn s3_keys_from_registry_variables() {
    let c = load(
        None,
        &env(&[
            ("REGISTRY_STORAGE", "s3"),
            ("REGISTRY_STORAGE_S3_BUCKET", "images"),
            ("REGISTRY_STORAGE_S3_REGION", "eu-west-1"),
            ("REGISTRY_STORAGE_S3_REGIONENDPOINT", "http://127.0.0.1:5406"),
            ("REGISTRY_STORAGE_S3_ACCESSKEY", "ak"),
            ("REGISTRY_STORAGE_S3_SECRETKEY", "sk"),
            ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/registry"),
            ("REGISTRY_STORAGE_S3_CHUNKSIZE", "8388608"),
            ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true"),
            ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true"),
        ]),
    )
    .unwrap();
    let s3 = &c.storage.s3;
    assert!(s3.enabled());
    assert_eq!(
        (s3.bucket.as_str(), s3.region.as_str(), s3.regionendpoint.as_str()),
        ("images", "eu-west-1", "http://127.0.0.1:5406")
    );
    assert_eq!((s3.accesskey.as_str(), s3.secretkey.as_str()), ("ak", "sk"));
    assert_eq!((s3.rootdirectory.as_str(), s3.chunksize), ("/registry", 8 << 20));
    assert!(s3.forcepathstyle && c.storage.redirect.disable);
    assert!(!load(None, &[]).unwrap().storage.s3.enabled());
    let e = load(
        None,
        &env(&[
            ("REGISTRY_STORAGE_S3_BUCKET", "b"),
            ("REGISTRY_STORAGE_S3_CHUNKSIZE", "1024"),
        ]),
    )
    .unwrap_err();
    assert_eq!(e.key, "storage.s3.chunksize");
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
fn registry_auth_selects_the_type() {
    let c = load(
        None,
        &env(&[
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Wharf"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", "/auth/htpasswd"),
        ]),
    )
    .unwrap();
    let h = c.auth.htpasswd.unwrap();
    assert_eq!((h.realm.as_str(), h.path.as_str()), ("Wharf", "/auth/htpasswd"));
    assert!(c.auth.token.is_none());
    // The path alone selects htpasswd too, as Distribution's map does.
    let c = load(None, &env(&[("REGISTRY_AUTH_HTPASSWD_PATH", "/h")])).unwrap();
    assert_eq!(c.auth.htpasswd.unwrap().realm, "Registry Realm");
    let e = load(None, &env(&[("REGISTRY_AUTH", "htpasswd")])).unwrap_err();
    assert_eq!(e.key, "auth.htpasswd.path");
    let e = load(None, &env(&[("REGISTRY_AUTH", "silly")])).unwrap_err();
    assert_eq!(e.key, "auth");
    let c = load(
        None,
        &env(&[
            ("REGISTRY_AUTH", "token"),
            ("REGISTRY_AUTH_TOKEN_REALM", "https://auth.example/token"),
            ("REGISTRY_AUTH_TOKEN_SERVICE", "registry.example"),
            ("REGISTRY_AUTH_TOKEN_ISSUER", "auth.example"),
            ("REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", "/certs/issuer.pem"),
        ]),
    )
    .unwrap();
    let t = c.auth.token.unwrap();
    assert_eq!(t.rootcertbundle, "/certs/issuer.pem");
    assert_eq!(t.expiration, Duration::from_secs(5 * 60));
}

#[test]
fn environment_completes_a_section_the_file_started() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[http.tls]\nminimumtls = \"tls1.3\"\n").unwrap();
    let c = load(
        Some(&f),
        &env(&[("REGISTRY_HTTP_TLS_CERTIFICATE", "/c"), ("REGISTRY_HTTP_TLS_KEY", "/k")]),
    )
    .unwrap();
    let t = c.http.tls.unwrap();
    assert_eq!((t.certificate.as_str(), t.minimumtls.as_str()), ("/c", "tls1.3"));
}

#[test]
fn tls_variables_create_the_section() {
    let c = load(
        None,
        &env(&[
            ("REGISTRY_HTTP_TLS_CERTIFICATE", "/certs/domain.crt"),
            ("REGISTRY_HTTP_TLS_KEY", "/certs/domain.key"),
            ("REGISTRY_HTTP_TLS_CLIENTCAS", "/certs/ca1.pem, /certs/ca2.pem"),
        ]),
    )
    .unwrap();
    let t = c.http.tls.unwrap();
    assert_eq!(t.certificate, "/certs/domain.crt");
    assert_eq!(t.clientcas, vec!["/certs/ca1.pem", "/certs/ca2.pem"]);
    assert_eq!(t.minimumtls, "tls1.2");
    let e = load(None, &env(&[("REGISTRY_HTTP_TLS_CERTIFICATE", "/c")])).unwrap_err();
    assert_eq!(e.key, "http.tls.key");
    assert!(load(None, &[]).unwrap().http.tls.is_none());
}

#[test]
fn proxy_keys() {
    let c = load(
        None,
        &env(&[
            ("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io"),
            ("REGISTRY_PROXY_USERNAME", "me"),
            ("REGISTRY_PROXY_PASSWORD", "pw"),
            ("REGISTRY_PROXY_TTL", "10m"),
        ]),
    )
    .unwrap();
    assert!(c.proxy.enabled());
    assert_eq!(
        (c.proxy.remoteurl.as_str(), c.proxy.username.as_str(), c.proxy.ttl),
        ("https://registry-1.docker.io", "me", Duration::from_secs(10 * 60))
    );
    assert!(!load(None, &[]).unwrap().proxy.enabled());
    let e = load(None, &env(&[("REGISTRY_PROXY_REMOTEURL", "registry-1.docker.io")])).unwrap_err();
    assert_eq!(e.key, "proxy.remoteurl");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    let upstream = |prefix: &str| format!("[[proxy.upstream]]\nprefix = \"{prefix}\"\nurl = \"https://quay.io\"\n");
    std::fs::write(&f, upstream("quay/") + &upstream("hub/")).unwrap();
    assert_eq!(load(Some(&f), &[]).unwrap().proxy.upstream.len(), 2);
    for (bad, key) in [
        (upstream("quay"), "proxy.upstream[0].prefix"),
        (upstream("Quay/"), "proxy.upstream[0].prefix"),
        (upstream("a/") + &upstream("a/b/"), "proxy.upstream[1].prefix"),
        (
            upstream("a/").replace("https://quay.io", "quay.io"),
            "proxy.upstream[0].url",
        ),
        (upstream("a/") + "ttl = \"soon\"\n", "proxy.upstream[0].ttl"),
    ] {
        std::fs::write(&f, bad).unwrap();
        assert_eq!(load(Some(&f), &[]).unwrap_err().key, key);
    }
}

#[test]
fn proxy_eviction_keys() {
    let c = load(
        None,
        &env(&[
            ("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io"),
            ("REGISTRY_PROXY_EVICTAFTER", "720h"),
            ("WHARF_PROXY_MAXSIZE", "50GiB"),
        ]),
    )
    .unwrap();
    assert_eq!(
        (c.proxy.evictafter, c.proxy.maxsize),
        (EvictAfter::After(Duration::from_secs(720 * 3600)), Some(50 << 30))
    );
    assert_eq!(super::super::parse_size("50GiB"), Ok(50 << 30));
    assert_eq!(super::super::parse_size("1.5 kB"), Ok(1500));
    assert_eq!(super::super::parse_size("1048576"), Ok(1 << 20));
    assert!(super::super::parse_size("lots").is_err());
    let remote = ("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io");
    for (k, v, key) in [
        ("REGISTRY_PROXY_EVICTAFTER", "a while", "proxy.evictafter"),
        // Not above the TTL (5m): a tag in use could be evicted.
        ("REGISTRY_PROXY_EVICTAFTER", "5m", "proxy.evictafter"),
        ("REGISTRY_PROXY_MAXSIZE", "50 GiBs", "proxy.maxsize"),
    ] {
        assert_eq!(load(None, &env(&[remote, (k, v)])).unwrap_err().key, key, "{k}={v}");
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    let up = "[[proxy.upstream]]\nprefix = \"a/\"\nurl = \"https://quay.io\"\nttl = \"2h\"\n";
    std::fs::write(&f, format!("[proxy]\nevictafter = \"1h\"\n{up}")).unwrap();
    assert_eq!(load(Some(&f), &[]).unwrap_err().key, "proxy.upstream[0].evictafter");
    std::fs::write(&f, format!("[proxy]\nevictafter = \"1h\"\n{up}evictafter = \"off\"\n")).unwrap();
    assert!(load(Some(&f), &[]).is_ok());
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

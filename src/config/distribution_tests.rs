//! registry:2's `config.yml` and variables, mapped onto Wharf's keys.

use super::*;

fn translate(yaml: &str) -> (Result<toml::Table, (String, String)>, Vec<String>) {
    let mut notes = Vec::new();
    let r = from_yaml(yaml, &mut notes);
    (r, notes.into_iter().map(|n| n.message).collect())
}

/// registry:2's own /etc/docker/registry/config.yml.
const REGISTRY2_DEFAULT: &str = "\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
";

#[test]
fn registry2_default_config() {
    let (tree, notes) = translate(REGISTRY2_DEFAULT);
    let tree = tree.unwrap();
    assert_eq!(tree["version"].as_str(), Some("0.1"));
    assert_eq!(
        tree["storage"]["filesystem"]["rootdirectory"].as_str(),
        Some("/var/lib/registry")
    );
    assert_eq!(tree["http"]["addr"].as_str(), Some(":5000"));
    assert_eq!(
        tree["http"]["headers"]["X-Content-Type-Options"].as_array().unwrap()[0].as_str(),
        Some("nosniff")
    );
    assert_eq!(tree["health"]["storagedriver"]["threshold"].as_integer(), Some(3));
    assert!(tree["storage"].get("cache").is_none() && tree.get("log").is_none());
    assert!(notes.iter().any(|n| n.contains("log.fields")), "{notes:?}");
    assert!(
        notes.iter().any(|n| n.contains("storage.cache has no effect")),
        "{notes:?}"
    );
}

#[test]
fn unknown_and_unsupported_keys_are_named() {
    let (tree, notes) = translate(
        "version: 0.1\nhttp:\n  addr: :5000\n  adress: x\n  prefix: /r/\nproxy:\n  remoteurl: https://registry-1.docker.io\n  exec:\n    command: x\nnotifications:\n  endpoints: []\nfrobnicate: 1\n",
    );
    let tree = tree.unwrap();
    assert!(tree["http"].get("adress").is_none());
    assert_eq!(
        tree["proxy"]["remoteurl"].as_str(),
        Some("https://registry-1.docker.io")
    );
    for key in [
        "http.adress",
        "http.prefix",
        "proxy.exec",
        "notifications",
        "frobnicate",
    ] {
        assert!(notes.iter().any(|n| n.contains(key)), "{key} not named in {notes:?}");
    }
    assert!(!notes.iter().any(|n| n.contains("http.addr")), "{notes:?}");
}

#[test]
fn renamed_and_converted_values() {
    let (tree, notes) = translate("loglevel: debug\nlog:\n  formatter: logstash\n");
    let tree = tree.unwrap();
    assert_eq!(tree["log"]["level"].as_str(), Some("debug"));
    assert_eq!(tree["log"]["formatter"].as_str(), Some("json"));
    assert!(notes.iter().any(|n| n.contains("logstash")));
}

#[test]
fn operational_keys_pass_through() {
    let (tree, notes) = translate(
        "log:\n  accesslog:\n    disabled: true\nhttp:\n  draintimeout: 5s\n  debug:\n    addr: 127.0.0.1:5001\n    prometheus:\n      enabled: true\n      path: /m\nstorage:\n  delete:\n    enabled: true\n  maintenance:\n    readonly:\n      enabled: false\n    uploadpurging:\n      enabled: true\n      age: 1h\n      interval: 10m\n      dryrun: false\n",
    );
    let tree = tree.unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(tree["log"]["accesslog"]["disabled"].as_bool(), Some(true));
    assert_eq!(tree["http"]["debug"]["prometheus"]["path"].as_str(), Some("/m"));
    assert_eq!(
        tree["storage"]["maintenance"]["uploadpurging"]["age"].as_str(),
        Some("1h")
    );
}

#[test]
fn required_features_this_build_lacks_stop_startup() {
    // Whether these pass depends on the build: only check that they never pass silently.
    for yaml in [
        "auth:\n  htpasswd:\n    realm: r\n    path: /auth/htpasswd\n",
        "http:\n  tls:\n    certificate: /c\n    key: /k\n",
        "storage:\n  azure:\n    accountname: a\n",
        "storage:\n  inmemory:\n",
        "auth:\n  silly:\n    realm: r\n",
    ] {
        let (tree, notes) = translate(yaml);
        match tree {
            Ok(t) => assert!(!t.is_empty() || !notes.is_empty(), "{yaml}: silently dropped"),
            Err((key, reason)) => assert!(reason.contains("refusing to start"), "{key}: {reason}"),
        }
    }
    let (r, _) = translate("storage:\n  azure:\n    accountname: a\n");
    assert_eq!(r.unwrap_err().0, "storage.azure");
}

#[test]
fn env_keys_wharf_lacks() {
    assert!(missing_env_key("REGISTRY_AUTH_FILE", "auth.file").unwrap().is_none());
    let n = missing_env_key("REGISTRY_PROXY_EXEC_COMMAND", "proxy.exec.command")
        .unwrap()
        .unwrap();
    assert!(n.warning && n.message.contains("proxy.username"), "{}", n.message);
    let n = missing_env_key("REGISTRY_HTTP_SECRET", "http.secret").unwrap().unwrap();
    assert!(!n.warning);
    assert!(missing_env_key("REGISTRY_STORAGE_AZURE_ACCOUNTNAME", "storage.azure.accountname").is_err());
    let n = missing_env_key("REGISTRY_FOO_BAR", "foo.bar").unwrap().unwrap();
    assert!(n.message.contains("foo.bar"));
}

#[test]
fn bad_yaml_is_reported() {
    let (r, _) = translate("http: [unclosed\n");
    assert_eq!(r.unwrap_err().0, "config file");
    let (r, _) = translate("- a\n- b\n");
    assert!(r.is_err());
    let (r, notes) = translate("");
    assert!(r.unwrap().is_empty() && notes.is_empty());
}

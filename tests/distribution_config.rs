//! Distribution's `config.yml` and `REGISTRY_*` variables (issue 8): a `registry:2` user keeps
//! their file; what Wharf does not do is named in a warning, never silently dropped.
mod common;
mod ops_support;
use common::*;
use ops_support::*;

use std::path::Path;
use std::time::Duration;

fn yaml(root: &Path, extra: &str) -> String {
    format!(
        "version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
  secret: asecretforlocaldevelopment
  frobnicate: yes
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
proxy:
  exec:
    command: docker-credential-helper
{extra}",
        root.display()
    )
}

#[tokio::test]
async fn serve_takes_a_registry2_config_yml() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let file = dir.path().join("config.yml");
    std::fs::write(&file, yaml(&root, "")).unwrap();
    let p = Proc::start(&["serve", file.to_str().unwrap()], &[]);
    let logs = p.logs().join("\n");
    for key in ["http.frobnicate", "proxy.exec", "log.fields"] {
        assert!(
            logs.lines().any(|l| l.contains("WARN") && l.contains(key)),
            "no warning names {key}:\n{logs}"
        );
    }
    assert!(logs.contains("http.secret has no effect"), "{logs}");
    let blob = random_bytes(5000, 3);
    let d = sha256_digest(&blob);
    let c = client();
    let r = c
        .post(p.url(&format!("/v2/yml/test/blobs/uploads/?digest={d}")))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let hex = d.strip_prefix("sha256:").unwrap();
    assert!(
        root.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
            .is_file()
    );
    let r = c
        .delete(p.url(&format!("/v2/yml/test/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "storage.delete.enabled from the YAML");
}

#[tokio::test]
async fn registry_variables_override_the_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        yaml(&root, "").replace("enabled: true\nhttp", "enabled: false\nhttp"),
    )
    .unwrap();
    let p = Proc::start(
        &["serve", file.to_str().unwrap()],
        &[("REGISTRY_STORAGE_DELETE_ENABLED", "true")],
    );
    let blob = random_bytes(100, 4);
    let d = sha256_digest(&blob);
    let c = client();
    let r = c
        .post(p.url(&format!("/v2/env/blobs/uploads/?digest={d}")))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c.delete(p.url(&format!("/v2/env/blobs/{d}"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
}

/// `registry garbage-collect [--dry-run] /etc/docker/registry/config.yml`, as the seeds run it;
/// the server's metrics then count the runs.
#[tokio::test]
async fn garbage_collect_takes_the_config_yml_and_metrics_count_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let file = dir.path().join("config.yml");
    std::fs::write(&file, yaml(&root, "")).unwrap();
    let mut p = Proc::start(&["serve", file.to_str().unwrap()], &[]);
    let c = client();
    let blob = random_bytes(20_000, 5);
    let d = sha256_digest(&blob);
    let r = c
        .post(p.url(&format!("/v2/gc/blobs/uploads/?digest={d}")))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(20)).unwrap().success());

    for dry in [true, false] {
        let mut cmd = wharf_cmd();
        cmd.arg("garbage-collect");
        if dry {
            cmd.arg("--dry-run");
        }
        let out = cmd.arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("blob {d}")), "the unreferenced blob: {stdout}");
    }
    let hex = d.strip_prefix("sha256:").unwrap();
    assert!(
        !root
            .join(format!("docker/registry/v2/blobs/sha256/{}/{hex}", &hex[..2]))
            .exists()
    );

    let p = Proc::start(&["serve", file.to_str().unwrap()], &[]);
    let text = c.get(p.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&text, "wharf_gc_runs_total"), 1.0, "{text}");
    assert_eq!(sample(&text, "wharf_gc_last_run_blobs"), 1.0);
    assert!(sample(&text, "wharf_gc_last_run_timestamp_seconds") > 1.7e9);
}

#[test]
fn check_config_prints_the_effective_settings() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let file = dir.path().join("config.yml");
    std::fs::write(&file, yaml(&root, "")).unwrap();
    let out = wharf_cmd().arg("check-config").arg(&file).output().unwrap();
    assert!(out.status.success());
    let effective: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(
        effective["storage"]["filesystem"]["rootdirectory"].as_str(),
        root.to_str()
    );
    assert_eq!(effective["storage"]["delete"]["enabled"].as_bool(), Some(true));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.frobnicate"));

    // A storage driver Wharf lacks is refused, never replaced by the filesystem.
    std::fs::write(&file, "version: 0.1\nstorage:\n  azure:\n    accountname: a\n").unwrap();
    let out = wharf_cmd().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage.azure") && err.contains("refusing to start"),
        "{err}"
    );
    std::fs::write(&file, "http: [unclosed\n").unwrap();
    let out = wharf_cmd().arg("check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid YAML"));
}

/// Every REGISTRY_* variable the course material (shared/seeds) uses is handled: applied,
/// refused with a reason (a feature this build lacks), or ignored with a warning naming it.
#[test]
fn every_variable_the_seeds_use_is_handled() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        "admin:$2y$05$3bBzXyK0JbSnQYGnJQvJ1e8ZX6y2Qx6l2g8m9j2n7W3K3q3h9oZ2S\n",
    )
    .unwrap();
    let cert = dir.path().join("domain.crt");
    let key = dir.path().join("domain.key");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("REGISTRY_STORAGE_DELETE_ENABLED", "true")],
        vec![("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io")],
        vec![
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", htpasswd.to_str().unwrap()),
        ],
        vec![
            ("REGISTRY_HTTP_TLS_CERTIFICATE", cert.to_str().unwrap()),
            ("REGISTRY_HTTP_TLS_KEY", key.to_str().unwrap()),
        ],
    ];
    for env in cases {
        let mut cmd = wharf_cmd();
        cmd.arg("check-config").envs(env.iter().copied());
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                for (name, _) in &env {
                    // applied (the key shows in the effective settings) or named in a warning
                    let key = name.trim_start_matches("REGISTRY_").to_ascii_lowercase();
                    let last = key.rsplit('_').next().unwrap();
                    assert!(
                        stdout.contains(last) || stderr.contains(name),
                        "{name}: neither applied nor named\n{stdout}\n{stderr}"
                    );
                }
            }
            Some(2) => assert!(stderr.contains("not supported by this build"), "{env:?}: {stderr}"),
            other => panic!("{env:?}: exit {other:?}: {stderr}"),
        }
    }
}

//! The command line and configuration: what a user sees when starting Wharf.
mod common;
use common::*;

use std::process::Command;

fn wharf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("REGISTRY_") || k.starts_with("WHARF_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn version_and_help() {
    let out = wharf().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("wharf {}", env!("CARGO_PKG_VERSION"))
    );
    let out = wharf().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("serve") && help.contains("REGISTRY_HTTP_ADDR"), "{help}");
    let out = wharf().args(["serve", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--config"));
}

/// A bad value stops start-up with one line naming the key and why, and exit code 2.
#[test]
fn bad_values_stop_startup_naming_the_key() {
    let cases = [
        ("REGISTRY_STORAGE_DELETE_ENABLED", "maybe", "storage.delete.enabled"),
        ("REGISTRY_HTTP_ADDR", "not an address", "http.addr"),
        ("WHARF_LOG_LEVEL", "loud", "log.level"),
    ];
    for (var, value, key) in cases {
        let out = wharf().args(["serve"]).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected, got: {err}");
        assert!(lines[0].contains(key) && lines[0].contains(var), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[storage.delete]\nenabled = 3\n").unwrap();
    let out = wharf().args(["serve", "--config"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage.delete.enabled"));
    std::fs::write(&file, "[http]\nadress = \":1\"\n").unwrap();
    let out = wharf().args(["serve"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown key in the file is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("adress"));
    let out = wharf()
        .args(["serve", "--config", "/nonexistent/wharf.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// registry:2's variables drive the server: address, storage root, deletes.
#[tokio::test]
async fn registry_variables_configure_the_server() {
    let data = tempfile::tempdir().unwrap();
    let root = data.path().join("registry");
    let s = Server::start_with(
        "",
        &[
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root.to_str().unwrap()),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
        ],
    );
    let blob = random_bytes(1000, 7);
    let d = sha256_digest(&blob);
    let c = client();
    let r = c
        .post(s.url(&format!("/v2/env/test/blobs/uploads/?digest={d}")))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let hex = d.strip_prefix("sha256:").unwrap();
    assert!(
        root.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
            .is_file()
    );
    assert!(
        !s.root().join("docker").exists(),
        "the environment overrides the file's root directory"
    );
    let r = c
        .delete(s.url(&format!("/v2/env/test/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "REGISTRY_STORAGE_DELETE_ENABLED=true enables deletes");
}

/// Without any configuration, data goes under $XDG_DATA_HOME/wharf (or ~/.local/share/wharf).
#[test]
fn default_storage_directory_is_user_writable() {
    let home = tempfile::tempdir().unwrap();
    let mut child = wharf()
        .args(["serve"])
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .env("WHARF_HTTP_ADDR", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let expected = home.path().join(".local/share/wharf");
    let ok = wait_for(std::time::Duration::from_secs(20), || expected.is_dir());
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "{} was not created", expected.display());
}

/// Distribution's in-memory driver: REGISTRY_STORAGE=inmemory (or a `[storage.inmemory]` table)
/// keeps the data in the server's memory and writes nothing to the filesystem root; it cannot be
/// combined with storage.s3.
#[tokio::test]
async fn registry_storage_inmemory_selects_the_in_memory_driver() {
    let s = Server::start_with("", &[("REGISTRY_STORAGE", "inmemory")]);
    // The log is read from the server's stderr by another thread: wait for the line.
    wait_for(std::time::Duration::from_secs(10), || {
        s.logs().iter().any(|l| l.contains("listening"))
    });
    let listening = s.logs().into_iter().find(|l| l.contains("listening")).unwrap();
    assert!(listening.contains("storage=inmemory"), "{listening}");
    let d = s.api().post_blob("mem/repo", b"kept in memory").await.unwrap();
    let r = client()
        .get(s.url(&format!("/v2/mem/repo/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], b"kept in memory");
    assert!(files_under(&s.root()).is_empty(), "{:?}", files_under(&s.root()));

    let out = wharf()
        .args(["serve"])
        .env("REGISTRY_STORAGE", "inmemory")
        .env("REGISTRY_STORAGE_S3_BUCKET", "b")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("storage.inmemory"));
}

//! Configuration: environment overlays (`KEY=value` lines) over a TOML or YAML file: loading
//! either succeeds or fails with a message; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (file, env) = s.split_once('\0').unwrap_or((s, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = wharf::config::load(None, &env);
    let dir = std::env::temp_dir().join(format!("wharf-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["c.toml", "c.yml"] {
        let p = dir.join(name);
        std::fs::write(&p, file).unwrap();
        let _ = wharf::config::load(Some(&p), &env);
    }
});

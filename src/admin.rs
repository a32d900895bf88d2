//! Small commands around the server: `check-config` (what Wharf makes of a configuration) and
//! `healthcheck` (a container HEALTHCHECK that needs no curl in the image).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

/// The effective configuration as TOML, with secret values replaced by `"<redacted>"`.
pub fn effective_config(config: &Config) -> String {
    let mut tree = toml::Value::try_from(config).expect("the configuration serializes");
    redact(&mut tree);
    toml::to_string(&tree).expect("TOML")
}

fn redact(v: &mut toml::Value) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let secret = ["secret", "password"].iter().any(|s| k.contains(s));
                if secret && v.as_str().is_some_and(|s| !s.is_empty()) {
                    *v = toml::Value::String("<redacted>".into());
                } else {
                    redact(v);
                }
            }
        }
        // `[[proxy.upstream]]` entries carry passwords too.
        toml::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Where a local client reaches a server listening on `addr`: the unspecified address
/// (`:5000`, `0.0.0.0:5000`, `[::]:5000`) is reached on loopback.
pub fn local_target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// GET /healthz on the configured address. Healthy: 200. A listener that does not answer in
/// HTTP (TLS) counts as healthy once it accepts the connection, since the process is serving.
pub fn healthcheck(config: &Config, timeout: Duration) -> anyhow::Result<()> {
    let addr = local_target(config.http.socket_addr().map_err(anyhow::Error::msg)?);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| anyhow::anyhow!("{addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    let mut n = 0;
    while n < head.len() {
        match s.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if n == 0 => anyhow::bail!("{addr}: no answer: {e}"),
            Err(_) => break,
        }
    }
    let head = &head[..n];
    if !head.starts_with(b"HTTP/") {
        println!("{addr}: accepting connections (not plain HTTP)");
        return Ok(());
    }
    if head.len() >= 12 && &head[9..12] == b"200" {
        println!("{addr}: healthy");
        Ok(())
    } else {
        anyhow::bail!("{addr}: /healthz answered {}", String::from_utf8_lossy(head).trim())
    }
}

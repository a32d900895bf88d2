//! Value types of the configuration, parsed once when it is loaded: durations as Distribution
//! writes them ("168h", "1m30s"), sizes ("50GiB"), and the keys that take one of a few words;
//! and the parsing of listening addresses, which `http` and `ops` share.
//!
//! Each deserializes from the string the user wrote and refuses a bad one with the message the
//! loader prints after the key ("invalid duration \"soon\": ..."); each serializes back to a
//! string the loader accepts, so `check-config` prints a configuration that loads again and
//! environment overrides keep the type of a string.

use std::fmt;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Durations as Distribution writes them: "168h", "10m", "1h30m", "45s".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?}: {e} (examples: 168h, 10m, 30s)"))
}

/// A duration the way Go prints one, without zero parts: "720h", "1h30m", "45s", "1s500ms".
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let s = d.as_secs();
    let n = d.subsec_nanos();
    let parts = [
        (s / 3600, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
        (u64::from(n / 1_000_000), "ms"),
        (u64::from(n / 1000 % 1000), "us"),
        (u64::from(n % 1000), "ns"),
    ];
    parts
        .iter()
        .filter(|(v, _)| *v != 0)
        .map(|(v, unit)| format!("{v}{unit}"))
        .collect()
}

/// A size in bytes: a number, optionally followed by a unit: B, KB/MB/GB/TB (powers of 1000) or
/// KiB/MiB/GiB/TiB (powers of 1024); K, M, G, T alone are binary. "50GiB", "1.5 TB", "1048576".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size {s:?} (examples: 50GiB, 500MB, 1048576)");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// A size in the largest unit that divides it exactly: "50GiB", "500MB", "1000001".
pub fn format_size(bytes: u64) -> String {
    let units = [
        (1u64 << 40, "TiB"),
        (1000u64.pow(4), "TB"),
        (1 << 30, "GiB"),
        (1000u64.pow(3), "GB"),
        (1 << 20, "MiB"),
        (1000u64.pow(2), "MB"),
        (1 << 10, "KiB"),
        (1000, "KB"),
    ];
    match units.iter().find(|(m, _)| bytes != 0 && bytes.is_multiple_of(*m)) {
        Some((m, unit)) => format!("{}{unit}", bytes / m),
        None => bytes.to_string(),
    }
}

/// A listening address as registry:2 writes one: `:5000` (all interfaces), `0.0.0.0:5000`,
/// `localhost:5000`, `[::1]:5000`.
pub fn resolve_addr(addr: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let a = addr.trim();
    let full = if a.starts_with(':') {
        format!("0.0.0.0{a}")
    } else {
        a.to_owned()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("invalid address {a:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("address {a:?} resolves to nothing"))
}

fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d)
}

/// `#[serde(with = "duration")]`: a `Duration` written as "30s".
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse_duration(&string(d)?).map_err(D::Error::custom)
    }

    /// `#[serde(with = "duration::positive")]`: as [`duration`](self), refusing zero.
    pub mod positive {
        use super::*;

        pub use super::serialize;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            match super::deserialize(d)? {
                d if d.is_zero() => Err(D::Error::custom("must be greater than zero")),
                d => Ok(d),
            }
        }
    }

    /// `#[serde(with = "duration::optional")]`: `None` written as "" (a default from elsewhere).
    pub mod optional {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&d.map(format_duration).unwrap_or_default())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            match string(d)?.as_str() {
                "" => Ok(None),
                s => parse_duration(s).map(Some).map_err(D::Error::custom),
            }
        }
    }
}

/// `#[serde(with = "size")]` on an `Option<u64>`: a size in bytes written as "50GiB", `None`
/// written as "" (or only spaces).
pub mod size {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.map(format_size).unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match string(d)?.as_str() {
            s if s.trim().is_empty() => Ok(None),
            s => parse_size(s).map(Some).map_err(D::Error::custom),
        }
    }
}

/// `#[serde(with = "at_least_one")]`: a count that must not be 0.
pub mod at_least_one {
    use super::*;

    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        match u32::deserialize(d)? {
            0 => Err(D::Error::custom("must be at least 1")),
            n => Ok(n),
        }
    }
}

/// `proxy.evictafter` and `[[proxy.upstream]] evictafter`: after how long unused cached tags are
/// evicted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EvictAfter {
    /// "": not set (an upstream takes `proxy.evictafter`; for `proxy` itself: never).
    #[default]
    Unset,
    /// "off" (or only spaces): never by age.
    Never,
    After(Duration),
}

impl EvictAfter {
    /// The limit, if any, with `inherited` standing in for `Unset`.
    pub fn or(self, inherited: EvictAfter) -> Option<Duration> {
        match (self, inherited) {
            (EvictAfter::After(d), _) | (EvictAfter::Unset, EvictAfter::After(d)) => Some(d),
            _ => None,
        }
    }
}

impl Serialize for EvictAfter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EvictAfter::Unset => s.serialize_str(""),
            EvictAfter::Never => s.serialize_str("off"),
            EvictAfter::After(d) => duration::serialize(d, s),
        }
    }
}

impl<'de> Deserialize<'de> for EvictAfter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = string(d)?;
        let t = s.trim();
        Ok(if s.is_empty() {
            EvictAfter::Unset
        } else if t.is_empty() || t.eq_ignore_ascii_case("off") {
            EvictAfter::Never
        } else {
            EvictAfter::After(parse_duration(t).map_err(D::Error::custom)?)
        })
    }
}

/// A key that takes one of a few words: `FromStr`, `Display` and serde as those words, and
/// "\"x\" is not one of a, b" for any other.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(format!("{s:?} is not one of {}", [$($word),+].join(", "))),
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                string(d)?.parse().map_err(D::Error::custom)
            }
        }
    };
}

word_enum! {
    /// `log.level`.
    LogLevel {
        Error = "error",
        Warn = "warn",
        Info = "info",
        Debug = "debug",
        Trace = "trace",
    }
}

word_enum! {
    /// `log.formatter` (Distribution's `logstash` is read as `json`).
    LogFormat {
        Text = "text",
        Json = "json",
    }
}

word_enum! {
    /// `http.tls.minimumtls`. Older versions are never offered.
    TlsVersion {
        Tls12 = "tls1.2",
        Tls13 = "tls1.3",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_they_parse() {
        for (text, secs) in [
            ("720h", 720 * 3600),
            ("1h30m", 5400),
            ("45s", 45),
            ("1m", 60),
            ("0s", 0),
        ] {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)));
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .starts_with("invalid duration \"soon\": ")
        );
    }

    #[test]
    fn sizes_print_as_they_parse() {
        for (text, bytes) in [
            ("50GiB", 50u64 << 30),
            ("500MB", 500_000_000),
            ("1000001", 1_000_001),
            ("0", 0),
        ] {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text), Ok(bytes));
        }
        assert_eq!(parse_size("1.5 kB"), Ok(1500));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn words() {
        assert_eq!("tls1.3".parse(), Ok(TlsVersion::Tls13));
        assert_eq!(
            "loud".parse::<LogLevel>().unwrap_err(),
            "\"loud\" is not one of error, warn, info, debug, trace"
        );
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn evict_after_inherits_only_when_unset() {
        let d = Duration::from_secs(7200);
        assert_eq!(EvictAfter::Unset.or(EvictAfter::After(d)), Some(d));
        assert_eq!(EvictAfter::Unset.or(EvictAfter::Unset), None);
        assert_eq!(EvictAfter::Never.or(EvictAfter::After(d)), None);
        assert_eq!(EvictAfter::After(d).or(EvictAfter::Never), Some(d));
    }
}

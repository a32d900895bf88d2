//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "wharf",
    version,
    about = "Wharf: a container image registry speaking the OCI Distribution Specification v1.1",
    long_about = "Wharf is a container image registry: a drop-in for `registry:2` that docker, podman, \
skopeo, buildah, crane and oras push to and pull from.\n\n\
Configuration comes from defaults, then a TOML file (see config.example.toml), then environment \
variables: `registry:2`'s REGISTRY_* (e.g. REGISTRY_HTTP_ADDR, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY, \
REGISTRY_STORAGE_DELETE_ENABLED), then WHARF_* with the same key names (e.g. WHARF_LOG_LEVEL=debug).",
    after_help = "Quick start: `wharf serve` listens on 0.0.0.0:5000 and stores data in \
$XDG_DATA_HOME/wharf (default ~/.local/share/wharf)."
)]
pub struct Cli {
    /// Log format: human-readable text (the default) or one JSON object per line. Overrides
    /// log.formatter.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the registry server.
    Serve {
        /// Configuration file (TOML). Also REGISTRY_CONFIGURATION_PATH or WHARF_CONFIG.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The configuration file as a positional argument, as `registry serve <file>` takes it.
        #[arg(value_name = "CONFIG", conflicts_with = "config")]
        config_positional: Option<PathBuf>,
    },
    /// Remove blobs and manifests that nothing references, and abandoned uploads.
    ///
    /// Marks from every manifest of every repository (or, with --delete-untagged, from every
    /// tag) through index children, configs, layers and the referrers of kept manifests, then
    /// removes what is unmarked. On a pull-through cache, first evicts cached tags older than
    /// proxy.evictafter, then the least recently used ones while the cache exceeds proxy.maxsize.
    /// Refuses to run while a server writes to the same storage: stop it or run it with
    /// storage.maintenance.readonly.enabled = true.
    #[command(name = "garbage-collect", visible_alias = "gc")]
    GarbageCollect {
        /// Configuration file (TOML), as for serve.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(value_name = "CONFIG", conflicts_with = "config")]
        config_positional: Option<PathBuf>,
        /// Print what would be removed, and remove nothing.
        #[arg(short = 'd', long)]
        dry_run: bool,
        /// Also remove manifests that no tag reaches (directly or through an index), with their referrers.
        #[arg(short = 'm', long)]
        delete_untagged: bool,
        /// Remove upload sessions started longer ago than this (default: storage.maintenance.uploadpurging.age).
        #[arg(long, value_name = "DURATION")]
        upload_max_age: Option<String>,
        /// Run even though a server holds the storage lock (only if you know it is not writing).
        #[arg(long)]
        force: bool,
    },
    /// Load the configuration as serve would, print what is ignored, then the effective settings.
    ///
    /// Takes Wharf's TOML or Distribution's config.yml (by extension), plus the environment.
    /// Exit code 0 when serve would start with it, 2 (and the reason) when it would not.
    #[command(name = "check-config")]
    CheckConfig {
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(value_name = "CONFIG", conflicts_with = "config")]
        config_positional: Option<PathBuf>,
    },
    /// Exit 0 if the server configured here answers GET /healthz on its own address (for a
    /// container HEALTHCHECK: the image has no curl), else 1.
    Healthcheck {
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(value_name = "CONFIG", conflicts_with = "config")]
        config_positional: Option<PathBuf>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
}

impl Command {
    pub fn config_file(&self) -> Option<PathBuf> {
        let (config, config_positional) = match self {
            Command::Serve {
                config,
                config_positional,
            } => (config, config_positional),
            Command::GarbageCollect {
                config,
                config_positional,
                ..
            }
            | Command::CheckConfig {
                config,
                config_positional,
            }
            | Command::Healthcheck {
                config,
                config_positional,
                ..
            } => (config, config_positional),
        };
        config
            .clone()
            .or_else(|| config_positional.clone())
            .or_else(|| std::env::var_os("WHARF_CONFIG").map(PathBuf::from))
            .or_else(|| std::env::var_os("REGISTRY_CONFIGURATION_PATH").map(PathBuf::from))
    }
}

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
}

impl Command {
    pub fn config_file(&self) -> Option<PathBuf> {
        match self {
            Command::Serve {
                config,
                config_positional,
            } => config
                .clone()
                .or_else(|| config_positional.clone())
                .or_else(|| std::env::var_os("WHARF_CONFIG").map(PathBuf::from))
                .or_else(|| std::env::var_os("REGISTRY_CONFIGURATION_PATH").map(PathBuf::from)),
        }
    }
}

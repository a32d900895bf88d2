//! Wharf: a container image registry speaking the OCI Distribution Specification v1.1.
//!
//! Layers, top to bottom (dependencies point down only):
//! `cli`/`commands`/`server` → `http` (wire: routes, headers, handlers) → `registry` (domain: the only
//! code that knows the storage layout) → `storage` (the driver trait and its implementations).

pub mod admin;
pub mod auth;
pub mod body_limit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod header_names;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod shutdown;
pub mod storage;
pub mod tls;

pub use config::Config;
pub use server::serve;

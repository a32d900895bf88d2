//! What each command does, once the command line is parsed and the configuration loaded
//! (`main.rs` is parse → load → run).

use std::time::Duration;

use crate::cli::Command;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::registry::gc::{EvictReason, GcOptions, GcReport};
use crate::storage::fence::{FenceError, FenceRole};

/// Run `command` with `config`; `hooks` are the test hooks and timeouts read at start-up.
pub fn run(command: Command, config: Config, hooks: Hooks) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => {
            let rt = runtime()?;
            rt.block_on(async {
                let addr = config.http.socket_addr().map_err(anyhow::Error::msg)?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                crate::serve(listener, config, hooks, crate::server::shutdown_signal()).await
            })?;
            // Requests cut at the drain timeout may leave a blocking write finishing: give it a
            // moment, but never hang the exit on it.
            rt.shutdown_timeout(Duration::from_secs(1));
            Ok(())
        }
        Command::CheckConfig { .. } => {
            print!("{}", crate::admin::effective_config(&config));
            Ok(())
        }
        Command::Healthcheck { timeout, .. } => crate::admin::healthcheck(&config, Duration::from_secs(timeout)),
        Command::GarbageCollect {
            dry_run,
            delete_untagged,
            upload_max_age,
            force,
            ..
        } => {
            let upload_max_age = match upload_max_age {
                Some(s) => crate::config::parse_duration(&s).map_err(|e| anyhow::anyhow!("--upload-max-age: {e}"))?,
                None => config.storage.maintenance.uploadpurging.age(),
            };
            let opts = GcOptions {
                dry_run,
                delete_untagged,
                upload_max_age,
                sweep_before: None,
                evict: crate::registry::eviction::Eviction::from_config(&config.proxy)
                    .map_err(|e| anyhow::anyhow!("proxy: {e}"))?,
            };
            let rt = runtime()?;
            rt.block_on(garbage_collect(config, &hooks, opts, force))
        }
    }
}

/// Threads the blocking pool (file I/O, hashing, bcrypt) has at most; tokio's default is 512,
/// one per concurrent file operation under load. The tasks it runs are short (no task waits on a
/// client: bodies are written and hashed a batch per task), so beyond this they queue, and
/// memory and context switches stay flat however many connections there are.
const BLOCKING_THREADS: usize = 16;

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
}

/// `garbage-collect`: take the storage's fence against writers (`storage::fence`), collect,
/// take the fence down, print the report.
async fn garbage_collect(config: Config, hooks: &Hooks, mut opts: GcOptions, force: bool) -> anyhow::Result<()> {
    let registry = crate::server::registry_for(&config, crate::server::open_store(&config)?, hooks);
    let role = FenceRole::Collector {
        force,
        dry_run: opts.dry_run,
    };
    let fence = match registry.fence(role).await {
        Ok(fence) => fence,
        Err(FenceError::Held(message)) => anyhow::bail!(message),
        Err(FenceError::Driver(e)) => return Err(e.into()),
    };
    opts.sweep_before = fence.since;
    // Writers that notice the fence only at their next write (replicas on an object store
    // keep serving, refusing pushes and deletes while it is up) get `storage.s3.gcgrace` to
    // finish the writes they began before it.
    let grace = if fence.checked_per_write {
        config.storage.s3.gcgrace()
    } else {
        Duration::ZERO
    };
    match &fence.note {
        Some(note) if !grace.is_zero() => eprintln!("{note}; waiting {grace:?} for writes in flight"),
        Some(note) => eprintln!("{note}"),
        None => {}
    }
    tokio::time::sleep(grace).await;
    let mut print = |line: String| println!("{line}");
    let result = registry.garbage_collect(&opts, &mut print).await;
    registry.driver().release_fence(fence).await?;
    print_report(&result?, &opts);
    Ok(())
}

fn print_report(report: &GcReport, opts: &GcOptions) {
    let what = if opts.dry_run {
        "eligible for deletion"
    } else {
        "deleted"
    };
    println!(
        "{} blobs marked, {} blobs ({} bytes) and {} manifests {what}, {} tags, {} layer links, {} uploads",
        report.marked_blobs,
        report.blobs.len(),
        report.bytes(),
        report.manifests.len(),
        report.tags.len(),
        report.layer_links.len(),
        report.uploads.len(),
    );
    if opts.evict.is_some() {
        let by = |r| report.evicted.iter().filter(|e| e.reason == r).count();
        let verb = if opts.dry_run {
            "eligible for eviction"
        } else {
            "evicted"
        };
        let mut line = format!(
            "{} cached entries {verb} ({} by age, {} by size)",
            report.evicted.len(),
            by(EvictReason::Age),
            by(EvictReason::Size),
        );
        if let Some((before, after)) = report.cache_bytes {
            line += &format!("; cached content {before} bytes, {after} bytes after eviction (estimate)");
        }
        println!("{line}");
    }
}

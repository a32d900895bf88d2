use clap::Parser;
use tracing_subscriber::EnvFilter;
use wharf::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut notes = Vec::new();
    let mut config = match wharf::config::load_with_notes(cli.command.config_file().as_deref(), &env, &mut notes) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wharf: {e}");
            std::process::exit(2);
        }
    };
    if let Some(format) = cli.log_format {
        config.log.formatter = format.parse().expect("clap allows text and json only");
    }
    init_tracing(&config);
    notes.iter().for_each(wharf::config::ConfigNote::log);
    if let Err(e) = run(cli.command, config) {
        eprintln!("wharf: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing(config: &wharf::Config) {
    // RUST_LOG, when set, wins (for developers); otherwise log.level from the configuration.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.log.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if config.log.formatter == wharf::config::LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(command: Command, config: wharf::Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let addr = config.http.socket_addr().map_err(anyhow::Error::msg)?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                wharf::serve(listener, config, wharf::server::shutdown_signal()).await
            })?;
            // Requests cut at the drain timeout may leave a blocking write finishing: give it a
            // moment, but never hang the exit on it.
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            Ok(())
        }
        Command::CheckConfig { .. } => {
            print!("{}", wharf::admin::effective_config(&config));
            Ok(())
        }
        Command::Healthcheck { timeout, .. } => {
            wharf::admin::healthcheck(&config, std::time::Duration::from_secs(timeout))
        }
        Command::GarbageCollect {
            dry_run,
            delete_untagged,
            upload_max_age,
            force,
            ..
        } => {
            let upload_max_age = match upload_max_age {
                Some(s) => wharf::config::parse_duration(&s).map_err(|e| anyhow::anyhow!("--upload-max-age: {e}"))?,
                None => config.storage.maintenance.uploadpurging.age(),
            };
            let opts = wharf::registry::gc::GcOptions {
                dry_run,
                delete_untagged,
                upload_max_age,
                sweep_before: None,
                evict: wharf::registry::eviction::Eviction::from_config(&config.proxy)
                    .map_err(|e| anyhow::anyhow!("proxy: {e}"))?,
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(garbage_collect(config, opts, force))
        }
    }
}

async fn garbage_collect(
    config: wharf::Config,
    mut opts: wharf::registry::gc::GcOptions,
    force: bool,
) -> anyhow::Result<()> {
    use wharf::server::Store;
    let store = wharf::server::open_store(&config)?;
    let root = store.describe();
    let registry = wharf::server::registry_for(&config, &store);
    let _lock = match &store {
        Store::Fs(driver) => match driver.try_lock(true)? {
            Some(lock) => Some(lock),
            None if force => {
                eprintln!("warning: a server holds {root}/wharf.lock; continuing because of --force");
                None
            }
            None => anyhow::bail!(
                "a server is serving {root} read-write (it holds wharf.lock): stop it, or restart it with \
                 storage.maintenance.readonly.enabled = true, then run garbage-collect again (or pass --force)"
            ),
        },
        // A dry run removes nothing, so it takes no lock and blocks no push.
        Store::S3(_) if opts.dry_run => {
            opts.sweep_before = Some(std::time::SystemTime::now());
            None
        }
        Store::S3(_) => {
            // Replicas keep serving: they refuse pushes and deletes while the lock object exists,
            // and the sweep spares blobs written since it was taken. Writes that began before
            // it get `storage.s3.gcgrace` to finish.
            let t0 = registry.take_gc_lock(force).await?;
            opts.sweep_before = Some(t0);
            let grace = config.storage.s3.gcgrace();
            if grace.is_zero() {
                eprintln!("took {root}/wharf-gc.lock at {}", humantime::format_rfc3339_seconds(t0));
            } else {
                eprintln!(
                    "took {root}/wharf-gc.lock at {}; waiting {grace:?} for writes in flight",
                    humantime::format_rfc3339_seconds(t0)
                );
                tokio::time::sleep(grace).await;
            }
            None
        }
    };
    let mut print = |line: String| println!("{line}");
    let result = registry.garbage_collect(&opts, &mut print).await;
    if matches!(store, Store::S3(_)) && !opts.dry_run {
        registry.release_gc_lock().await?;
    }
    let report = result?;
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
            by(wharf::registry::gc::EvictReason::Age),
            by(wharf::registry::gc::EvictReason::Size),
        );
        if let Some((before, after)) = report.cache_bytes {
            line += &format!("; cached content {before} bytes, {after} bytes after eviction (estimate)");
        }
        println!("{line}");
    }
    Ok(())
}

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wharf::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match wharf::config::load(cli.command.config_file().as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wharf: {e}");
            std::process::exit(2);
        }
    };
    init_tracing(&config);
    if let Err(e) = run(cli.command, config) {
        tracing::error!("{e:#}");
        eprintln!("wharf: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing(config: &wharf::Config) {
    // RUST_LOG, when set, wins (for developers); otherwise log.level from the configuration.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if config.log.formatter == "json" {
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
            })
        }
    }
}

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wharf::cli::Cli;

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
    // Test hooks and timeouts (`WHARF_FAILPOINTS`, `WHARF_TIMEOUTS`): read here, once, and passed down.
    let hooks = wharf::hooks::Hooks::from_env(&env);
    if let Err(e) = wharf::commands::run(cli.command, config, hooks) {
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

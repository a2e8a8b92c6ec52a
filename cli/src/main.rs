//! `basalt`: see the library docs ([`basalt_cli`]). Prints `Error: <message>` and exits
//! with status 1 on any failure (clap exits with 2 for a bad command line).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = basalt_cli::Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "basalt_cli=debug",
        _ => "trace",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: basalt_cli::Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(basalt_cli::run(cli))?;
    Ok(())
}

//! The command line (clap). Every command loads and validates the configuration first, so a
//! mistake in it is reported before anything starts.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Exit code for an unusable configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "ghl-ekyte-sync",
    version,
    about = "Keeps GoHighLevel and eKyte in sync, both ways.",
    long_about = None
)]
pub struct Cli {
    /// A TOML file layered over the built-in defaults (also GES_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted); exit non-zero when it is invalid.
    Check {
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
}

/// Parse the arguments, run the command, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!(
                "hint: see the commented defaults with `ghl-ekyte-sync config check` on a valid setup, or crates/app/config/default.toml"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Config(ConfigCommand::Check { json }) => config_check(&config, json),
    }
}

fn config_check(config: &Config, json: bool) -> ExitCode {
    let view = config.redacted();
    let printed = if json {
        serde_json::to_string_pretty(&view).map_err(|e| e.to_string())
    } else {
        toml::to_string_pretty(&view).map_err(|e| e.to_string())
    };
    match printed {
        Ok(text) => {
            println!("{text}");
            eprintln!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The `pullback` binary: one node's server, configuration checks, and a self-contained demo.

mod appliance;
mod backup;
mod clear;
mod cluster;
mod demo;
mod roll;
mod server;
mod upgrade;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pullback",
    version,
    about = "Threat response for e-mail: pull alerts, quarantine mail"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Runs a node from a configuration file until SIGTERM or Ctrl-C.
    Server {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Checks a configuration file, its secrets and its backends, and exits.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Creates a cluster, admits and removes nodes, shows its state.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Analyses reported messages offline (CLEAR), and scores the analysis on labelled mail.
    #[command(subcommand)]
    Clear(clear::ClearCommand),
    /// Takes, lists and restores backups of the replicated state.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Runs the whole job on built-in sample data, with no outside service.
    Demo(demo::DemoOptions),
    /// The appliance image's boot steps: first boot, settings, console report.
    #[command(subcommand)]
    Appliance(appliance::ApplianceCommand),
    /// In-place upgrades of the appliance from a signed IMG, with automatic rollback.
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCommand),
    /// Reads a password from standard input and prints the `[[users]]` entry that creates
    /// the account at start, with the password's argon2 hash.
    UserHash {
        /// The account's name.
        #[arg(long, default_value = "admin")]
        name: String,
        /// admin, analyst or read_only.
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Prints a new random API key and the SHA-256 line to put in the configuration.
    ApiKey {
        /// The key's name in the configuration.
        #[arg(long, default_value = "admin")]
        name: String,
        /// admin, analyst or read_only.
        #[arg(long, default_value = "admin")]
        role: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PULLBACK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pullback: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Commands::Server { config } => server::serve(&config).await,
            Commands::Validate { config } => server::validate(&config),
            Commands::Cluster(command) => cluster::run(command).await,
            Commands::Clear(command) => clear::run(command),
            Commands::Demo(options) => demo::run(options).await,
            Commands::Backup(command) => backup::run(command).await,
            Commands::Appliance(command) => appliance::run(command).await,
            Commands::Upgrade(command) => upgrade::run(command).await,
            Commands::UserHash { name, role } => {
                if !pullback_domain::valid_user_name(&name) {
                    anyhow::bail!("{name:?} is not a valid user name");
                }
                if !matches!(role.as_str(), "admin" | "analyst" | "read_only") {
                    anyhow::bail!("--role must be admin, analyst or read_only, not {role:?}");
                }
                if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    eprint!("password for {name} (input is shown; pipe it in to hide it): ");
                }
                let mut password = String::new();
                std::io::stdin().read_line(&mut password)?;
                let password = password.trim_end_matches(['\r', '\n']);
                if password.chars().count() < 12 {
                    anyhow::bail!("the password needs at least 12 characters");
                }
                let hash = pullback_api::hash_password(password).map_err(anyhow::Error::msg)?;
                println!("[[users]]\nname = {name:?}\nrole = {role:?}\npassword_hash = {hash:?}");
                Ok(())
            }
            Commands::ApiKey { name, role } => {
                let key = server::new_api_key()?;
                println!("key:    {key}");
                println!(
                    "[[api_keys]]\nname = {name:?}\nrole = {role:?}\nsha256 = {:?}",
                    hex::encode(pullback_api::hash_key(&key))
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pullback: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `baton` command: a thin shell over the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use baton::analytics::ClickHouse;
use baton::config::{Overrides, Settings};
use baton::web::Application;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Omnichannel support gateway: bot first, then a person, with analytics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on (BATON_BIND).
        #[arg(long)]
        bind: Option<String>,
        /// Seed sample agents and conversations (BATON_DEMO).
        #[arg(long)]
        demo: bool,
    },
    /// Apply the SQLite and ClickHouse migrations, then exit.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Manage administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin who signs in with a password. The password is read from the first line
    /// of standard input, or from BATON_ADMIN_PASSWORD, never from the command line (where
    /// `ps` and shell history would show it).
    Create {
        #[command(flatten)]
        common: Common,
        /// Sign-in address.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long, default_value = "Admin")]
        name: String,
    },
}

#[derive(Args)]
struct Common {
    /// A TOML configuration file; BATON_* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder for the database (BATON_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// ClickHouse HTTP URL (BATON_CLICKHOUSE_URL).
    #[arg(long)]
    clickhouse_url: Option<String>,
}

fn load(common: Common, bind: Option<String>, demo: bool) -> anyhow::Result<Settings> {
    let overrides = Overrides {
        bind,
        data_dir: common.data_dir,
        clickhouse_url: common.clickhouse_url,
        demo,
    };
    Ok(Settings::load(common.config.as_deref(), overrides)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { common, bind, demo } => {
            let settings = load(common, bind, demo)?;
            baton::telemetry::init(&settings.log_format);
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
        }
        Command::Migrate { common } => {
            let settings = load(common, None, false)?;
            baton::telemetry::init(&settings.log_format);
            std::fs::create_dir_all(&settings.data_dir)?;
            baton::store::migrate(&settings.store_location())
                .await
                .context("store migrations")?;
            ClickHouse::new(
                &settings.clickhouse_url,
                &settings.clickhouse_database,
                &settings.clickhouse_user,
                settings.clickhouse_password.as_ref(),
            )?
            .migrate()
            .await
            .context("ClickHouse migrations")?;
            tracing::info!("migrations applied");
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    common,
                    email,
                    name,
                },
        } => {
            let settings = load(common, None, false)?;
            baton::telemetry::init(&settings.log_format);
            let email = baton::model::EmailAddress::parse(&email)?;
            let password = match std::env::var("BATON_ADMIN_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let password = baton::model::Password::parse(&password)?;
            std::fs::create_dir_all(&settings.data_dir)?;
            let store = baton::store::open(&settings.store_location())
                .await
                .context("cannot open the store")?;
            let created =
                baton::accounts::ensure_admin(&store, email.clone(), &name, &password).await?;
            if created {
                println!("admin {email} created");
            } else {
                anyhow::bail!("a user with the address {email} already exists");
            }
        }
    }
    Ok(())
}

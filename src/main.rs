//! The `formid-ledger` binary: `serve` (the default) runs the HTTP API,
//! `sim` runs the WeChat simulator alone, `report` prints usage from the
//! store, `templates` manages the account's templates, `backup` copies the
//! embedded store, `openapi` prints the API document.

use std::net::TcpListener;

use anyhow::Context;
use clap::{Parser, Subcommand};
use formid_ledger::app::Application;
use formid_ledger::cli::templates::{self as cli, Action};
use formid_ledger::config::{Config, LogFormat};
use formid_ledger::domain::{ChannelKind, DEFAULT_APP};
use formid_ledger::sim::{self, PushTargets, SimConfig, Simulator};
use formid_ledger::telemetry;

/// glibc malloc was 7 % of the CPU under send load (many small, short-lived
/// allocations across threads); mimalloc serves them from per-thread pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "formid-ledger",
    version,
    about = "WeChat formId / prepay_id ledger and template message sender"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (the default).
    Serve,
    /// Run the WeChat simulator alone.
    Sim {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
        /// Seconds an access token lives.
        #[arg(long, default_value_t = 7200)]
        token_ttl: u64,
        /// Seconds the previous token keeps working after a new fetch.
        #[arg(long, default_value_t = 300)]
        token_overlap: u64,
        /// Template messages accepted per day.
        #[arg(long, default_value_t = 1_000_000)]
        daily_limit: u64,
        /// Push the mini-program's events (JSON) to this URL, e.g.
        /// http://127.0.0.1:8080/wechat/push/miniprogram.
        #[arg(long)]
        push_miniprogram: Option<String>,
        /// Push the official account's events (XML) to this URL.
        #[arg(long)]
        push_official_account: Option<String>,
        /// The push token (WECHAT_PUSH_TOKEN / WECHAT_OA_PUSH_TOKEN of the service).
        #[arg(long)]
        push_token: Option<String>,
        /// Safe mode: the EncodingAESKey to encrypt pushes with.
        #[arg(long)]
        push_aes_key: Option<String>,
        /// Another mini-program, APPID:SECRET (repeatable), beside the
        /// built-in wxsandbox; control routes name it with "appid".
        #[arg(long = "app", value_parser = app_credentials)]
        apps: Vec<(String, String)>,
        /// Another official account, APPID:SECRET (repeatable).
        #[arg(long = "official-account", value_parser = app_credentials)]
        official_accounts: Vec<(String, String)>,
    },
    /// Print the usage report from the store named by REDIS_URL /
    /// REDIS_CLUSTER_NODES.
    Report {
        /// First day, YYYY-MM-DD (default today).
        #[arg(long)]
        from: Option<String>,
        /// Last day, YYYY-MM-DD (default today).
        #[arg(long)]
        to: Option<String>,
        /// Print the JSON of GET /v1/reports/usage instead of a table.
        #[arg(long)]
        json: bool,
        /// The app whose report it is.
        #[arg(long, default_value = DEFAULT_APP)]
        app: String,
    },
    /// Manage the account's templates (the same configuration as `serve`;
    /// in sandbox mode, the simulator of the sandbox serving at LISTEN).
    Templates {
        /// The channel, by its API name (`GET /v1/apps` lists an app's).
        #[arg(long, global = true, default_value = "subscribe")]
        channel: String,
        /// Print the API's JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// The app whose templates they are.
        #[arg(long, global = true, default_value = DEFAULT_APP)]
        app: String,
        #[command(subcommand)]
        action: TemplatesAction,
    },
    /// Copy the embedded store in DATA_DIR to DEST (a new file), consistent
    /// and while the service may be serving. Restore: deploy/README.md.
    Backup { dest: std::path::PathBuf },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Subcommand)]
enum TemplatesAction {
    /// The account's templates and their data keys.
    List,
    /// The library: a page of it, or one entry (ID) with its keywords.
    Library {
        id: Option<String>,
        /// First entry of the page.
        #[arg(long, default_value_t = 0)]
        start: u32,
        /// Entries (the old library: at most 20; subscribe: 30).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Add a template from the library entry LIBRARY_ID with these keywords.
    Add {
        library_id: String,
        keyword_ids: Vec<u32>,
        /// Subscribe templates: what it is for (at most 15 characters).
        #[arg(long)]
        scene: Option<String>,
    },
    /// Delete one of the account's templates.
    Delete {
        /// WeChat's template ids are base64url: one may start with `-`.
        #[arg(allow_hyphen_values = true)]
        template_id: String,
    },
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Some(Command::Report { .. } | Command::Templates { .. } | Command::Backup { .. })
    );
    telemetry::init(cli.config.log_format, if quiet { "error" } else { "info" });
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Sim {
            listen,
            token_ttl,
            token_overlap,
            daily_limit,
            push_miniprogram,
            push_official_account,
            push_token,
            push_aes_key,
            apps,
            official_accounts,
        } => {
            if let Some(key) = &push_aes_key {
                formid_ledger::push::crypto::AesKey::parse(key).context("--push-aes-key")?;
            }
            let pushes = push_miniprogram.is_some() || push_official_account.is_some();
            let push = match (pushes, push_token) {
                (false, _) => None,
                (true, None) => anyhow::bail!("--push-token is required with a push URL"),
                (true, Some(token)) => Some(PushTargets {
                    miniprogram_url: push_miniprogram,
                    official_account_url: push_official_account,
                    token,
                    aes_key: push_aes_key,
                }),
            };
            let config = SimConfig {
                token_ttl_secs: token_ttl,
                token_overlap_secs: token_overlap,
                daily_limit,
                push,
                more_miniprograms: apps,
                more_official_accounts: official_accounts,
                ..SimConfig::default()
            };
            let listener =
                TcpListener::bind(&listen).with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "WeChat simulator listening; routes under /sandbox");
            sim::serve(listener, Simulator::new(config))?.await?;
            Ok(())
        }
        Command::Report { from, to, json, app } => {
            let output =
                formid_ledger::cli::report::run(&cli.config, &app, from.as_deref(), to.as_deref(), json)
                    .await?;
            print!("{output}");
            Ok(())
        }
        Command::Templates {
            channel,
            json,
            app,
            action,
        } => {
            let channel = ChannelKind::parse(&channel)
                .with_context(|| format!("--channel must be one of {}", ChannelKind::names()))?;
            let action = match action {
                TemplatesAction::List => Action::List,
                TemplatesAction::Library { id, start, count } => Action::Library { id, start, count },
                TemplatesAction::Add {
                    library_id,
                    keyword_ids,
                    scene,
                } => Action::Add {
                    library_id,
                    keyword_ids,
                    scene,
                },
                TemplatesAction::Delete { template_id } => Action::Delete { template_id },
            };
            let output = cli::run(&cli.config, &app, channel, action, json).await?;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), output.as_bytes());
            Ok(())
        }
        Command::Backup { dest } => {
            let rows =
                formid_ledger::store::backup(&cli.config.data_dir, &dest).map_err(anyhow::Error::msg)?;
            println!(
                "copied {} ({rows} records) to {}",
                cli.config
                    .data_dir
                    .join(formid_ledger::store::DATABASE_FILE)
                    .display(),
                dest.display()
            );
            Ok(())
        }
        Command::Openapi => {
            println!("{}", formid_ledger::api::openapi::document_json());
            Ok(())
        }
    }
}

/// `APPID:SECRET` of a simulated app.
fn app_credentials(raw: &str) -> Result<(String, String), String> {
    let (appid, secret) = raw
        .split_once(':')
        .ok_or_else(|| format!("{raw:?} is not APPID:SECRET"))?;
    if !formid_ledger::domain::is_identifier(appid, 64) || secret.is_empty() {
        return Err(format!(
            "{raw:?}: the appid is [A-Za-z0-9_-] and the secret is not empty"
        ));
    }
    Ok((appid.to_owned(), secret.to_owned()))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let json_logs = config.log_format == LogFormat::Json;
    let app = Application::build(config).await?;
    if let Some(key) = app.generated_admin_key() {
        // The one place a secret is printed: once, to the operator's terminal.
        eprintln!("\n  sandbox admin API key (printed once): {}\n", key.expose());
    }
    if !json_logs {
        eprintln!("  formid-ledger listening on http://{}\n", app.addr());
    }
    tracing::info!(addr = %app.addr(), "listening");
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

//! Configuration: defaults, overridden by a TOML file (`--config`), overridden by `BATON_*`
//! environment variables, overridden by command-line flags. Every key is documented in the
//! README; the environment variable for key `foo_bar` is `BATON_FOO_BAR`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

/// Everything Baton can be told at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free one.
    pub bind: String,
    /// Folder for the SQLite database and generated files.
    pub data_dir: PathBuf,
    /// A PostgreSQL database for the store (`postgres://user:pass@host:5432/baton`, or
    /// `postgresql://…`), which several gateway instances can share. Unset: the SQLite file in
    /// `data_dir`. A secret: it may hold a password, so it is never logged.
    pub database_url: Option<SecretString>,
    /// ClickHouse HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub clickhouse_url: String,
    /// ClickHouse database for Baton's tables (created if missing).
    pub clickhouse_database: String,
    /// ClickHouse user.
    pub clickhouse_user: String,
    /// ClickHouse password.
    pub clickhouse_password: Option<SecretString>,
    /// The first admin API token. When unset, one is generated and written to
    /// `<data_dir>/admin-token` (mode 0600) on first start.
    pub api_token: Option<SecretString>,
    /// An external bot's webhook URL. When unset, the built-in FAQ bot answers.
    pub bot_webhook_url: Option<String>,
    /// Sent to the external bot as `Authorization: Bearer <secret>` so it can trust Baton.
    pub bot_webhook_secret: Option<SecretString>,
    /// How long Baton waits for the external bot, in milliseconds.
    pub bot_timeout_ms: u64,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seed sample agents and conversations.
    pub demo: bool,
    /// `text` or `json` logs.
    pub log_format: String,
    /// How often the event shipper sends a batch to ClickHouse, in milliseconds.
    pub ship_interval_ms: u64,
    /// The most events one shipment (one INSERT) carries. ClickHouse pays for each INSERT (it
    /// writes a new part, and merges it later), so a backlog drains fastest in big ones; a
    /// steady flow ends an INSERT every `ship_interval_ms` whatever this says.
    pub ship_batch_size: u32,
    /// How often the rollup worker looks for settled hours and days to pre-aggregate, in
    /// milliseconds; 0 runs no worker (another instance's does the work, or tests drive it).
    pub rollup_interval_ms: u64,
    /// The address customers write to (e.g. support@example.com). Reply addresses are
    /// derived from it (support+<token>@example.com). Needed for the email channel.
    pub support_address: Option<String>,
    /// The name on outgoing mail's From.
    pub support_name: String,
    /// Outgoing mail server, lettre's URL form: `smtp://user:pass@host:port`, `smtps://…`,
    /// `?tls=required` for STARTTLS. Unset: email replies wait as pending.
    pub smtp_url: Option<SecretString>,
    /// Mailbox to poll: `imap://user:pass@host:port/INBOX` or `imaps://…`. Unset: no polling.
    pub imap_url: Option<SecretString>,
    /// How often the IMAP mailbox is polled, in milliseconds.
    pub imap_poll_ms: u64,
    /// A token that may only deliver mail to /ingest/email (for an MTA or mail provider).
    pub ingest_token: Option<SecretString>,
    /// The largest mail accepted, in bytes.
    pub max_email_bytes: usize,
    /// A customer's mail to a resolved conversation: `reopen` it, or start a `new` one linked
    /// to it.
    pub email_reopen: crate::model::ReopenPolicy,
    /// How many days back the same-sender-same-subject fallback looks for an open conversation.
    pub email_subject_window_days: u32,
    /// The externally visible base URL (e.g. `https://support.example.com`): Twilio signs the
    /// URL it called, which behind a proxy is not the one the gateway sees.
    pub public_url: Option<String>,
    /// Meta app secret: verifies Messenger/Instagram webhooks (X-Hub-Signature-256).
    pub meta_app_secret: Option<SecretString>,
    /// What Meta must send as hub.verify_token in the subscription handshake.
    pub meta_verify_token: Option<SecretString>,
    /// Page access token for sending Messenger/Instagram replies.
    pub meta_page_token: Option<SecretString>,
    /// WhatsApp app secret (defaults to the Meta app secret).
    pub whatsapp_app_secret: Option<SecretString>,
    /// Verify token for the WhatsApp handshake (defaults to the Meta verify token).
    pub whatsapp_verify_token: Option<SecretString>,
    /// WhatsApp Cloud API access token.
    pub whatsapp_token: Option<SecretString>,
    /// WhatsApp business phone number id replies are sent from.
    pub whatsapp_phone_number_id: Option<String>,
    /// Telegram bot token (the default bot at /webhooks/telegram).
    pub telegram_bot_token: Option<SecretString>,
    /// What Telegram must send as X-Telegram-Bot-Api-Secret-Token.
    pub telegram_secret_token: Option<SecretString>,
    /// More Telegram bots beside the default one, by name: each answers at
    /// /webhooks/telegram/{name} and replies through its own token. In the config file as
    /// `[telegram_bots.sales]` with `token` and `secret_token`; in the environment as
    /// `BATON_TELEGRAM_BOTS__SALES__TOKEN` and `BATON_TELEGRAM_BOTS__SALES__SECRET_TOKEN`.
    pub telegram_bots: std::collections::BTreeMap<String, TelegramBot>,
    /// Escalation rules, in order (`[[escalation_rules]]`); when given, they replace the
    /// stored rules at start-up. None: the stored rules, or the defaults.
    pub escalation_rules: Option<Vec<crate::handoff::rules::RuleSpec>>,
    /// Queues per team (`[[queues]]`): strategy, skills, accept timeout, overflow, hours,
    /// on-call. Stored at start-up; the API can add or change queues too.
    pub queues: Vec<crate::handoff::engine::QueueConfig>,
    /// Texts waiting customers get, per language (`[waiting_texts.en]` with `queued`,
    /// `queued_no_estimate`, `next`, `closed`, `closed_no_time`), over the built-in ones.
    pub waiting_texts: std::collections::BTreeMap<String, crate::handoff::waiting::WaitingTexts>,
    /// A queued customer who writes nothing for this long has left: the ticket is abandoned
    /// (0: never).
    pub abandon_after_secs: u64,
    /// The least time between two waiting updates to one customer.
    pub waiting_update_secs: u64,
    /// Target from a handoff request to an agent owning it; longer is an SLA breach in reports.
    pub sla_assignment_secs: u64,
    /// Target from a handoff request to the agent's first reply; longer is an SLA breach.
    pub sla_first_reply_secs: u64,
    /// Texts agents send often (`[[canned_responses]]` with `name` and `text`; `{customer_name}`,
    /// `{agent_name}` and `{ticket}` are filled in). Empty: a few built-in ones.
    pub canned_responses: Vec<crate::handoff::canned::CannedResponse>,
    /// Serve `/metrics` (and `/healthz`) on this address instead of the main listener, e.g.
    /// `127.0.0.1:9100`, so scrapers reach it and the internet does not.
    pub metrics_bind: Option<String>,
    /// Sign-in attempts allowed per minute, per client address and per account.
    pub login_attempts_per_minute: u32,
    /// Requests per minute one client address may send to the public web chat widget.
    pub widget_requests_per_minute: u32,
    /// Requests per minute one client address may send to the platform webhooks.
    pub webhook_requests_per_minute: u32,
    /// Take the client's address from `X-Forwarded-For` / `Forwarded` (only behind a proxy
    /// that sets them; otherwise clients could pick their own address and dodge rate limits).
    pub trust_forwarded_for: bool,
    /// The first admin's sign-in address: with `admin_password`, an admin with this address
    /// is created at start-up if no user has it yet (`baton admin create` does the same).
    pub admin_email: Option<String>,
    /// The first admin's password (see `admin_email`).
    pub admin_password: Option<SecretString>,
    /// Twilio account SID.
    pub twilio_account_sid: Option<String>,
    /// Twilio auth token: verifies X-Twilio-Signature and authenticates sends.
    pub twilio_auth_token: Option<SecretString>,
    /// The Twilio number SMS replies are sent from (E.164).
    pub twilio_from: Option<String>,
    /// Graph API base URL (tests point it at a local stand-in).
    pub meta_graph_url: String,
    /// Telegram Bot API base URL.
    pub telegram_api_url: String,
    /// Twilio REST API base URL.
    pub twilio_api_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            clickhouse_url: "http://127.0.0.1:8123".into(),
            clickhouse_database: "baton".into(),
            clickhouse_user: "default".into(),
            clickhouse_password: None,
            api_token: None,
            bot_webhook_url: None,
            bot_webhook_secret: None,
            bot_timeout_ms: 10_000,
            max_body_bytes: 256 * 1024,
            canned_responses: Vec::new(),
            metrics_bind: None,
            login_attempts_per_minute: 10,
            widget_requests_per_minute: 120,
            webhook_requests_per_minute: 6000,
            trust_forwarded_for: false,
            admin_email: None,
            admin_password: None,
            demo: false,
            log_format: "text".into(),
            ship_interval_ms: 1_000,
            rollup_interval_ms: 1_000,
            ship_batch_size: 100_000,
            support_address: None,
            support_name: "Support".into(),
            smtp_url: None,
            imap_url: None,
            imap_poll_ms: 10_000,
            ingest_token: None,
            max_email_bytes: 25 * 1024 * 1024,
            email_reopen: crate::model::ReopenPolicy::Reopen,
            email_subject_window_days: 14,
            public_url: None,
            meta_app_secret: None,
            meta_verify_token: None,
            meta_page_token: None,
            whatsapp_app_secret: None,
            whatsapp_verify_token: None,
            whatsapp_token: None,
            whatsapp_phone_number_id: None,
            telegram_bot_token: None,
            telegram_secret_token: None,
            telegram_bots: Default::default(),
            escalation_rules: None,
            queues: Vec::new(),
            waiting_texts: Default::default(),
            abandon_after_secs: 30 * 60,
            waiting_update_secs: 5 * 60,
            sla_assignment_secs: 120,
            sla_first_reply_secs: 300,
            twilio_account_sid: None,
            twilio_auth_token: None,
            twilio_from: None,
            meta_graph_url: "https://graph.facebook.com/v21.0".into(),
            telegram_api_url: "https://api.telegram.org".into(),
            twilio_api_url: "https://api.twilio.com".into(),
        }
    }
}

/// A named Telegram bot.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TelegramBot {
    /// Its Bot API token.
    pub token: SecretString,
    /// What Telegram must send as X-Telegram-Bot-Api-Secret-Token for this bot.
    pub secret_token: SecretString,
}

/// Whether a name can be a Telegram bot's: it becomes a URL path segment and a prefix of
/// its chats' ids (`<name>/<chat id>`), so 1 to 32 of a-z, 0-9, `-` and `_`.
pub fn valid_bot_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Flags given on the command line, which win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--bind`
    pub bind: Option<String>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--clickhouse-url`
    pub clickhouse_url: Option<String>,
    /// `--demo`
    pub demo: bool,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment did not parse.
    #[error("cannot read configuration")]
    Load(#[from] config::ConfigError),
    /// A value parsed but makes no sense.
    #[error("invalid setting {key}: {why}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        why: String,
    },
}

impl Settings {
    /// Loads defaults, then `file`, then the `BATON_*` environment, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("BATON")
                .prefix_separator("_")
                // Nested tables (named Telegram bots) as BATON_TELEGRAM_BOTS__SALES__TOKEN;
                // ordinary keys have single underscores and stay flat.
                .separator("__")
                .try_parsing(true)
                // `BATON_X=` (docker compose's `${X:-}`) means unset, not an empty value.
                .ignore_empty(true),
        );
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        if let Some(bind) = overrides.bind {
            settings.bind = bind;
        }
        if let Some(dir) = overrides.data_dir {
            settings.data_dir = dir;
        }
        if let Some(url) = overrides.clickhouse_url {
            settings.clickhouse_url = url;
        }
        settings.demo |= overrides.demo;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that deserialize but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url {
            use secrecy::ExposeSecret;
            // Said without the value, which may hold a password.
            if !crate::store::is_postgres_url(url.expose_secret()) {
                return Err(ConfigError::Invalid {
                    key: "database_url",
                    why: "must start with postgres:// or postgresql:// (unset: SQLite in data_dir)"
                        .into(),
                });
            }
        }
        self.bind
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::Invalid {
                key: "bind",
                why: e.to_string(),
            })?;
        for (key, url) in [
            ("clickhouse_url", Some(&self.clickhouse_url)),
            ("bot_webhook_url", self.bot_webhook_url.as_ref()),
            ("public_url", self.public_url.as_ref()),
            ("meta_graph_url", Some(&self.meta_graph_url)),
            ("telegram_api_url", Some(&self.telegram_api_url)),
            ("twilio_api_url", Some(&self.twilio_api_url)),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(ConfigError::Invalid {
                    key,
                    why: "must be an http:// or https:// URL".into(),
                });
            }
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid {
                key: "log_format",
                why: "must be text or json".into(),
            });
        }
        if let Some(addr) = &self.support_address {
            crate::model::EmailAddress::parse(addr).map_err(|e| ConfigError::Invalid {
                key: "support_address",
                why: e.to_string(),
            })?;
        } else if self.smtp_url.is_some() || self.imap_url.is_some() {
            return Err(ConfigError::Invalid {
                key: "support_address",
                why: "the email channel needs the address customers write to".into(),
            });
        }
        if let Some(url) = &self.imap_url {
            use secrecy::ExposeSecret;
            if !(url.expose_secret().starts_with("imap://")
                || url.expose_secret().starts_with("imaps://"))
            {
                return Err(ConfigError::Invalid {
                    key: "imap_url",
                    why: "must be an imap:// or imaps:// URL".into(),
                });
            }
        }
        if let Some(name) = self.telegram_bots.keys().find(|n| !valid_bot_name(n)) {
            return Err(ConfigError::Invalid {
                key: "telegram_bots",
                why: format!("bot name {name:?} must be 1 to 32 of a-z, 0-9, - and _"),
            });
        }
        for (key, value) in [
            ("login_attempts_per_minute", self.login_attempts_per_minute),
            (
                "widget_requests_per_minute",
                self.widget_requests_per_minute,
            ),
            (
                "webhook_requests_per_minute",
                self.webhook_requests_per_minute,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    why: "must be at least 1".into(),
                });
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                why: "must be at least 1024".into(),
            });
        }
        Ok(())
    }

    /// The SQLite file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("baton.sqlite3")
    }

    /// Where the store lives: the PostgreSQL database of `database_url`, else the SQLite file.
    pub fn store_location(&self) -> crate::store::StoreLocation {
        use secrecy::ExposeSecret;
        match &self.database_url {
            Some(url) if crate::store::is_postgres_url(url.expose_secret()) => {
                crate::store::StoreLocation::Postgres(url.clone())
            }
            _ => crate::store::StoreLocation::Sqlite(self.database_path()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_file_overrides_defaults_and_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("baton.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:9000\"\nclickhouse_database = \"support\"\napi_token = \"s3cret\"\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&file),
            Overrides {
                bind: Some("127.0.0.1:0".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.bind, "127.0.0.1:0");
        assert_eq!(s.clickhouse_database, "support");
        assert_eq!(s.api_token.unwrap().expose_secret(), "s3cret");
    }

    #[test]
    fn named_telegram_bots_come_from_the_file_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("baton.toml");
        std::fs::write(
            &file,
            "[telegram_bots.sales]\ntoken = \"1:sales\"\nsecret_token = \"s-sales\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), Overrides::default()).unwrap();
        let bot = &s.telegram_bots["sales"];
        assert_eq!(bot.token.expose_secret(), "1:sales");
        assert_eq!(bot.secret_token.expose_secret(), "s-sales");
        assert!(!format!("{s:?}").contains("1:sales"));

        std::fs::write(
            &file,
            "[telegram_bots.\"Sales/../x\"]\ntoken = \"t\"\nsecret_token = \"s\"\n",
        )
        .unwrap();
        assert!(matches!(
            Settings::load(Some(&file), Overrides::default()),
            Err(ConfigError::Invalid {
                key: "telegram_bots",
                ..
            })
        ));
    }

    #[test]
    fn a_postgres_database_url_picks_postgresql_and_anything_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("baton.toml");
        std::fs::write(
            &file,
            "database_url = \"postgresql://baton:pa55word@db:5432/baton\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), Overrides::default()).unwrap();
        assert!(matches!(
            s.store_location(),
            crate::store::StoreLocation::Postgres(_)
        ));
        assert!(!format!("{s:?}").contains("pa55word"));
        assert!(!format!("{:?}", s.store_location()).contains("pa55word"));

        let s = Settings::load(None, Overrides::default()).unwrap();
        assert!(matches!(
            s.store_location(),
            crate::store::StoreLocation::Sqlite(p) if p.ends_with("baton.sqlite3")
        ));

        std::fs::write(&file, "database_url = \"mysql://db/baton\"\n").unwrap();
        assert!(matches!(
            Settings::load(Some(&file), Overrides::default()),
            Err(ConfigError::Invalid {
                key: "database_url",
                ..
            })
        ));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = Settings {
            api_token: Some(SecretString::from("hunter2-token")),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("hunter2-token"));
    }

    #[test]
    fn a_bind_address_that_is_not_an_address_is_rejected() {
        let s = Settings {
            bind: "localhost".into(),
            ..Default::default()
        };
        assert!(matches!(
            s.validate(),
            Err(ConfigError::Invalid { key: "bind", .. })
        ));
    }
}

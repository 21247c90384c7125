//! The running gateway's parts, wired together once: the store, the pipeline, the handoff
//! service and the background workers (delivery, routing, event shipping).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::analytics::{ClickHouse, Shipper};
use crate::bot::{Bot, FaqBot, WebhookBot};
use crate::channels::api::ApiConnector;
use crate::channels::email::imap::{ImapPoller, ImapUrl};
use crate::channels::email::inbound::EmailInbound;
use crate::channels::email::{EmailConnector, SupportAddress};
use crate::channels::webchat::{WebChatConnector, WebChatHub};
use crate::channels::{Channels, Dispatcher};
use crate::config::Settings;
use crate::handoff::{Handoffs, Router};
use crate::ingest::Pipeline;
use crate::model::EmailAddress;
use crate::store::{Role, SharedStore};

/// Everything a request handler or a worker needs.
pub struct Services {
    /// The configuration the gateway runs with.
    pub settings: Settings,
    /// The durable store.
    pub store: SharedStore,
    /// Inbound messages.
    pub pipeline: Pipeline,
    /// Escalations and ticket actions.
    pub handoffs: Handoffs,
    /// Outbound delivery.
    pub dispatcher: Dispatcher,
    /// Ticket routing.
    pub router: Router,
    /// Events to ClickHouse.
    pub shipper: Shipper,
    /// Reports from ClickHouse.
    pub clickhouse: ClickHouse,
    /// Live web chat streams.
    pub hub: WebChatHub,
    /// Recently verified API tokens.
    pub tokens: crate::web::auth::TokenCache,
    /// Rate limits on sign-in, the widget and the webhooks.
    pub limits: crate::web::limits::RateLimits,
    /// Recently computed reports, so many open dashboards cost ClickHouse little.
    pub reports: crate::analytics::reports::ReportCache,
    /// Turns raw inbound mail into messages.
    pub email: EmailInbound,
    /// The IMAP poller, when a mailbox is configured (its loop runs as a worker; tests can
    /// also drive single steps).
    pub imap: Option<ImapPoller>,
    shutdown: watch::Sender<bool>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// SHA-256 of a token, hex: what the store keeps instead of the token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: 32 bytes from the OS generator, hex, with a prefix that makes leaked
/// tokens easy to find with secret scanners.
pub fn new_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

impl Services {
    /// Opens the store, makes sure an admin token exists, starts the workers and re-queues
    /// inbound messages left unhandled by a previous run.
    pub async fn start(settings: Settings) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                settings.data_dir.display()
            )
        })?;
        let store = crate::store::open(&settings.store_location())
            .await
            .context("cannot open the store")?;
        ensure_admin_token(&store, &settings).await?;
        // Empty values count as unset (docker compose passes `${VAR:-}` through as "").
        let admin_email = settings.admin_email.as_deref().filter(|e| !e.is_empty());
        let admin_password = settings
            .admin_password
            .as_ref()
            .filter(|p| !p.expose_secret().is_empty());
        if admin_email.is_some() && admin_password.is_none() {
            // (The password alone is fine: `baton admin create` reads it from the environment.)
            tracing::warn!("admin_email is set without admin_password: no admin created");
        }
        if let (Some(email), Some(password)) = (admin_email, admin_password) {
            let email = crate::model::EmailAddress::parse(email)
                .context("admin_email is not an email address")?;
            let password = crate::model::Password::parse(password.expose_secret())
                .context("admin_password")?;
            if crate::accounts::ensure_admin(&store, email, "Admin", &password).await? {
                tracing::info!("created the first admin from admin_email");
            }
        }
        if let Some(token) = &settings.ingest_token {
            store
                .insert_token(
                    &hash_token(token.expose_secret()),
                    Role::Ingest,
                    "mail ingest",
                )
                .await?;
        }
        let support = settings
            .support_address
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()
            .context("support_address is not a valid email address")?
            .map(SupportAddress::new);
        let email = EmailInbound::new(
            support.clone(),
            settings.email_reopen,
            settings.email_subject_window_days,
            settings.max_email_bytes,
        );

        let clickhouse = ClickHouse::new(
            &settings.clickhouse_url,
            &settings.clickhouse_database,
            &settings.clickhouse_user,
            settings.clickhouse_password.as_ref(),
        )?;
        let (shutdown, shutdown_rx) = watch::channel(false);

        let hub = WebChatHub::default();
        let mut channels = Channels::default();
        channels.register(Arc::new(ApiConnector));
        channels.register(Arc::new(WebChatConnector::new(hub.clone())));
        register_platforms(&mut channels, &store, &settings)?;
        if let (Some(url), Some(support)) = (&settings.smtp_url, &support) {
            channels.register(Arc::new(EmailConnector::new(
                store.clone(),
                url.expose_secret(),
                support.clone(),
                settings.support_name.clone(),
            )?));
        }
        let dispatcher = Dispatcher::new(store.clone(), channels, Arc::default());
        let router = Router::new(
            store.clone(),
            dispatcher.clone(),
            crate::handoff::router::RouterSettings {
                queues: settings.queues.clone(),
                texts: {
                    let mut texts = crate::handoff::waiting::default_texts();
                    texts.extend(settings.waiting_texts.clone());
                    texts
                },
                abandon_after: (settings.abandon_after_secs > 0)
                    .then(|| Duration::from_secs(settings.abandon_after_secs)),
                update_gap: Duration::from_secs(settings.waiting_update_secs),
            },
        );
        router.start().await.context("cannot start the router")?;
        let handoffs = Handoffs::new(store.clone(), router.clone());
        handoffs
            .load_rules(settings.escalation_rules.clone())
            .await
            .context("cannot load the escalation rules")?;
        let bot: Arc<dyn Bot> = match &settings.bot_webhook_url {
            Some(url) => Arc::new(WebhookBot::new(
                url.clone(),
                settings.bot_webhook_secret.clone(),
                Duration::from_millis(settings.bot_timeout_ms),
            )?),
            None => Arc::new(FaqBot),
        };
        let pipeline = Pipeline::start(
            store.clone(),
            bot,
            handoffs.clone(),
            dispatcher.clone(),
            shutdown_rx.clone(),
        );
        let shipper = Shipper::new(
            store.clone(),
            clickhouse.clone(),
            settings.ship_batch_size,
            Duration::from_millis(settings.ship_interval_ms),
        );

        let mut workers = vec![
            tokio::spawn(dispatcher.clone().run(shutdown_rx.clone())),
            tokio::spawn(router.clone().run(shutdown_rx.clone())),
            tokio::spawn(shipper.clone().run(shutdown_rx.clone())),
        ];
        if settings.rollup_interval_ms > 0 {
            workers.push(tokio::spawn(
                crate::analytics::rollup::Rollup::new(
                    clickhouse.clone(),
                    crate::analytics::reports::SlaTargets::from_settings(&settings),
                    Duration::from_millis(settings.rollup_interval_ms),
                )
                .run(shutdown_rx.clone()),
            ));
        }
        let imap = match &settings.imap_url {
            Some(url) => Some(ImapPoller::new(
                ImapUrl::parse(url.expose_secret())?,
                email.clone(),
                pipeline.clone(),
                store.clone(),
                Duration::from_millis(settings.imap_poll_ms),
            )),
            None => None,
        };
        if let Some(poller) = &imap {
            workers.push(tokio::spawn(poller.clone().run(shutdown_rx.clone())));
        }
        let recovered = pipeline.recover().await?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "re-queued inbound messages left unhandled by the previous run"
            );
        }

        let limits = crate::web::limits::RateLimits::new(&settings);
        Ok(Arc::new(Self {
            settings,
            store,
            pipeline,
            handoffs,
            dispatcher,
            router,
            shipper,
            clickhouse,
            hub,
            tokens: Default::default(),
            limits,
            reports: Default::default(),
            email,
            imap,
            shutdown,
            workers: Mutex::new(workers),
        }))
    }

    /// Stops the workers (the shipper makes a last attempt to drain the outbox) and closes
    /// the store.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in workers {
            let _ = w.await;
        }
        self.store.close().await;
    }
}

/// The messaging platforms' connectors, each when its credentials are configured.
fn register_platforms(
    channels: &mut Channels,
    store: &SharedStore,
    s: &Settings,
) -> anyhow::Result<()> {
    use crate::channels::{meta::MetaConnector, telegram::TelegramConnector};
    use crate::channels::{twilio::TwilioConnector, whatsapp::WhatsAppConnector};
    use crate::model::ChannelKind;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .context("cannot build the HTTP client")?;
    if let Some(token) = &s.meta_page_token {
        for kind in [ChannelKind::Messenger, ChannelKind::Instagram] {
            channels.register(Arc::new(MetaConnector::new(
                kind,
                store.clone(),
                http.clone(),
                s.meta_graph_url.clone(),
                token.clone(),
            )));
        }
    }
    if let (Some(token), Some(phone)) = (&s.whatsapp_token, &s.whatsapp_phone_number_id) {
        channels.register(Arc::new(WhatsAppConnector::new(
            store.clone(),
            http.clone(),
            s.meta_graph_url.clone(),
            token.clone(),
            phone.clone(),
        )));
    }
    if s.telegram_bot_token.is_some() || !s.telegram_bots.is_empty() {
        channels.register(Arc::new(TelegramConnector::with_bots(
            store.clone(),
            http.clone(),
            s.telegram_api_url.clone(),
            s.telegram_bot_token.clone(),
            s.telegram_bots
                .iter()
                .map(|(name, bot)| (name.clone(), bot.token.clone()))
                .collect(),
        )));
    }
    if let (Some(sid), Some(token), Some(from)) =
        (&s.twilio_account_sid, &s.twilio_auth_token, &s.twilio_from)
    {
        channels.register(Arc::new(TwilioConnector::new(
            store.clone(),
            http,
            s.twilio_api_url.clone(),
            sid.clone(),
            token.clone(),
            from.clone(),
        )));
    }
    Ok(())
}

async fn ensure_admin_token(store: &SharedStore, settings: &Settings) -> anyhow::Result<()> {
    let token = match &settings.api_token {
        Some(t) => t.expose_secret().to_owned(),
        None => read_or_create_token_file(&settings.data_dir.join("admin-token"))?,
    };
    store
        .insert_token(&hash_token(&token), Role::Admin, "first admin")
        .await?;
    Ok(())
}

fn read_or_create_token_file(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let t = existing.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = new_token("baton");
    write_private(path, &token)?;
    tracing::info!(path = %path.display(), "generated the first admin API token (no BATON_API_TOKEN set)");
    Ok(token)
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

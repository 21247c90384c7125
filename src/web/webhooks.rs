//! Platform webhooks: Meta (Messenger, Instagram), WhatsApp Cloud, Telegram, Twilio SMS.
//! Each request is verified (signature or secret token) before its body is parsed; a bad or
//! missing signature stores nothing. Every customer message of a delivery is stored, in order,
//! before the platform gets its 200; unknown event types are acknowledged and logged, because
//! platforms disable webhooks that keep failing.

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::channels::webhook::{PlatformStatus, WebhookError, WebhookEvent};
use crate::channels::{meta, signature, telegram, twilio, whatsapp};
use crate::model::{ChannelKind, DeliveryStatus, Identity, MessageText};
use crate::services::Services;

/// Registers the webhook routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/webhooks")
            .route("/meta", web::get().to(meta_handshake))
            .route("/meta", web::post().to(meta_post))
            .route("/whatsapp", web::get().to(whatsapp_handshake))
            .route("/whatsapp", web::post().to(whatsapp_post))
            .route("/telegram", web::post().to(telegram_post))
            .route("/telegram/{bot}", web::post().to(telegram_named))
            .route("/twilio/sms", web::post().to(twilio_post)),
    );
}

fn not_configured(what: &'static str) -> ApiError {
    // The same answer as an unknown route: a scanner learns nothing about what is set up.
    ApiError::NotFound(what)
}

fn bad_body(e: WebhookError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

#[derive(Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's subscription handshake: echo the challenge when the verify token matches.
fn handshake(expected: Option<&SecretString>, q: Handshake) -> Result<HttpResponse, ApiError> {
    let expected = expected.ok_or(not_configured("webhook"))?;
    let given = q.verify_token.unwrap_or_default();
    let matches: bool = given
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into();
    if q.mode.as_deref() != Some("subscribe") || !matches {
        return Err(ApiError::Forbidden("verify token mismatch".into()));
    }
    let challenge = q.challenge.unwrap_or_default();
    if challenge.len() > 256 || !challenge.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest("invalid hub.challenge".into()));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain")
        .body(challenge))
}

async fn meta_handshake(
    services: web::Data<Services>,
    q: web::Query<Handshake>,
) -> Result<HttpResponse, ApiError> {
    handshake(services.settings.meta_verify_token.as_ref(), q.into_inner())
}

async fn whatsapp_handshake(
    services: web::Data<Services>,
    q: web::Query<Handshake>,
) -> Result<HttpResponse, ApiError> {
    let s = &services.settings;
    handshake(
        s.whatsapp_verify_token
            .as_ref()
            .or(s.meta_verify_token.as_ref()),
        q.into_inner(),
    )
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// 401 without a signature, 403 with a wrong one.
fn check(present: bool, valid: bool) -> Result<(), ApiError> {
    match (present, valid) {
        (_, true) => Ok(()),
        (false, false) => Err(ApiError::Unauthorized),
        (true, false) => Err(ApiError::Forbidden("invalid signature".into())),
    }
}

/// Checks Meta's `X-Hub-Signature-256` (Messenger, Instagram and WhatsApp sign alike).
fn check_hub_signature(
    req: &HttpRequest,
    secret: &SecretString,
    body: &[u8],
) -> Result<(), ApiError> {
    let sig = header(req, "x-hub-signature-256");
    check(
        sig.is_some(),
        signature::verify_meta(secret.expose_secret().as_bytes(), body, sig),
    )
}

async fn meta_post(
    req: HttpRequest,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let secret = services
        .settings
        .meta_app_secret
        .as_ref()
        .ok_or(not_configured("webhook"))?;
    check_hub_signature(&req, secret, &body)?;
    let (channel, events) = meta::parse_delivery(&body).map_err(bad_body)?;
    store_events(&services, channel, events).await?;
    Ok(HttpResponse::Ok().finish())
}

async fn whatsapp_post(
    req: HttpRequest,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let s = &services.settings;
    let secret = s
        .whatsapp_app_secret
        .as_ref()
        .or(s.meta_app_secret.as_ref())
        .ok_or(not_configured("webhook"))?;
    check_hub_signature(&req, secret, &body)?;
    let events = whatsapp::parse(&body).map_err(bad_body)?;
    store_events(&services, ChannelKind::WhatsApp, events).await?;
    Ok(HttpResponse::Ok().finish())
}

async fn telegram_post(
    req: HttpRequest,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let expected = services
        .settings
        .telegram_secret_token
        .as_ref()
        .ok_or(not_configured("webhook"))?;
    check_telegram_secret(&req, expected)?;
    let events = telegram::parse(&body).map_err(bad_body)?;
    store_events(&services, ChannelKind::Telegram, events).await?;
    Ok(HttpResponse::Ok().finish())
}

/// A named bot from the config file: its own secret token, its chats kept apart by name.
async fn telegram_named(
    req: HttpRequest,
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let bot = services
        .settings
        .telegram_bots
        .get(&name)
        .ok_or(not_configured("bot"))?;
    check_telegram_secret(&req, &bot.secret_token)?;
    let events = telegram::for_bot(&name, telegram::parse(&body).map_err(bad_body)?);
    store_events(&services, ChannelKind::Telegram, events).await?;
    Ok(HttpResponse::Ok().finish())
}

fn check_telegram_secret(
    req: &HttpRequest,
    expected: &secrecy::SecretString,
) -> Result<(), ApiError> {
    let token = header(req, "x-telegram-bot-api-secret-token");
    check(
        token.is_some(),
        signature::verify_telegram(expected.expose_secret(), token),
    )
}

async fn twilio_post(
    req: HttpRequest,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let s = &services.settings;
    let token = s
        .twilio_auth_token
        .as_ref()
        .ok_or(not_configured("webhook"))?;
    let (params, events) = twilio::parse(&body).map_err(bad_body)?;
    // Twilio signs the URL it called: behind a proxy that is the public one, not ours.
    let base = s.public_url.clone().unwrap_or_else(|| {
        let info = req.connection_info();
        format!("{}://{}", info.scheme(), info.host())
    });
    let url = format!(
        "{}{}",
        base.trim_end_matches('/'),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/webhooks/twilio/sms")
    );
    let sig = header(&req, "x-twilio-signature");
    check(
        sig.is_some(),
        signature::verify_twilio(token.expose_secret().as_bytes(), &url, &params, sig),
    )?;
    store_events(&services, ChannelKind::Sms, events).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/xml")
        .body(twilio::EMPTY_TWIML))
}

/// Stores every customer message of a delivery, in order. A store failure answers 503 so the
/// platform delivers again; what was stored before is recognized as a redelivery then.
async fn store_events(
    services: &Services,
    channel: ChannelKind,
    events: Vec<WebhookEvent>,
) -> Result<(), ApiError> {
    for event in events {
        match event {
            WebhookEvent::Message(m) => match crate::channels::webhook::to_inbound(channel, m) {
                Ok(inbound) => {
                    services.pipeline.accept(inbound).await?;
                }
                Err(e) => {
                    tracing::warn!(%channel, error = %e, "skipping a platform message that does not fit the model");
                }
            },
            WebhookEvent::Edit {
                external_message_id,
                external_sender_id,
                text,
            } => {
                let (Ok(sender), Ok(text)) = (
                    Identity::channel(channel, &external_sender_id),
                    MessageText::parse(text.trim()),
                ) else {
                    tracing::warn!(%channel, external_message_id, "skipping an edit that does not fit the model");
                    continue;
                };
                let applied = services
                    .store
                    .edit_inbound(channel, &external_message_id, &sender, text)
                    .await?;
                tracing::debug!(%channel, external_message_id, applied, "message edit");
            }
            WebhookEvent::Status {
                external_message_id,
                status,
                error,
            } => {
                let status = match status {
                    PlatformStatus::Sent => DeliveryStatus::Sent,
                    PlatformStatus::Delivered => DeliveryStatus::Delivered,
                    PlatformStatus::Read => DeliveryStatus::Read,
                    PlatformStatus::Failed => DeliveryStatus::Failed,
                };
                let matched = services
                    .store
                    .apply_receipt(channel, &external_message_id, status, error)
                    .await?;
                tracing::debug!(%channel, external_message_id, ?status, matched, "delivery receipt");
            }
            WebhookEvent::Ignored { kind } => {
                tracing::debug!(%channel, kind, "webhook event acknowledged and ignored");
            }
        }
    }
    Ok(())
}

//! Inbound mail over HTTP: `POST /ingest/email` with the raw RFC 822 message as the body
//! (`Content-Type: message/rfc822`), the shape Postfix pipes and Mailgun, SendGrid and SES
//! deliver. Answered 202 only once the mail is stored.

use actix_web::{HttpRequest, HttpResponse, web};

use super::auth::Ingester;
use super::error::ApiError;
use crate::channels::email::inbound::EmailError;
use crate::services::Services;

/// Registers the ingest routes; the body limit is the mail limit, not the API's.
pub fn routes(cfg: &mut web::ServiceConfig, max_email_bytes: usize) {
    cfg.service(
        web::resource("/ingest/email")
            .app_data(web::PayloadConfig::new(max_email_bytes))
            .route(web::post().to(ingest_email)),
    );
}

async fn ingest_email(
    _caller: Ingester,
    req: HttpRequest,
    services: web::Data<Services>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("message/rfc822") {
        return Err(ApiError::UnsupportedMediaType(
            "send the raw mail with Content-Type: message/rfc822".into(),
        ));
    }
    let email = services.email.prepare(&body).map_err(|e| match e {
        EmailError::TooLarge(limit) => ApiError::PayloadTooLarge(limit),
        other => ApiError::Unprocessable(other.to_string()),
    })?;
    let receipt = services.pipeline.accept_email(email).await?;
    Ok(HttpResponse::Accepted().json(receipt))
}

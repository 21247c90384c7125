//! Rate limits: sign-in attempts per client address and per account, and requests per client
//! address to the public widget and the platform webhooks. In memory, per instance (GCRA from
//! the `governor` crate); a limited client gets 429 with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::config::Settings;
use crate::services::Services;

/// The gateway's rate limiters.
pub struct RateLimits {
    login_by_address: DefaultKeyedRateLimiter<IpAddr>,
    login_by_account: DefaultKeyedRateLimiter<String>,
    widget: DefaultKeyedRateLimiter<IpAddr>,
    webhooks: DefaultKeyedRateLimiter<IpAddr>,
    trust_forwarded_for: bool,
    checks: AtomicU64,
}

fn per_minute(n: u32) -> Quota {
    // Validated non-zero in `Settings::validate`; 1 if someone bypassed it.
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// Checks one key; the error carries how long to wait.
fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), ApiError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::TooManyRequests(wait.as_secs() + 1)
    })
}

impl RateLimits {
    /// Limiters with the configured rates.
    pub fn new(settings: &Settings) -> Self {
        Self {
            login_by_address: RateLimiter::keyed(per_minute(settings.login_attempts_per_minute)),
            login_by_account: RateLimiter::keyed(per_minute(settings.login_attempts_per_minute)),
            widget: RateLimiter::keyed(per_minute(settings.widget_requests_per_minute)),
            webhooks: RateLimiter::keyed(per_minute(settings.webhook_requests_per_minute)),
            trust_forwarded_for: settings.trust_forwarded_for,
            checks: AtomicU64::new(0),
        }
    }

    /// The client's address: the peer, or what the proxy says when it is trusted.
    pub fn client_address(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        if !self.trust_forwarded_for {
            return peer;
        }
        req.connection_info()
            .realip_remote_addr()
            .and_then(|a| {
                a.parse::<IpAddr>()
                    .ok()
                    .or_else(|| a.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
            })
            .unwrap_or(peer)
    }

    /// Counts a sign-in attempt from this address for this account.
    pub fn login_attempt(&self, req: &HttpRequest, account: &str) -> Result<(), ApiError> {
        self.counted();
        check(&self.login_by_address, &self.client_address(req))?;
        check(&self.login_by_account, &account.trim().to_lowercase())
    }

    /// Every few thousand checks, forgets the keys that are back to a full allowance, so
    /// clients that came once do not stay in memory.
    fn counted(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.forget_idle();
        }
    }

    /// Drops the memory of keys that are back to a full allowance.
    pub fn forget_idle(&self) {
        self.login_by_address.retain_recent();
        self.login_by_account.retain_recent();
        self.widget.retain_recent();
        self.webhooks.retain_recent();
    }
}

/// Limits requests to the widget and the webhooks per client address.
pub async fn limit_public(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let path = req.path();
    let widget = path.starts_with("/widget/");
    let webhooks = path.starts_with("/webhooks/");
    if (widget || webhooks)
        && let Some(services) = req.app_data::<web::Data<Services>>()
    {
        let limits = &services.limits;
        limits.counted();
        let address = limits.client_address(req.request());
        let limiter = if widget {
            &limits.widget
        } else {
            &limits.webhooks
        };
        if let Err(e) = check(limiter, &address) {
            return Ok(req.into_response(e.error_response()));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_sign_in_attempt_in_a_minute_is_refused_with_a_wait() {
        let limits = RateLimits::new(&Settings::default());
        let req = actix_web::test::TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .to_http_request();
        for _ in 0..10 {
            limits.login_attempt(&req, "a@example.com").unwrap();
        }
        match limits.login_attempt(&req, "a@example.com") {
            Err(ApiError::TooManyRequests(secs)) => assert!((1..=7).contains(&secs)),
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[test]
    fn one_account_under_attack_from_many_addresses_is_still_limited() {
        let limits = RateLimits::new(&Settings::default());
        for i in 0..10u8 {
            let req = actix_web::test::TestRequest::default()
                .peer_addr(format!("10.0.1.{i}:5000").parse().unwrap())
                .to_http_request();
            limits.login_attempt(&req, "Boss@Example.com").unwrap();
        }
        let req = actix_web::test::TestRequest::default()
            .peer_addr("10.0.2.1:5000".parse().unwrap())
            .to_http_request();
        assert!(limits.login_attempt(&req, "boss@example.com").is_err());
    }

    #[test]
    fn a_forwarded_address_counts_only_behind_a_trusted_proxy() {
        let req = actix_web::test::TestRequest::default()
            .peer_addr("10.0.0.9:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", "203.0.113.7"))
            .to_http_request();
        let untrusted = RateLimits::new(&Settings::default());
        assert_eq!(untrusted.client_address(&req).to_string(), "10.0.0.9");
        let trusted = RateLimits::new(&Settings {
            trust_forwarded_for: true,
            ..Settings::default()
        });
        assert_eq!(trusted.client_address(&req).to_string(), "203.0.113.7");
    }
}

//! Webhook signature checks for the platforms that sign their deliveries.
//!
//! Every check compares in constant time (`Mac::verify_slice`, `subtle`) so that an attacker
//! cannot learn a valid signature byte by byte from response timings. Every check takes the
//! header as `Option<&str>` and answers `false`, never panics, for a missing or garbled one:
//! the header is attacker-controlled input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<Sha1>;

/// Checks Meta's `X-Hub-Signature-256: sha256=<hex>` (Messenger, Instagram, WhatsApp Cloud API):
/// HMAC-SHA256 of the raw body with the app secret.
///
/// `body` must be the bytes exactly as received: a re-serialized body does not verify.
pub fn verify_meta(app_secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(sig) = header.and_then(|h| decode_hex_with_prefix(h, "sha256=")) else {
        return false;
    };
    let mut mac = new_hmac_sha256(app_secret);
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Checks Meta's legacy `X-Hub-Signature: sha1=<hex>`: HMAC-SHA1 of the raw body.
///
/// Kept for apps and test tools that still send only the SHA-1 header; prefer [`verify_meta`]
/// whenever `X-Hub-Signature-256` is present.
pub fn verify_meta_sha1(app_secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(sig) = header.and_then(|h| decode_hex_with_prefix(h, "sha1=")) else {
        return false;
    };
    let mut mac = new_hmac_sha1(app_secret);
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Checks Twilio's `X-Twilio-Signature` for a form-encoded request: base64 HMAC-SHA1 of the
/// full public URL followed by every parameter's name and value, sorted.
///
/// Sorting and de-duplication follow twilio-python (names sorted, the values of a repeated
/// name sorted, exact duplicate pairs counted once), because that is what Twilio signs.
/// Proxies often add or drop the default port, so the URL is also tried with its port
/// toggled (`:443`/`:80` added when absent, any port removed when present), as Twilio's own
/// validators do.
pub fn verify_twilio(
    auth_token: &[u8],
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> bool {
    let Some(sig) = header.and_then(decode_base64) else {
        return false;
    };
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let check = |candidate: &str| {
        let mut mac = new_hmac_sha1(auth_token);
        mac.update(candidate.as_bytes());
        for (name, value) in &sorted {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        mac.verify_slice(&sig).is_ok()
    };
    // Both candidates are always computed so the answer's timing does not reveal which matched.
    let plain = check(url);
    let toggled = toggle_port(url).is_some_and(|u| check(&u));
    plain | toggled
}

/// Checks Twilio's signature for a request with a JSON (non-form) body: the URL carries
/// `bodySHA256=<hex sha256 of the body>` and the signature covers the URL alone.
///
/// Both must hold: the signature proves the URL (and so the hash) came from Twilio, the hash
/// proves the body is the one Twilio sent.
pub fn verify_twilio_json(auth_token: &[u8], url: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(expected_hash) = query_param(url, "bodySHA256").and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let actual_hash = Sha256::digest(body);
    let hash_ok: bool = actual_hash[..].ct_eq(&expected_hash).into();
    let sig_ok = verify_twilio(auth_token, url, &[], header);
    hash_ok & sig_ok
}

/// Checks Telegram's `X-Telegram-Bot-Api-Secret-Token` against the secret Baton registered
/// with `setWebhook`.
///
/// Only the length can leak through timing, and the secret's length is not secret enough
/// to matter.
pub fn verify_telegram(expected: &str, header: Option<&str>) -> bool {
    match header {
        Some(got) if !expected.is_empty() => expected.as_bytes().ct_eq(got.as_bytes()).into(),
        _ => false,
    }
}

/// Checks LINE's `X-Line-Signature`: base64 HMAC-SHA256 of the raw body with the channel secret.
pub fn verify_line(channel_secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(sig) = header.and_then(decode_base64) else {
        return false;
    };
    let mut mac = new_hmac_sha256(channel_secret);
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Checks Slack's `X-Slack-Signature: v0=<hex>`: HMAC-SHA256 of `v0:{timestamp}:{body}` with
/// the signing secret, `timestamp` being the `X-Slack-Request-Timestamp` header.
///
/// This proves authenticity only; replay protection needs [`slack_timestamp_fresh`] too,
/// kept separate so the clock can be injected in tests.
pub fn verify_slack(
    signing_secret: &[u8],
    timestamp: &str,
    body: &[u8],
    header: Option<&str>,
) -> bool {
    let Some(sig) = header.and_then(|h| decode_hex_with_prefix(h, "v0=")) else {
        return false;
    };
    let mut mac = new_hmac_sha256(signing_secret);
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Whether Slack's request timestamp (epoch seconds) lies within `window_secs` of `now_secs`;
/// Slack recommends five minutes (300) to stop replays of captured requests.
pub fn slack_timestamp_fresh(timestamp: &str, now_secs: i64, window_secs: i64) -> bool {
    timestamp
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|ts| now_secs.checked_sub(ts))
        .is_some_and(|age| age.checked_abs().is_some_and(|a| a <= window_secs))
}

fn new_hmac_sha256(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

fn new_hmac_sha1(key: &[u8]) -> HmacSha1 {
    <HmacSha1 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Meta sends lowercase hex, but hex digits' case carries no meaning, so either is accepted.
fn decode_hex_with_prefix(header: &str, prefix: &str) -> Option<Vec<u8>> {
    let hex_part = header.trim().strip_prefix(prefix)?;
    hex::decode(hex_part).ok().filter(|b| !b.is_empty())
}

fn decode_base64(header: &str) -> Option<Vec<u8>> {
    BASE64
        .decode(header.trim().as_bytes())
        .ok()
        .filter(|b| !b.is_empty())
}

/// The URL with its port toggled: `None` when the URL has no recognizable scheme/authority.
fn toggle_port(url: &str) -> Option<String> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let tail = &rest[authority_len..];
    // The host starts after any userinfo; an IPv6 literal's colons are inside brackets.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let port_colon = host_port
        .rfind(':')
        .filter(|&i| !host_port[i..].contains(']'))
        .filter(|&i| host_port[i + 1..].bytes().all(|b| b.is_ascii_digit()));
    let prefix = &url[..rest_start + host_start];
    match port_colon {
        Some(i) => Some(format!("{prefix}{}{tail}", &host_port[..i])),
        None => {
            let port = match scheme.to_ascii_lowercase().as_str() {
                "https" => 443,
                "http" => 80,
                _ => return None,
            };
            Some(format!("{prefix}{host_port}:{port}{tail}"))
        }
    }
}

/// The raw (not percent-decoded) value of a query parameter: Twilio puts a plain hex digest there.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const WEBHOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks");

    fn vector_body(v: &Value) -> Vec<u8> {
        if let Some(body) = v.get("body").and_then(Value::as_str) {
            return body.as_bytes().to_vec();
        }
        let file = v["body_file"]
            .as_str()
            .unwrap_or_else(|| panic!("vector {} has neither body nor body_file", v["id"]));
        // body_file is relative to the signatures folder ("../messenger/...").
        let path = format!("{WEBHOOKS}/signatures/{file}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("vector {}: read {path}: {e}", v["id"]))
    }

    fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("vector {} lacks string {key}", v["id"]))
    }

    fn twilio_params(v: &Value) -> Vec<(String, String)> {
        if let Some(map) = v.get("post_params").and_then(Value::as_object) {
            return map
                .iter()
                .map(|(k, val)| (k.clone(), val.as_str().expect("param value").to_owned()))
                .collect();
        }
        if let Some(list) = v.get("post_params_list").and_then(Value::as_array) {
            return list
                .iter()
                .map(|pair| {
                    (
                        pair[0].as_str().expect("name").to_owned(),
                        pair[1].as_str().expect("value").to_owned(),
                    )
                })
                .collect();
        }
        Vec::new()
    }

    #[test]
    fn every_signature_vector_verifies_or_fails_exactly_as_stated() {
        let raw = std::fs::read(format!("{WEBHOOKS}/signatures/vectors.json")).expect("vectors");
        let doc: Value = serde_json::from_slice(&raw).expect("vectors json");
        let vectors = doc["vectors"].as_array().expect("vectors array");
        assert!(!vectors.is_empty());
        let mut checked = 0;
        for v in vectors {
            let id = str_field(v, "id");
            let expect = v["expect_valid"].as_bool().expect("expect_valid");
            let value = Some(str_field(v, "value"));
            let header = str_field(v, "header");
            let got = match header {
                "X-Hub-Signature-256" => verify_meta(
                    str_field(v, "app_secret").as_bytes(),
                    &vector_body(v),
                    value,
                ),
                "X-Hub-Signature" => verify_meta_sha1(
                    str_field(v, "app_secret").as_bytes(),
                    &vector_body(v),
                    value,
                ),
                "X-Line-Signature" => verify_line(
                    str_field(v, "channel_secret").as_bytes(),
                    &vector_body(v),
                    value,
                ),
                "X-Slack-Signature" => verify_slack(
                    str_field(v, "signing_secret").as_bytes(),
                    str_field(v, "timestamp"),
                    &vector_body(v),
                    value,
                ),
                "X-Twilio-Signature" if v.get("body").is_some() => verify_twilio_json(
                    str_field(v, "auth_token").as_bytes(),
                    str_field(v, "url"),
                    &vector_body(v),
                    value,
                ),
                "X-Twilio-Signature" => verify_twilio(
                    str_field(v, "auth_token").as_bytes(),
                    str_field(v, "url"),
                    &twilio_params(v),
                    value,
                ),
                other => panic!("vector {id}: no verifier for header {other}"),
            };
            assert_eq!(got, expect, "vector {id}");
            checked += 1;
        }
        assert_eq!(checked, vectors.len());
    }

    #[test]
    fn slack_docs_example_is_stale_under_a_five_minute_window() {
        assert!(!slack_timestamp_fresh("1531420618", 1_700_000_000, 300));
        assert!(slack_timestamp_fresh("1531420618", 1_531_420_700, 300));
        assert!(!slack_timestamp_fresh("not a number", 0, 300));
        assert!(!slack_timestamp_fresh(
            "-9223372036854775808",
            i64::MAX,
            300
        ));
    }

    #[test]
    fn a_missing_header_never_verifies() {
        assert!(!verify_meta(b"s", b"body", None));
        assert!(!verify_meta_sha1(b"s", b"body", None));
        assert!(!verify_twilio(b"s", "https://x.test/", &[], None));
        assert!(!verify_twilio_json(
            b"s",
            "https://x.test/?bodySHA256=00",
            b"",
            None
        ));
        assert!(!verify_telegram("secret", None));
        assert!(!verify_line(b"s", b"body", None));
        assert!(!verify_slack(b"s", "1", b"body", None));
    }

    #[test]
    fn a_meta_signature_with_the_wrong_prefix_fails() {
        let secret = b"60efff025951cddde78c8d03de52cc90";
        let body =
            std::fs::read(format!("{WEBHOOKS}/messenger/m4j_real_text_signed.json")).unwrap();
        let hex = "2c28be6e4b8c62b732b3487f445dbec6624868db6844b347567ebc86d7da3ad4";
        assert!(verify_meta(secret, &body, Some(&format!("sha256={hex}"))));
        assert!(!verify_meta(secret, &body, Some(hex)));
        assert!(!verify_meta(secret, &body, Some(&format!("sha1={hex}"))));
        assert!(!verify_meta(secret, &body, Some(&format!("SHA256={hex}"))));
        // A SHA-1 header must not pass as the SHA-256 one or the other way round.
        assert!(!verify_meta_sha1(
            secret,
            &body,
            Some(&format!("sha256={hex}"))
        ));
    }

    #[test]
    fn a_truncated_signature_fails_instead_of_matching_a_prefix() {
        let secret = b"60efff025951cddde78c8d03de52cc90";
        let body =
            std::fs::read(format!("{WEBHOOKS}/messenger/m4j_real_text_signed.json")).unwrap();
        let hex = "2c28be6e4b8c62b732b3487f445dbec6624868db6844b347567ebc86d7da3ad4";
        for cut in [0, 1, 2, 31, 32, 62, 63] {
            let header = format!("sha256={}", &hex[..cut]);
            assert!(!verify_meta(secret, &body, Some(&header)), "cut {cut}");
        }
        let header = format!("sha256={hex}00");
        assert!(!verify_meta(secret, &body, Some(&header)));
        assert!(!verify_meta_sha1(
            secret,
            &body,
            Some("sha1=3daa41999293ff66c3eb")
        ));
    }

    #[test]
    fn non_ascii_garbage_in_any_header_never_panics_and_never_verifies() {
        let garbage = [
            "",
            "sha256=",
            "sha256=ÿÿÿÿ",
            "sha256=日本語日本語",
            "v0=\u{0}\u{1}",
            "v0=zz",
            "====",
            "🙂🙂🙂",
            "sha1=\u{feff}3daa41999293ff66c3eb313e04bcf77861bb0276",
            "http://",
        ];
        for g in garbage {
            let h = Some(g);
            assert!(!verify_meta(b"k", b"b", h));
            assert!(!verify_meta_sha1(b"k", b"b", h));
            assert!(!verify_line(b"k", b"b", h));
            assert!(!verify_slack(b"k", "1", b"b", h));
            assert!(!verify_telegram("secret", h));
            assert!(!verify_twilio(b"k", g, &[], h));
            assert!(!verify_twilio_json(b"k", g, b"b", h));
        }
    }

    #[test]
    fn telegram_secret_must_match_exactly() {
        assert!(verify_telegram("s3cr3t-token", Some("s3cr3t-token")));
        assert!(!verify_telegram("s3cr3t-token", Some("s3cr3t-toke")));
        assert!(!verify_telegram("s3cr3t-token", Some("s3cr3t-tokenX")));
        assert!(!verify_telegram("s3cr3t-token", Some("")));
        // An unconfigured (empty) secret must not let an empty header through.
        assert!(!verify_telegram("", Some("")));
    }

    #[test]
    fn twilio_json_body_fails_when_the_body_does_not_match_its_hash() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        let sig = Some("a9nBmqA0ju/hNViExpshrM61xv4=");
        assert!(verify_twilio_json(
            b"12345",
            url,
            br#"{"property": "value", "boolean": true}"#,
            sig
        ));
        assert!(!verify_twilio_json(
            b"12345",
            url,
            br#"{"property": "value", "boolean": false}"#,
            sig
        ));
    }

    #[test]
    fn port_toggling_handles_userinfo_ipv6_and_odd_urls() {
        assert_eq!(
            toggle_port("https://a.test/x").as_deref(),
            Some("https://a.test:443/x")
        );
        assert_eq!(
            toggle_port("http://a.test:1234?q").as_deref(),
            Some("http://a.test?q")
        );
        assert_eq!(
            toggle_port("https://u:p@a.test/").as_deref(),
            Some("https://u:p@a.test:443/")
        );
        assert_eq!(
            toggle_port("https://[::1]/").as_deref(),
            Some("https://[::1]:443/")
        );
        assert_eq!(
            toggle_port("https://[::1]:8443/").as_deref(),
            Some("https://[::1]/")
        );
        assert_eq!(toggle_port("ftp://a.test/"), None);
        assert_eq!(toggle_port("no scheme"), None);
    }
}

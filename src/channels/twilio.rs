//! Twilio Messaging webhooks (SMS, MMS, WhatsApp through Twilio): form-encoded requests for
//! incoming messages and for status callbacks of messages Baton sent.
//!
//! The form is decoded by hand rather than with `serde_urlencoded`: that crate is only a
//! transitive dependency here, and it decodes invalid percent escapes and invalid UTF-8
//! leniently, where a webhook body that is not a valid form should be refused.

use super::webhook::{PlatformMessage, PlatformStatus, WebhookError, WebhookEvent};
use crate::model::Attachment;

/// The answer to an incoming-message webhook that sends no reply: Twilio expects TwiML, and
/// an empty `<Response>` tells it to do nothing (replies go out through the REST API).
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// Twilio attaches at most 10 media to one message; the cap keeps a forged `NumMedia` from
/// making the parser loop for long.
const MAX_MEDIA: usize = 10;

/// The decoded form parameters, in body order: Twilio's signature covers them all, including
/// ones Baton does not read.
pub type FormParams = Vec<(String, String)>;

/// Parses a Twilio Messaging webhook body.
///
/// Returns the decoded parameters in body order (the signature check sorts and signs them
/// with the URL) and the events: an incoming message (has `Body` or media) is a
/// [`WebhookEvent::Message`] from the `From` address; a status callback (`MessageStatus` or
/// `SmsStatus` without `Body`) is a [`WebhookEvent::Status`]; anything else is
/// [`WebhookEvent::Ignored`]. A body that is not a valid form is [`WebhookError::Malformed`].
pub fn parse(form: &[u8]) -> Result<(FormParams, Vec<WebhookEvent>), WebhookError> {
    let params = decode_form(form)?;
    let event = event_of(&params)?;
    Ok((params, vec![event]))
}

fn event_of(params: &[(String, String)]) -> Result<WebhookEvent, WebhookError> {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let sid = get("MessageSid")
        .or_else(|| get("SmsMessageSid"))
        .or_else(|| get("SmsSid"))
        .filter(|s| !s.is_empty());
    let status = get("MessageStatus").or_else(|| get("SmsStatus"));
    let num_media = match get("NumMedia") {
        None | Some("") => 0,
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| WebhookError::Unexpected(format!("NumMedia is not a count: {n:?}")))?,
    };

    // An incoming message always has Body (empty for a picture alone); status callbacks
    // never do. Incoming ones also say SmsStatus=received, so the status alone cannot tell.
    let incoming = get("Body").is_some() || num_media > 0;
    if incoming && matches!(status, None | Some("received" | "receiving")) {
        let sid =
            sid.ok_or_else(|| WebhookError::Unexpected("message without MessageSid".into()))?;
        let from = get("From")
            .filter(|f| !f.is_empty())
            .ok_or_else(|| WebhookError::Unexpected("message without From".into()))?;
        let attachments = (0..num_media.min(MAX_MEDIA))
            .filter_map(|i| {
                let url = get(&format!("MediaUrl{i}")).filter(|u| !u.is_empty())?;
                Some(Attachment {
                    content_type: get(&format!("MediaContentType{i}"))
                        .filter(|t| !t.is_empty())
                        .unwrap_or("application/octet-stream")
                        .to_string(),
                    url: Some(url.to_string()),
                    name: None,
                    size: None,
                    content_id: None,
                    inline: false,
                })
            })
            .collect();
        // WhatsApp through Twilio writes `whatsapp:+E164`; the number alone links customers.
        let phone = from.rsplit_once(':').map_or(from, |(_, number)| number);
        return Ok(WebhookEvent::Message(PlatformMessage {
            external_sender_id: from.to_string(),
            sender_name: get("ProfileName")
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            phone: phone.starts_with('+').then(|| phone.to_string()),
            external_message_id: sid.to_string(),
            // Twilio sends no time with the message: the receiver stamps it.
            timestamp_ms: None,
            text: get("Body").filter(|b| !b.is_empty()).map(str::to_string),
            attachments,
            // WhatsApp quick-reply buttons through Twilio.
            payload: get("ButtonPayload")
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            reply_to: get("OriginalRepliedMessageSid")
                .filter(|r| !r.is_empty())
                .map(str::to_string),
        }));
    }

    if let Some(status) = status.filter(|_| !incoming) {
        let Some(sid) = sid else {
            return Err(WebhookError::Unexpected(
                "status callback without MessageSid".into(),
            ));
        };
        let mapped = match status {
            // Twilio has taken it; later callbacks move it on.
            "accepted" | "scheduled" | "queued" | "sending" | "sent" => PlatformStatus::Sent,
            "delivered" | "partially_delivered" => PlatformStatus::Delivered,
            "read" => PlatformStatus::Read,
            "undelivered" | "failed" | "canceled" => PlatformStatus::Failed,
            other => {
                return Ok(WebhookEvent::Ignored {
                    kind: format!("status:{other}"),
                });
            }
        };
        let error = (mapped == PlatformStatus::Failed).then(|| {
            let code = get("ErrorCode").filter(|c| !c.is_empty());
            let message = get("ErrorMessage").filter(|m| !m.is_empty());
            match (code, message) {
                (Some(c), Some(m)) => format!("Twilio error {c}: {m}"),
                (Some(c), None) => format!("Twilio error {c}"),
                (None, Some(m)) => m.to_string(),
                (None, None) => format!("message {status}"),
            }
        });
        return Ok(WebhookEvent::Status {
            external_message_id: sid.to_string(),
            status: mapped,
            error,
        });
    }

    Ok(WebhookEvent::Ignored {
        kind: match status {
            Some(s) => format!("unknown:status:{s}"),
            None => "unknown:form".into(),
        },
    })
}

/// Decodes `application/x-www-form-urlencoded`: `+` is a space, `%XX` a byte, and the
/// decoded bytes must be UTF-8. Empty segments (`a=1&&b=2`) are skipped as browsers do.
fn decode_form(form: &[u8]) -> Result<FormParams, WebhookError> {
    form.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            Ok((decode_component(key)?, decode_component(value)?))
        })
        .collect()
}

fn decode_component(raw: &[u8]) -> Result<String, WebhookError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |at: usize| raw.get(at).and_then(|b| (*b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(WebhookError::Malformed(format!(
                        "invalid percent escape at byte {i}"
                    )));
                };
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| WebhookError::Malformed("form value is not UTF-8".into()))
}

// ---------------------------------------------------------------------------------------------
// Outbound: the Twilio Messaging connector.
// ---------------------------------------------------------------------------------------------

/// The Twilio connector: `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with basic
/// auth (account SID and auth token), form `To`, `From`, `Body`. Returns Twilio's `sid`.
///
/// `from` is the sender: a Twilio number (`+15551234567`, or `whatsapp:+1...` for WhatsApp
/// through Twilio). It is not in the config yet; the caller passes it.
///
/// Text only for now: attachments (MMS media) are not sent.
pub struct TwilioConnector {
    store: crate::store::SharedStore,
    http: reqwest::Client,
    base_url: String,
    account_sid: String,
    auth_token: secrecy::SecretString,
    from: String,
}

impl TwilioConnector {
    /// A connector calling Twilio's REST API at `base_url` (e.g. `https://api.twilio.com`) for
    /// the account `account_sid` with its auth token, sending from the number `from`.
    pub fn new(
        store: crate::store::SharedStore,
        http: reqwest::Client,
        base_url: String,
        account_sid: String,
        auth_token: secrecy::SecretString,
        from: String,
    ) -> Self {
        Self {
            store,
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            account_sid,
            auth_token,
            from,
        }
    }
}

/// The message of a Twilio REST error: `{"code": 21211, "message": ...}`.
fn twilio_error_message(body: &serde_json::Value) -> Option<String> {
    let message = body.get("message")?.as_str()?;
    Some(match body.get("code").and_then(serde_json::Value::as_i64) {
        Some(code) => format!("{message} (code {code})"),
        None => message.to_owned(),
    })
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[async_trait::async_trait]
impl crate::channels::Connector for TwilioConnector {
    fn kind(&self) -> crate::model::ChannelKind {
        crate::model::ChannelKind::Sms
    }

    async fn send(
        &self,
        delivery: &crate::store::Delivery,
    ) -> Result<Option<String>, crate::channels::SendError> {
        use super::platform::read_answer;
        use secrecy::ExposeSecret;
        let message = &delivery.message;
        let recipient = self
            .store
            .channel_recipient(message.conversation_id)
            .await?;
        let mut form = format!(
            "To={}&From={}&Body={}",
            form_encode(&recipient.external_id),
            form_encode(&self.from),
            form_encode(&message.text)
        );
        // MMS: Twilio fetches each file from its URL.
        for file in &message.attachments {
            if let Some(url) = &file.url {
                form.push_str("&MediaUrl=");
                form.push_str(&form_encode(url));
            }
        }
        let token = self.auth_token.expose_secret();
        let result = self
            .http
            .post(format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                self.base_url, self.account_sid
            ))
            .basic_auth(&self.account_sid, Some(token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .timeout(super::platform::SEND_TIMEOUT)
            .body(form)
            .send()
            .await;
        let answer = read_answer("Twilio", result, token, twilio_error_message).await?;
        Ok(answer
            .get("sid")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bodies follow the parameters of Twilio's "Twilio's request to your incoming message
    // Webhook URL" (docs/messaging/guides/webhook-request) and the status callback table of
    // "Track the message status of outbound messages" (docs/messaging/guides/
    // track-outbound-message-status); SIDs and numbers are the docs' placeholder shapes.

    const INBOUND_SMS: &str = "ToCountry=US&ToState=CA&SmsMessageSid=SM1b2c3d4e5f60718293a4b5c6d7e8f901\
        &NumMedia=0&ToCity=&FromZip=94105&SmsSid=SM1b2c3d4e5f60718293a4b5c6d7e8f901&FromState=CA\
        &SmsStatus=received&FromCity=SAN+FRANCISCO&Body=Hello+there%21+Where+is+my+order%3F\
        &FromCountry=US&To=%2B15557654321&MessagingServiceSid=MG0123456789abcdef0123456789abcdef\
        &ToZip=&NumSegments=1&MessageSid=SM1b2c3d4e5f60718293a4b5c6d7e8f901\
        &AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15551234567&ApiVersion=2010-04-01";

    fn one(form: &str) -> WebhookEvent {
        let (_, mut events) = parse(form.as_bytes()).expect("parses");
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn an_inbound_sms_becomes_a_message_from_the_phone_number() {
        let (params, events) = parse(INBOUND_SMS.as_bytes()).unwrap();
        assert_eq!(params.len(), 20, "every parameter, empty ones included");
        assert_eq!(params[0], ("ToCountry".into(), "US".into()));
        assert_eq!(params[4], ("ToCity".into(), String::new()));
        assert_eq!(
            events,
            [WebhookEvent::Message(PlatformMessage {
                external_sender_id: "+15551234567".into(),
                phone: Some("+15551234567".into()),
                external_message_id: "SM1b2c3d4e5f60718293a4b5c6d7e8f901".into(),
                text: Some("Hello there! Where is my order?".into()),
                ..Default::default()
            })]
        );
    }

    #[test]
    fn an_mms_with_two_media_has_two_attachments_in_order() {
        let form = "MessageSid=MM0123456789abcdef0123456789abcdef&AccountSid=AC0123456789abcdef0123456789abcdef\
            &From=%2B15551234567&To=%2B15557654321&Body=&NumMedia=2&SmsStatus=received\
            &MediaContentType0=image%2Fjpeg\
            &MediaUrl0=https%3A%2F%2Fapi.twilio.com%2F2010-04-01%2FAccounts%2FAC0123456789abcdef0123456789abcdef%2FMessages%2FMM0123456789abcdef0123456789abcdef%2FMedia%2FME11111111111111111111111111111111\
            &MediaContentType1=video%2Fmp4\
            &MediaUrl1=https%3A%2F%2Fapi.twilio.com%2F2010-04-01%2FAccounts%2FAC0123456789abcdef0123456789abcdef%2FMessages%2FMM0123456789abcdef0123456789abcdef%2FMedia%2FME22222222222222222222222222222222";
        let WebhookEvent::Message(m) = one(form) else {
            panic!("message")
        };
        assert_eq!(m.text, None, "an empty Body is no text");
        let got: Vec<(&str, &str)> = m
            .attachments
            .iter()
            .map(|a| (a.content_type.as_str(), a.url.as_deref().unwrap()))
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "image/jpeg");
        assert!(
            got[0]
                .1
                .ends_with("/Media/ME11111111111111111111111111111111")
        );
        assert_eq!(got[1].0, "video/mp4");
        assert!(
            got[1]
                .1
                .starts_with("https://api.twilio.com/2010-04-01/Accounts/")
        );
    }

    #[test]
    fn a_status_callback_becomes_a_status_not_a_message() {
        let delivered = "SmsSid=SM1b2c3d4e5f60718293a4b5c6d7e8f901&SmsStatus=delivered\
            &MessageStatus=delivered&To=%2B15551234567&MessageSid=SM1b2c3d4e5f60718293a4b5c6d7e8f901\
            &AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15557654321&ApiVersion=2010-04-01";
        assert_eq!(
            one(delivered),
            WebhookEvent::Status {
                external_message_id: "SM1b2c3d4e5f60718293a4b5c6d7e8f901".into(),
                status: PlatformStatus::Delivered,
                error: None,
            }
        );
        let undelivered = "MessageSid=SM1&MessageStatus=undelivered&ErrorCode=30003\
            &AccountSid=AC1&From=%2B15557654321&To=%2B15551234567";
        assert_eq!(
            one(undelivered),
            WebhookEvent::Status {
                external_message_id: "SM1".into(),
                status: PlatformStatus::Failed,
                error: Some("Twilio error 30003".into()),
            }
        );
        for (status, want) in [
            ("queued", PlatformStatus::Sent),
            ("sent", PlatformStatus::Sent),
            ("read", PlatformStatus::Read),
            ("failed", PlatformStatus::Failed),
        ] {
            let WebhookEvent::Status { status: got, .. } =
                one(&format!("MessageSid=SM2&MessageStatus={status}"))
            else {
                panic!("{status} is a status");
            };
            assert_eq!(got, want, "{status}");
        }
        assert_eq!(
            one("MessageSid=SM2&MessageStatus=teleported"),
            WebhookEvent::Ignored {
                kind: "status:teleported".into()
            }
        );
    }

    #[test]
    fn plus_is_a_space_and_percent_2b_is_a_plus() {
        let (params, events) =
            parse(b"MessageSid=SM3&From=%2B15551234567&Body=1+%2B+1+%3D+2%21+caf%C3%A9").unwrap();
        assert_eq!(params[2], ("Body".into(), "1 + 1 = 2! café".into()));
        let WebhookEvent::Message(m) = &events[0] else {
            panic!("message")
        };
        assert_eq!(m.text.as_deref(), Some("1 + 1 = 2! café"));
        assert_eq!(m.external_sender_id, "+15551234567");
    }

    #[test]
    fn a_whatsapp_sender_keeps_its_address_and_gives_its_number() {
        let WebhookEvent::Message(m) = one(
            "MessageSid=SM4&From=whatsapp%3A%2B15551234567&ProfileName=Ann+Lee&Body=Hi&NumMedia=0",
        ) else {
            panic!("message")
        };
        assert_eq!(m.external_sender_id, "whatsapp:+15551234567");
        assert_eq!(m.phone.as_deref(), Some("+15551234567"));
        assert_eq!(m.sender_name.as_deref(), Some("Ann Lee"));
    }

    #[test]
    fn a_form_that_is_neither_message_nor_status_is_ignored() {
        assert_eq!(
            one("AccountSid=AC1&ApiVersion=2010-04-01"),
            WebhookEvent::Ignored {
                kind: "unknown:form".into()
            }
        );
        assert_eq!(
            one(""),
            WebhookEvent::Ignored {
                kind: "unknown:form".into()
            }
        );
    }

    #[test]
    fn malformed_forms_are_errors() {
        for bad in [
            &b"Body=50%"[..],
            b"Body=%zz",
            b"Body=%4",
            b"Body=%FF%FE",
            b"Body=\xff",
            b"%=1",
        ] {
            assert!(
                matches!(parse(bad), Err(WebhookError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Well-formed but not Twilio's shape.
        assert!(matches!(
            parse(b"Body=hi&From=%2B1"),
            Err(WebhookError::Unexpected(_))
        ));
        assert!(matches!(
            parse(b"MessageSid=SM1&From=%2B1&Body=x&NumMedia=lots"),
            Err(WebhookError::Unexpected(_))
        ));
        assert!(matches!(
            parse(b"MessageStatus=sent"),
            Err(WebhookError::Unexpected(_))
        ));
    }

    #[test]
    fn the_empty_twiml_is_an_empty_response() {
        assert!(EMPTY_TWIML.ends_with("<Response></Response>"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Deterministic xorshift: no new crate, and a failure reproduces.
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Bytes biased towards the form's own syntax so decoding paths are exercised.
        const ALPHABET: &[u8] = b"=&%+2BFfaz09 \xc3\xa9\xff";
        const KEYS: &[&str] = &[
            "MessageSid=SM1&",
            "From=%2B1&",
            "Body=",
            "NumMedia=",
            "MediaUrl0=",
            "MediaContentType0=",
            "MessageStatus=",
            "SmsStatus=received&",
            "ErrorCode=1&",
        ];
        for round in 0..20_000 {
            let len = (next() % 48) as usize;
            let mut bytes: Vec<u8> = Vec::with_capacity(len);
            for _ in 0..len {
                let r = next();
                if round % 2 == 0 {
                    bytes.push(r as u8);
                } else if r % 4 == 0 {
                    bytes.extend_from_slice(KEYS[(r >> 8) as usize % KEYS.len()].as_bytes());
                } else {
                    bytes.push(ALPHABET[(r >> 8) as usize % ALPHABET.len()]);
                }
            }
            let _ = parse(&bytes);
        }
        for end in 0..INBOUND_SMS.len() {
            let _ = parse(&INBOUND_SMS.as_bytes()[..end]);
        }
    }
}

#[cfg(test)]
mod connector_tests {
    use secrecy::SecretString;

    use super::*;
    use crate::channels::platform::stand_in::{start, store_with_delivery};
    use crate::channels::{Connector, SendError};
    use crate::model::{AuthorKind, ChannelKind};

    fn connector(store: crate::store::SharedStore, url: &str) -> TwilioConnector {
        TwilioConnector::new(
            store,
            reqwest::Client::new(),
            url.to_owned(),
            "AC123".into(),
            SecretString::from("tw-secret"),
            "+15550001111".into(),
        )
    }

    #[tokio::test]
    async fn a_text_reply_is_posted_as_a_form_with_basic_auth() {
        let server = start(201, r#"{"sid":"SM0123","status":"queued"}"#).await;
        let (_dir, store, delivery) = store_with_delivery(
            ChannelKind::Sms,
            "+15557654321",
            AuthorKind::Agent,
            "Hi & bye",
        )
        .await;
        let id = connector(store, &server.url).send(&delivery).await.unwrap();
        assert_eq!(id.as_deref(), Some("SM0123"));
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/2010-04-01/Accounts/AC123/Messages.json");
        // base64("AC123:tw-secret")
        assert_eq!(
            r.header("authorization"),
            Some("Basic QUMxMjM6dHctc2VjcmV0")
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            r.body,
            "To=%2B15557654321&From=%2B15550001111&Body=Hi+%26+bye"
        );
    }

    #[tokio::test]
    async fn a_file_goes_as_mms_media_by_url() {
        let server = start(201, r#"{"sid":"MM1","status":"queued"}"#).await;
        let (_dir, store, mut delivery) =
            store_with_delivery(ChannelKind::Sms, "+15557654321", AuthorKind::Agent, "Photo").await;
        delivery.message.attachments =
            vec![crate::channels::platform::test_file("image/png", "a b.png")];
        connector(store, &server.url).send(&delivery).await.unwrap();
        assert_eq!(
            server.requests()[0].body,
            "To=%2B15557654321&From=%2B15550001111&Body=Photo\
             &MediaUrl=https%3A%2F%2Ffiles.example.com%2Fa+b.png"
        );
    }

    #[tokio::test]
    async fn a_server_error_is_retryable() {
        let server = start(500, r#"{"code":20500,"message":"Internal Server Error"}"#).await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Sms, "+15557654321", AuthorKind::Bot, "Hi").await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Retryable(m) if m.contains("500")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn too_many_requests_waits_as_long_as_the_retry_after_header_says() {
        let server = crate::channels::platform::stand_in::start_with_headers(
            429,
            &[("Retry-After", "17")],
            r#"{"code":20429,"message":"Too Many Requests"}"#,
        )
        .await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Sms, "+15557654321", AuthorKind::Bot, "Hi").await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SendError::Throttled { retry_after, .. } if retry_after.as_secs() == 17),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_bad_request_is_permanent_with_twilios_message() {
        let server = start(
            400,
            r#"{"code":21211,"message":"The 'To' number +15557654321 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
        )
        .await;
        let (_dir, store, delivery) =
            store_with_delivery(ChannelKind::Sms, "+15557654321", AuthorKind::Bot, "Hi").await;
        let err = connector(store, &server.url)
            .send(&delivery)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Permanent(m) if m.contains("not a valid phone number")),
            "{err}"
        );
        assert!(!err.to_string().contains("tw-secret"));
    }
}

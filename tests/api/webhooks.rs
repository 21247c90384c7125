//! Platform webhooks through the real gateway: signatures checked before anything is parsed,
//! every customer message of a delivery stored in order, replays stored once, everything else
//! acknowledged without storing.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, spawn_app_with};

const META_SECRET: &str = "test-meta-app-secret";
const VERIFY: &str = "test-verify-token";
const TG_SECRET: &str = "test-telegram-secret";
const TWILIO_TOKEN: &str = "test-twilio-auth-token";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn meta_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(META_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn spawn() -> TestApp {
    spawn_app_with(|s| {
        s.meta_app_secret = Some(META_SECRET.to_owned().into());
        s.meta_verify_token = Some(VERIFY.to_owned().into());
        s.telegram_secret_token = Some(TG_SECRET.to_owned().into());
        s.twilio_auth_token = Some(TWILIO_TOKEN.to_owned().into());
        s.public_url = Some("https://support.example.com".into());
    })
    .await
}

impl TestApp {
    async fn post_signed(
        &self,
        path: &str,
        body: &[u8],
        header: Option<(&str, String)>,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some((name, value)) = header {
            r = r.header(name, value);
        }
        r.send().await.unwrap()
    }

    async fn conversations_on(&self, channel: &str) -> Vec<Value> {
        let (_, list) = self
            .get_json(
                &format!("/api/v1/conversations?channel={channel}"),
                ADMIN_TOKEN,
            )
            .await;
        list["conversations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn inbound_texts(&self, channel: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for c in self.conversations_on(channel).await {
            let full = self.conversation(c["id"].as_str().unwrap()).await;
            for m in full["messages"].as_array().unwrap() {
                if m["direction"] == "in" {
                    texts.push(m["text"].as_str().unwrap().to_owned());
                }
            }
        }
        texts
    }
}

#[tokio::test]
async fn the_meta_handshake_echoes_the_challenge_only_for_the_right_token() {
    let app = spawn().await;
    let ok = app
        .client
        .get(app.url(&format!(
            "/webhooks/meta?hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=1158201444"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let bad = app
        .client
        .get(app.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
}

#[tokio::test]
async fn a_signed_messenger_message_is_stored_once_however_often_it_is_delivered() {
    let app = spawn().await;
    let body = fixture("messenger/m4j_quick_reply.json");
    for _ in 0..3 {
        let r = app
            .post_signed(
                "/webhooks/meta",
                &body,
                Some(("x-hub-signature-256", meta_signature(&body))),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    app.pipeline_idle().await;
    assert_eq!(app.inbound_texts("messenger").await, ["hello, world!"]);
    let c = app.conversations_on("messenger").await;
    let full = app.conversation(c[0]["id"].as_str().unwrap()).await;
    let ids: Vec<&Value> = full["customer"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert!(ids.iter().any(|i| i["value"] == "USER_ID"), "{ids:?}");
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_refused_and_stores_nothing() {
    let app = spawn().await;
    let body = fixture("messenger/m4j_quick_reply.json");
    let missing = app.post_signed("/webhooks/meta", &body, None).await;
    assert_eq!(missing.status(), 401);
    let wrong = app
        .post_signed(
            "/webhooks/meta",
            &body,
            Some(("x-hub-signature-256", meta_signature(b"other body"))),
        )
        .await;
    assert_eq!(wrong.status(), 403);
    let garbage = app
        .post_signed(
            "/webhooks/whatsapp",
            &body,
            Some(("x-hub-signature-256", "sha256=zz".into())),
        )
        .await;
    assert_eq!(garbage.status(), 403);
    let tg = app
        .post_signed(
            "/webhooks/telegram",
            &fixture("telegram/doc_message_text.json"),
            Some(("x-telegram-bot-api-secret-token", "wrong".into())),
        )
        .await;
    assert_eq!(tg.status(), 403);
    let body: Value = tg.json().await.unwrap();
    assert!(body["error"]["message"].is_string());
    assert!(app.conversations_on("messenger").await.is_empty());
    assert!(app.conversations_on("telegram").await.is_empty());
}

#[tokio::test]
async fn reads_echoes_and_unknown_events_are_acknowledged_without_storing() {
    let app = spawn().await;
    for f in [
        "messenger/m4j_read.json",
        "messenger/m4j_echo_text.json",
        "messenger/m4j_delivered_with_mids.json",
    ] {
        let body = fixture(f);
        let r = app
            .post_signed(
                "/webhooks/meta",
                &body,
                Some(("x-hub-signature-256", meta_signature(&body))),
            )
            .await;
        assert_eq!(r.status(), 200, "{f}");
    }
    let unknown = br#"{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"9"},"recipient":{"id":"1"},"timestamp":1,"brand_new_event":{"x":1}}]}]}"#;
    let r = app
        .post_signed(
            "/webhooks/meta",
            unknown,
            Some(("x-hub-signature-256", meta_signature(unknown))),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(app.conversations_on("messenger").await.is_empty());
}

#[tokio::test]
async fn malformed_bodies_with_valid_signatures_get_400_and_store_nothing() {
    let app = spawn().await;
    for body in [&b"{not json"[..], b"[]", b"\"a string\""] {
        let r = app
            .post_signed(
                "/webhooks/whatsapp",
                body,
                Some(("x-hub-signature-256", meta_signature(body))),
            )
            .await;
        assert_eq!(r.status(), 400, "{}", String::from_utf8_lossy(body));
    }
    let r = app
        .post_signed(
            "/webhooks/telegram",
            b"{oops",
            Some(("x-telegram-bot-api-secret-token", TG_SECRET.into())),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(app.conversations_on("whats_app").await.is_empty());
}

#[tokio::test]
async fn every_message_of_a_whatsapp_delivery_is_stored_in_order_and_statuses_store_nothing() {
    let app = spawn().await;
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "123"},
            "contacts": [{"profile": {"name": "Wanda"}, "wa_id": "4915112345678"}],
            "messages": [
                {"from": "4915112345678", "id": "wamid.A", "timestamp": "1732440000", "type": "text", "text": {"body": "first"}},
                {"from": "4915112345678", "id": "wamid.B", "timestamp": "1732440001", "type": "text", "text": {"body": "second"}},
                {"from": "4915112345678", "id": "wamid.C", "timestamp": "1732440002", "type": "text", "text": {"body": "third"}}
            ],
            "statuses": [{"id": "wamid.OURS", "status": "delivered", "timestamp": "1732440003", "recipient_id": "4915112345678"}]
        }}]}]
    }))
    .unwrap();
    let r = app
        .post_signed(
            "/webhooks/whatsapp",
            &body,
            Some(("x-hub-signature-256", meta_signature(&body))),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.inbound_texts("whats_app").await,
        ["first", "second", "third"]
    );
    let c = app.conversations_on("whats_app").await;
    let full = app.conversation(c[0]["id"].as_str().unwrap()).await;
    assert_eq!(full["customer"]["display_name"], "Wanda");
    let identities = full["customer"]["identities"].to_string();
    assert!(
        identities.contains("+4915112345678"),
        "the phone links channels: {identities}"
    );
}

#[tokio::test]
async fn telegram_updates_need_the_secret_token_and_edits_store_no_new_message() {
    let app = spawn().await;
    let body = fixture("telegram/doc_message_text.json");
    let r = app
        .post_signed(
            "/webhooks/telegram",
            &body,
            Some(("x-telegram-bot-api-secret-token", TG_SECRET.into())),
        )
        .await;
    assert_eq!(r.status(), 200);
    let missing = app.post_signed("/webhooks/telegram", &body, None).await;
    assert_eq!(missing.status(), 401);
    let edit = fixture("telegram/doc_edited_message.json");
    let r = app
        .post_signed(
            "/webhooks/telegram",
            &edit,
            Some(("x-telegram-bot-api-secret-token", TG_SECRET.into())),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.inbound_texts("telegram").await.len(), 1);
}

#[tokio::test]
async fn a_twilio_sms_is_verified_against_the_public_url_and_answered_with_empty_twiml() {
    let app = spawn().await;
    let params = [
        ("AccountSid", "AC123"),
        ("Body", "Hello + goodbye"),
        ("From", "+14155550100"),
        ("MessageSid", "SM0001"),
        ("NumMedia", "0"),
        ("To", "+14155550199"),
    ];
    let form: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B").replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&");
    let mut signed = "https://support.example.com/webhooks/twilio/sms".to_owned();
    let mut sorted = params.to_vec();
    sorted.sort();
    for (k, v) in sorted {
        signed.push_str(k);
        signed.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TWILIO_TOKEN.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let post = |sig: String| {
        app.client
            .post(app.url("/webhooks/twilio/sms"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", sig)
            .body(form.clone())
            .send()
    };
    let bad = post("AAAA".into()).await.unwrap();
    assert_eq!(bad.status(), 403);
    let ok = post(sig).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("<Response></Response>"));
    assert_eq!(app.inbound_texts("sms").await, ["Hello + goodbye"]);
}

#[tokio::test]
async fn an_edited_telegram_message_updates_the_stored_text() {
    let app = spawn().await;
    let from = json!({"id": 4242, "is_bot": false, "first_name": "Tess"});
    let chat = json!({"id": 4242, "type": "private", "first_name": "Tess"});
    let message = json!({"update_id": 1, "message": {"message_id": 7, "from": from, "chat": chat, "date": 1732440000, "text": "my oder is late"}});
    let edit = json!({"update_id": 2, "edited_message": {"message_id": 7, "from": from, "chat": chat, "date": 1732440000, "edit_date": 1732440060, "text": "my order is late"}});
    for update in [&message, &edit, &edit] {
        let r = app
            .post_signed(
                "/webhooks/telegram",
                &serde_json::to_vec(update).unwrap(),
                Some(("x-telegram-bot-api-secret-token", TG_SECRET.into())),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(app.inbound_texts("telegram").await, ["my order is late"]);
}

/// A stand-in for a platform's API: records every request and answers with `reply`.
struct StandIn {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>,
}

async fn stand_in(reply: Value) -> StandIn {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>> = Default::default();
    let recorded = seen.clone();
    let server = HttpServer::new(move || {
        let (recorded, reply) = (recorded.clone(), reply.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (recorded, reply) = (recorded.clone(), reply.clone());
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                recorded
                    .lock()
                    .unwrap()
                    .push((req.path().to_owned(), auth, json));
                HttpResponse::Ok().json(reply)
            }
        }))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://127.0.0.1:{}", server.addrs()[0].port());
    tokio::spawn(server.run());
    StandIn { url, seen }
}

#[tokio::test]
async fn the_bots_answer_to_a_telegram_customer_leaves_through_telegrams_api() {
    let api =
        stand_in(json!({"ok": true, "result": {"message_id": 99, "chat": {"id": 5151}}})).await;
    let base = api.url.clone();
    let app = spawn_app_with(|s| {
        s.telegram_secret_token = Some(TG_SECRET.to_owned().into());
        s.telegram_bot_token = Some("123456:SECRET-BOT-TOKEN".to_owned().into());
        s.telegram_api_url = base;
    })
    .await;
    let update = json!({"update_id": 1, "message": {"message_id": 3, "date": 1732440000,
        "from": {"id": 5151, "is_bot": false, "first_name": "Una"},
        "chat": {"id": 5151, "type": "private"}, "text": "What are your opening hours?"}});
    let r = app
        .post_signed(
            "/webhooks/telegram",
            &serde_json::to_vec(&update).unwrap(),
            Some(("x-telegram-bot-api-secret-token", TG_SECRET.into())),
        )
        .await;
    assert_eq!(r.status(), 200);
    let c = app.conversations_on("telegram").await;
    let conversation = c[0]["id"].as_str().unwrap().to_owned();
    crate::helpers::eventually("the reply is sent", || async {
        let m = app
            .message_where(&conversation, |m| m["author_kind"] == "bot")
            .await;
        (m["delivery_status"] == "sent").then_some(())
    })
    .await;
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (path, _, body) = &seen[0];
    assert_eq!(path, "/bot123456:SECRET-BOT-TOKEN/sendMessage");
    assert_eq!(body["chat_id"], json!(5151));
    assert!(
        body["text"].as_str().unwrap().contains("9:00 to 18:00"),
        "{body}"
    );
}

#[tokio::test]
async fn a_named_telegram_bot_has_its_own_secret_its_own_chats_and_answers_with_its_own_token() {
    let api =
        stand_in(json!({"ok": true, "result": {"message_id": 7, "chat": {"id": 5151}}})).await;
    let base = api.url.clone();
    let app = spawn_app_with(|s| {
        s.telegram_secret_token = Some(TG_SECRET.to_owned().into());
        s.telegram_bot_token = Some("111:DEFAULT-TOKEN".to_owned().into());
        s.telegram_bots.insert(
            "sales".into(),
            baton::config::TelegramBot {
                token: "222:SALES-TOKEN".to_owned().into(),
                secret_token: "sales-secret".to_owned().into(),
            },
        );
        s.telegram_api_url = base;
    })
    .await;
    // The same person, the same message id, through both bots: two messages, not a replay.
    let update = json!({"update_id": 1, "message": {"message_id": 3, "date": 1732440000,
        "from": {"id": 5151, "is_bot": false, "first_name": "Una"},
        "chat": {"id": 5151, "type": "private"}, "text": "What are your opening hours?"}});
    let body = serde_json::to_vec(&update).unwrap();
    let tg = "x-telegram-bot-api-secret-token";
    let default = app
        .post_signed("/webhooks/telegram", &body, Some((tg, TG_SECRET.into())))
        .await;
    assert_eq!(default.status(), 200);
    // Each bot checks its own secret: the default bot's is wrong here.
    let wrong = app
        .post_signed(
            "/webhooks/telegram/sales",
            &body,
            Some((tg, TG_SECRET.into())),
        )
        .await;
    assert_eq!(wrong.status(), 403);
    let unknown = app
        .post_signed(
            "/webhooks/telegram/nope",
            &body,
            Some((tg, "sales-secret".into())),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    for _ in 0..2 {
        let sales = app
            .post_signed(
                "/webhooks/telegram/sales",
                &body,
                Some((tg, "sales-secret".into())),
            )
            .await;
        assert_eq!(sales.status(), 200);
    }
    let conversations = app.conversations_on("telegram").await;
    assert_eq!(
        conversations.len(),
        2,
        "one chat per bot: {conversations:?}"
    );
    assert_eq!(
        app.inbound_texts("telegram").await.len(),
        2,
        "the replay stored once"
    );
    crate::helpers::eventually("both bots answered", || async {
        (api.seen.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let mut paths: Vec<String> = api
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/bot111:DEFAULT-TOKEN/sendMessage",
            "/bot222:SALES-TOKEN/sendMessage"
        ]
    );
    assert!(
        api.seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.2["chat_id"] == json!(5151))
    );
}

#[tokio::test]
async fn an_agent_reply_outside_whatsapps_window_is_refused_at_once_with_the_reason() {
    let app = spawn_app_with(|s| {
        s.meta_app_secret = Some(META_SECRET.to_owned().into());
    })
    .await;
    let (agent, token) = app.create_agent("Vic", true).await;
    let body = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "123"},
            "contacts": [{"profile": {"name": "Wes"}, "wa_id": "4915100000001"}],
            "messages": [{"from": "4915100000001", "id": "wamid.H", "timestamp": "1732440000", "type": "text", "text": {"body": "I want to talk to a human"}}]
        }}]}]
    }))
    .unwrap();
    let r = app
        .post_signed(
            "/webhooks/whatsapp",
            &body,
            Some(("x-hub-signature-256", meta_signature(&body))),
        )
        .await;
    assert_eq!(r.status(), 200);
    let conversation = app.conversations_on("whats_app").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h = app.handoff_with_status(&conversation, "assigned").await;
    assert_eq!(h["assigned_agent_id"].as_str().unwrap(), agent);
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{}/accept", h["id"].as_str().unwrap()),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let ok = app
        .post_json(&path, &token, json!({"text": "Within the window"}))
        .await;
    assert_eq!(ok.status(), 201);

    // The customer's message is now two days old.
    let db = crate::helpers::StoreDb::of(&app.settings).await;
    db.execute("UPDATE messages SET created_at = created_at - 172800000 WHERE direction = 'in'")
        .await;
    let refused = app
        .post_json(&path, &token, json!({"text": "Too late"}))
        .await;
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("24-hour window"),
        "{body}"
    );

    // What WhatsApp does take outside the window: an approved template.
    let template = app
        .post_json(
            &path,
            &token,
            json!({"template": {"name": "order_update", "language": "en_US", "parameters": ["#123"]}}),
        )
        .await;
    assert_eq!(template.status(), 201);
    let stored: Value = template.json().await.unwrap();
    assert_eq!(
        stored["text"],
        "[WhatsApp template order_update (en_US)]\n{{1}} = #123"
    );

    for (bad, why) in [
        (
            json!({"text": "two", "attachments": [
                {"url": "https://f.example/a.png", "content_type": "image/png"},
                {"url": "https://f.example/b.png", "content_type": "image/png"}]}),
            "one file per reply",
        ),
        (
            json!({"text": "x", "attachments": [{"url": "file:///etc/passwd", "content_type": "image/png"}]}),
            "http(s) URL",
        ),
        (
            json!({"text": "x", "attachments": [{"url": "https://f.example/a", "content_type": "not a type"}]}),
            "MIME type",
        ),
        (
            json!({"template": {"name": "Bad Name", "language": "en"}}),
            "template.name",
        ),
        (json!({}), "text"),
    ] {
        let r = app.post_json(&path, &token, bad.clone()).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{bad}: {body}"
        );
    }
}

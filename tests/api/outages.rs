//! Outbound outages under load: a platform API answering 503 and 429, and an SMTP relay that
//! is not there, while customers keep writing. Ingest keeps acknowledging, every reply waits
//! as pending (visible through the API), and once the far side recovers every reply goes out
//! exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, eventually_within, free_port, spawn_app_with};
use crate::mail_servers::start_smtp_on;

const TG_SECRET: &str = "outage-telegram-secret";
const RECOVERY: Duration = Duration::from_secs(120);

/// A stand-in for Telegram's Bot API that refuses every call while `down` is set (503 and 429
/// with `retry_after` in turn, as Telegram does under load) and records what it accepted.
struct FlakyTelegram {
    url: String,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    accepted: Arc<std::sync::Mutex<Vec<Value>>>,
}

async fn flaky_telegram() -> FlakyTelegram {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let down = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(AtomicUsize::new(0));
    let accepted: Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let (d, r, a) = (down.clone(), refused.clone(), accepted.clone());
    let server = HttpServer::new(move || {
        let (d, r, a) = (d.clone(), r.clone(), a.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (d, r, a) = (d.clone(), r.clone(), a.clone());
            async move {
                assert!(req.path().ends_with("/sendMessage"), "{}", req.path());
                if d.load(Ordering::SeqCst) {
                    return if r.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                        HttpResponse::ServiceUnavailable().body("upstream overloaded")
                    } else {
                        HttpResponse::TooManyRequests().json(json!({"ok": false,
                            "error_code": 429, "description": "Too Many Requests: retry after 1",
                            "parameters": {"retry_after": 1}}))
                    };
                }
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let chat = body["chat_id"].clone();
                a.lock().unwrap().push(body);
                HttpResponse::Ok().json(json!({"ok": true,
                    "result": {"message_id": 1, "chat": {"id": chat}}}))
            }
        }))
    })
    .workers(2)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://127.0.0.1:{}", server.addrs()[0].port());
    tokio::spawn(server.run());
    FlakyTelegram {
        url,
        down,
        refused,
        accepted,
    }
}

/// Every bot message of the conversations on `channel`: (conversation id, message).
async fn bot_replies(app: &TestApp, channel: &str) -> Vec<(String, Value)> {
    let (_, list) = app
        .get_json(
            &format!("/api/v1/conversations?channel={channel}&limit=200"),
            ADMIN_TOKEN,
        )
        .await;
    let mut replies = Vec::new();
    for c in list["conversations"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let conversation = app.conversation(id).await;
        for m in conversation["messages"].as_array().unwrap() {
            if m["author_kind"] == "bot" {
                replies.push((id.to_owned(), m.clone()));
            }
        }
    }
    replies
}

fn statuses(replies: &[(String, Value)]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (_, m) in replies {
        *counts
            .entry(m["delivery_status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn replies_a_platform_refuses_under_load_stay_pending_and_all_go_out_once_it_recovers() {
    let api = flaky_telegram().await;
    let base = api.url.clone();
    let app = spawn_app_with(|s| {
        s.telegram_secret_token = Some(TG_SECRET.to_owned().into());
        s.telegram_bot_token = Some("4242:OUTAGE-BOT-TOKEN".to_owned().into());
        s.telegram_api_url = base;
        s.webhook_requests_per_minute = u32::MAX;
    })
    .await;

    // 30 customers write 5 messages each, 10 updates in flight at a time, while every call to
    // the platform fails.
    const CHATS: i64 = 30;
    const EACH: i64 = 5;
    let app = Arc::new(app);
    let mut posts = Vec::new();
    for worker in 0..10 {
        let app = app.clone();
        posts.push(tokio::spawn(async move {
            let mut n = worker;
            while n < CHATS * EACH {
                let chat = 7000 + n % CHATS;
                let update = json!({"update_id": 100 + n, "message": {"message_id": 10 + n,
                    "date": 1732440000, "from": {"id": chat, "is_bot": false, "first_name": "Load"},
                    "chat": {"id": chat, "type": "private"},
                    "text": format!("What are your opening hours? ({n})")}});
                let r = app
                    .client
                    .post(app.url("/webhooks/telegram"))
                    .header("x-telegram-bot-api-secret-token", TG_SECRET)
                    .json(&update)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "ingest must keep acknowledging");
                n += 10;
            }
        }));
    }
    for p in posts {
        p.await.unwrap();
    }
    app.pipeline_idle().await;

    // Every message got its bot answer, and every answer waits as pending with the reason the
    // last attempt failed: none was lost, none marked failed, none claimed sent.
    let during = eventually_within("every reply was tried at least once", RECOVERY, || async {
        let replies = bot_replies(&app, "telegram").await;
        (replies.len() == (CHATS * EACH) as usize
            && replies.iter().all(|(_, m)| m["delivery_error"].is_string()))
        .then_some(replies)
    })
    .await;
    assert_eq!(
        statuses(&during),
        [("pending".to_owned(), (CHATS * EACH) as usize)].into(),
        "while the platform is down"
    );
    assert!(api.refused.load(Ordering::SeqCst) >= (CHATS * EACH) as usize);
    assert!(api.accepted.lock().unwrap().is_empty());

    // The platform recovers: every reply goes out, each exactly once.
    api.down.store(false, Ordering::SeqCst);
    let after = eventually_within("every reply was delivered", RECOVERY, || async {
        let replies = bot_replies(&app, "telegram").await;
        replies
            .iter()
            .all(|(_, m)| m["delivery_status"] == "sent")
            .then_some(replies)
    })
    .await;
    assert_eq!(after.len(), (CHATS * EACH) as usize);
    let accepted = api.accepted.lock().unwrap().clone();
    assert_eq!(
        accepted.len(),
        (CHATS * EACH) as usize,
        "no reply sent twice"
    );
    for chat in 7000..7000 + CHATS {
        assert_eq!(
            accepted
                .iter()
                .filter(|b| b["chat_id"] == json!(chat))
                .count(),
            EACH as usize,
            "chat {chat} gets one answer per message"
        );
    }
}

#[tokio::test]
async fn mail_replies_wait_while_the_smtp_relay_is_down_and_each_goes_out_once_it_is_back() {
    // The relay's port is chosen now, and nothing listens there until later.
    let port = free_port();
    let app = spawn_app_with(|s| {
        s.support_address = Some("support@example.com".into());
        s.smtp_url = Some(format!("smtp://127.0.0.1:{port}").into());
    })
    .await;
    const MAILS: usize = 40;
    let app = Arc::new(app);
    let mut posts = Vec::new();
    for worker in 0..8 {
        let app = app.clone();
        posts.push(tokio::spawn(async move {
            let mut n = worker;
            while n < MAILS {
                let raw = format!(
                    "From: Customer {n} <load{n}@customer.example>\r\nTo: support@example.com\r\n\
                     Subject: Opening hours {n}\r\nMessage-ID: <outage-{n}@customer.example>\r\n\
                     Date: Tue, 24 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
                     Content-Type: text/plain; charset=utf-8\r\n\r\nWhat are your opening hours?\r\n"
                );
                let r = app
                    .client
                    .post(app.url("/ingest/email"))
                    .bearer_auth(ADMIN_TOKEN)
                    .header("content-type", "message/rfc822")
                    .body(raw)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "ingest must keep acknowledging");
                n += 8;
            }
        }));
    }
    for p in posts {
        p.await.unwrap();
    }
    app.pipeline_idle().await;
    let during = eventually_within("every reply was tried at least once", RECOVERY, || async {
        let replies = bot_replies(&app, "email").await;
        (replies.len() == MAILS && replies.iter().all(|(_, m)| m["delivery_error"].is_string()))
            .then_some(replies)
    })
    .await;
    assert_eq!(
        statuses(&during),
        [("pending".to_owned(), MAILS)].into(),
        "while the relay is down"
    );

    // The relay comes up on the configured port: every reply is delivered, once.
    let smtp = start_smtp_on(port, 0);
    let sent = smtp.wait_for(MAILS, RECOVERY).await;
    eventually_within("every reply is marked sent", RECOVERY, || async {
        let replies = bot_replies(&app, "email").await;
        replies
            .iter()
            .all(|(_, m)| m["delivery_status"] == "sent")
            .then_some(())
    })
    .await;
    let mut threads: Vec<String> = smtp
        .messages()
        .iter()
        .map(|raw| {
            let mail = baton::channels::email::parse::parse(raw).unwrap();
            mail.in_reply_to.join(" ")
        })
        .collect();
    assert_eq!(sent.len(), MAILS);
    threads.sort();
    threads.dedup();
    assert_eq!(
        threads.len(),
        MAILS,
        "one reply per customer mail, none twice"
    );
}

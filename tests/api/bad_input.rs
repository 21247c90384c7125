use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, spawn_app};

async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "errors are JSON, got {ct}"
    );
    let v: Value = r.json().await.unwrap();
    (
        status,
        v["error"]["code"].as_str().unwrap().to_owned(),
        v["error"]["message"].as_str().unwrap().to_owned(),
    )
}

async fn nothing_stored(app: &crate::helpers::TestApp) {
    let (_, list) = app.get_json("/api/v1/conversations", ADMIN_TOKEN).await;
    assert!(
        list["conversations"].as_array().unwrap().is_empty(),
        "no half-written conversation: {list}"
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_naming_the_problem() {
    let app = spawn_app().await;
    let r = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"sender\": {\"external_id\": \"x\"}, \"text\": ")
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(r).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    assert!(message.contains("invalid JSON"), "{message}");
    nothing_stored(&app).await;
}

#[tokio::test]
async fn a_missing_field_is_named_in_the_error() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/api/v1/messages",
            ADMIN_TOKEN,
            json!({"sender": {"external_id": "x"}}),
        )
        .await;
    let (status, _, message) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("missing field `text`"), "{message}");
    nothing_stored(&app).await;
}

#[tokio::test]
async fn invalid_values_are_rejected_before_anything_is_stored() {
    let app = spawn_app().await;
    for (body, needle) in [
        (
            json!({"sender": {"external_id": "x"}, "text": "   "}),
            "text",
        ),
        (
            json!({"sender": {"external_id": ""}, "text": "hi"}),
            "sender id",
        ),
        (
            json!({"sender": {"external_id": "x", "email": "not-an-address"}, "text": "hi"}),
            "email",
        ),
        (
            json!({"sender": {"external_id": "x", "phone": "12"}, "text": "hi"}),
            "phone",
        ),
        (
            json!({"sender": {"external_id": "x"}, "text": "hi", "timestamp": "yesterday"}),
            "timestamp",
        ),
        (
            json!({"sender": {"external_id": "x"}, "text": "hi\u{0}"}),
            "control",
        ),
        (
            json!({"sender": {"external_id": "x"}, "text": "hi", "surprise": 1}),
            "unknown field",
        ),
        (json!([1, 2, 3]), "invalid JSON"),
    ] {
        let r = app
            .post_json("/api/v1/messages", ADMIN_TOKEN, body.clone())
            .await;
        let (status, _, message) = error_of(r).await;
        assert_eq!(status, 400, "{body}");
        assert!(message.contains(needle), "{body}: {message}");
    }
    nothing_stored(&app).await;
}

#[tokio::test]
async fn an_oversized_body_is_a_413_and_nothing_is_stored() {
    let app = spawn_app().await;
    let huge = "x".repeat(300 * 1024);
    let r = app
        .post_json(
            "/api/v1/messages",
            ADMIN_TOKEN,
            json!({"sender": {"external_id": "x"}, "text": huge}),
        )
        .await;
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    nothing_stored(&app).await;
}

#[tokio::test]
async fn unknown_or_malformed_ids_are_404_and_400() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url(&format!("/api/v1/conversations/{}", uuid::Uuid::now_v7())))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 404);
    let r = app
        .client
        .get(app.url("/api/v1/conversations/not-a-uuid"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let (status, _, message) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("conversation id"), "{message}");
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{}/accept", uuid::Uuid::now_v7()),
            ADMIN_TOKEN,
            json!({"agent_id": uuid::Uuid::now_v7()}),
        )
        .await;
    assert_eq!(error_of(r).await.0, 404);
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{}/handoff", uuid::Uuid::now_v7()),
            ADMIN_TOKEN,
            json!({}),
        )
        .await;
    assert_eq!(error_of(r).await.0, 404);
    let r = app
        .client
        .post(app.url(&format!(
            "/widget/v1/conversations/{}/messages",
            uuid::Uuid::now_v7()
        )))
        .bearer_auth("whatever")
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await.0,
        401,
        "an unknown chat is indistinguishable from a wrong token"
    );
}

#[tokio::test]
async fn credentials_are_checked_on_every_api_route() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/api/v1/conversations"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let r = app
        .client
        .get(app.url("/api/v1/conversations"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 401);
    let (_, agent_token) = app.create_agent("Eve", false).await;
    for (method, path) in [
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/conversations"),
        ("POST", "/api/v1/agents"),
        ("GET", "/api/v1/agents"),
    ] {
        let r = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&agent_token)
            .json(&json!({"sender": {"external_id": "x"}, "text": "x", "name": "x", "email": "x@y.z"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(r).await.0, 403, "{method} {path} needs an admin");
    }
    nothing_stored(&app).await;
}

#[tokio::test]
async fn a_malformed_optional_body_is_rejected_not_ignored() {
    let app = spawn_app().await;
    let c = app.customer_says("fay", "hello").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .client
        .post(app.url(&format!("/api/v1/conversations/{c}/handoff")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"priority\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 400);
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{c}/handoff"),
            ADMIN_TOKEN,
            json!({"priority": "asap"}),
        )
        .await;
    let (status, _, message) = error_of(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("priority"));
    assert_eq!(
        app.conversation(&c).await["status"],
        "bot",
        "no handoff was started"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 404);
    let r = app
        .client
        .delete(app.url("/api/v1/messages"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = error_of(r).await.0;
    assert!(status == 404 || status == 405, "{status}");
}

#[tokio::test]
async fn an_illegal_transition_is_a_409() {
    let app = spawn_app().await;
    let (agent, token) = app.create_agent("Gus", true).await;
    let c = app.customer_says("gil", "agent").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h = app.handoff_with_status(&c, "assigned").await;
    let id = h["id"].as_str().unwrap();
    app.post_json(&format!("/api/v1/handoffs/{id}/resolve"), &token, json!({}))
        .await;
    for action in ["accept", "resolve", "release"] {
        let r = app
            .post_json(
                &format!("/api/v1/handoffs/{id}/{action}"),
                ADMIN_TOKEN,
                json!({"agent_id": agent}),
            )
            .await;
        let (status, code, _) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (409, "conflict"),
            "{action} on a resolved ticket"
        );
    }
}

#[tokio::test]
async fn deeply_nested_json_is_a_400_on_the_api_and_the_widget_never_a_crash() {
    let app = spawn_app().await;
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(nested.clone())
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    let deep_object = format!(
        r#"{{"sender": {{"external_id": "x"}}, "text": "hi", "timestamp": {}"x"{}}}"#,
        r#"{"a":"#.repeat(20_000),
        "}".repeat(20_000)
    );
    let r = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(deep_object)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let start: Value = app
        .client
        .post(app.url("/widget/v1/conversations"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url(&format!(
            "/widget/v1/conversations/{}/messages",
            start["conversation_id"].as_str().unwrap()
        )))
        .bearer_auth(start["token"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(nested)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Still serving.
    assert_eq!(
        app.get_json("/api/v1/conversations", ADMIN_TOKEN).await.0,
        200
    );
}

#[tokio::test]
async fn unicode_edge_cases_are_stored_exactly_as_written_and_nul_is_refused() {
    let app = spawn_app().await;
    // Right-to-left override, a zero-width joiner family, combining marks, a 4-byte CJK
    // character, flags and zalgo marks. (A lone surrogate in JSON is refused, below.)
    let text =
        "\u{202e}evil.exe\u{202c} 👨\u{200d}👩\u{200d}👧 e\u{301}\u{302} 𠜎 🇫🇷 Z\u{335}\u{321}";
    let c = app.customer_says("unicode", text).await;
    let stored = app
        .message_where(c["conversation_id"].as_str().unwrap(), |m| {
            m["direction"] == "in"
        })
        .await;
    assert_eq!(stored["text"], text);
    for bad in ["nul\u{0}inside", "\u{7}bell"] {
        let r = app
            .post_json(
                "/api/v1/messages",
                ADMIN_TOKEN,
                json!({"sender": {"external_id": "u2"}, "text": bad}),
            )
            .await;
        assert_eq!(r.status().as_u16(), 400, "{bad:?}");
    }
    let lone_surrogate = r#"{"sender": {"external_id": "u3"}, "text": "\ud800 alone"}"#;
    let r = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(lone_surrogate)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn a_compressed_body_that_inflates_past_the_limit_is_a_413_not_a_memory_spike() {
    use std::io::Write;
    let app = spawn_app().await;
    // 256 MB of spaces inside a JSON string: about 250 KB gzipped. The limit must apply to what
    // the body inflates to, while inflating, or the gateway would hold all of it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(br#"{"sender": {"external_id": "bomb"}, "text": ""#)
        .unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&chunk).unwrap();
    }
    gz.write_all(br#""}"#).unwrap();
    let body = gz.finish().unwrap();
    assert!(body.len() < 1 << 20, "the bomb is small on the wire");
    let r = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    nothing_stored(&app).await;
}

#[tokio::test]
async fn the_same_ids_on_different_channels_are_different_people_and_messages() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.telegram_secret_token = Some("collide-secret".to_owned().into());
    })
    .await;
    // User 5151 with message id "3" on the API channel and on Telegram: two customers, two
    // conversations, two stored messages; neither is a duplicate of the other.
    let r = app
        .post_json(
            "/api/v1/messages",
            ADMIN_TOKEN,
            json!({"sender": {"external_id": "5151", "name": "Api Una"}, "external_id": "3",
                   "text": "hello from the API"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let api: Value = r.json().await.unwrap();
    assert_eq!(api["duplicate"], json!(false));
    let update = json!({"update_id": 1, "message": {"message_id": 3, "date": 1732440000,
        "from": {"id": 5151, "is_bot": false, "first_name": "Telegram Una"},
        "chat": {"id": 5151, "type": "private"}, "text": "hello from Telegram"}});
    let r = app
        .client
        .post(app.url("/webhooks/telegram"))
        .header("x-telegram-bot-api-secret-token", "collide-secret")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, list) = app.get_json("/api/v1/conversations", ADMIN_TOKEN).await;
    let conversations = list["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 2, "{list}");
    let customers: std::collections::BTreeSet<&str> = conversations
        .iter()
        .map(|c| c["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        customers.len(),
        2,
        "one person per channel identity: {list}"
    );
    let mut texts = Vec::new();
    for c in conversations {
        let conversation = app.conversation(c["id"].as_str().unwrap()).await;
        texts.extend(
            conversation["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["direction"] == "in")
                .map(|m| m["text"].as_str().unwrap().to_owned()),
        );
    }
    texts.sort();
    assert_eq!(texts, ["hello from Telegram", "hello from the API"]);
}

#[tokio::test]
async fn markup_in_every_text_field_is_shown_as_text_on_every_page() {
    let app = spawn_app().await;
    const XSS: &str = r#"<script>alert(1)</script><img src=x onerror=alert(2)>"#;
    // A customer name, message text and handoff reason (the customer asks for a person in
    // words carrying markup), an agent's name and reply, and an email subject and sender name.
    let r = app
        .post_json(
            "/api/v1/agents",
            ADMIN_TOKEN,
            json!({"name": format!("Eve{XSS}"), "email": "eve@example.com", "max_concurrent": 2}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let agent: Value = r.json().await.unwrap();
    let agent_token = agent["token"].as_str().unwrap().to_owned();
    app.set_presence(agent["id"].as_str().unwrap(), &agent_token, "online")
        .await;
    let said = app
        .customer_says(
            &format!("mallory{XSS}"),
            &format!("I want to talk to a human {XSS}"),
        )
        .await;
    let conversation = said["conversation_id"].as_str().unwrap().to_owned();
    let handoff = app.handoff_with_status(&conversation, "assigned").await;
    let handoff_id = handoff["id"].as_str().unwrap().to_owned();
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{handoff_id}/accept"),
            &agent_token,
            json!({}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &agent_token,
            json!({"text": format!("agent reply {XSS}")}),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let mail = format!(
        "From: \"Mal{XSS}\" <mal@customer.example>\r\nTo: support@example.com\r\n\
         Subject: Help {XSS}\r\nMessage-ID: <xss-1@customer.example>\r\n\
         Date: Tue, 24 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nbody {XSS}\r\n"
    );
    let r = app
        .client
        .post(app.url("/ingest/email"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "message/rfc822")
        .body(mail)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    app.pipeline_idle().await;

    let pages = [
        "/workspace".to_owned(),
        "/workspace/inbox".to_owned(),
        format!("/workspace/tickets/{handoff_id}"),
        format!("/workspace/tickets/{handoff_id}/transcript"),
        "/dashboard".to_owned(),
        "/dashboard/handoffs?drill=requested&range=today".to_owned(),
        "/admin".to_owned(),
    ];
    for page in &pages {
        let token = if page.starts_with("/workspace") {
            &agent_token
        } else {
            ADMIN_TOKEN
        };
        let html = app.get_text(page, token).await;
        assert!(
            html.contains("alert(1)") || !page.contains("tickets"),
            "{page} shows the text: {html}"
        );
        assert!(
            !html.contains("<script>alert") && !html.contains("<img src=x"),
            "{page} renders markup from a text field: {html}"
        );
    }
}

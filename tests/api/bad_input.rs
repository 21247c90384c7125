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

use serde_json::{Value, json};

use crate::helpers::{SseReader, spawn_app};

async fn start_chat(app: &crate::helpers::TestApp) -> (String, String) {
    let r = app
        .client
        .post(app.url("/widget/v1/conversations"))
        .json(&json!({"name": "Vera"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.unwrap();
    (
        v["conversation_id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

async fn open_stream(app: &crate::helpers::TestApp, id: &str, token: &str) -> SseReader {
    let r = app
        .client
        .get(app.url(&format!(
            "/widget/v1/conversations/{id}/events?token={token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    SseReader::new(r)
}

#[tokio::test]
async fn the_web_chat_from_bot_to_agent_and_back_streams_every_reply() {
    let app = spawn_app().await;
    let (agent, agent_token) = app.create_agent("Walt", true).await;
    let (id, token) = start_chat(&app).await;
    let mut stream = open_stream(&app, &id, &token).await;

    let say = |text: &'static str| {
        app.client
            .post(app.url(&format!("/widget/v1/conversations/{id}/messages")))
            .bearer_auth(&token)
            .json(&json!({"text": text}))
            .send()
    };
    assert_eq!(say("hi").await.unwrap().status().as_u16(), 202);
    let bot = stream.until(|m| m["direction"] == "out").await;
    assert_eq!(bot["author_kind"], "bot");

    assert_eq!(
        say("I want to talk to a human")
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    let notice = stream.until(|m| m["direction"] == "out").await;
    assert_eq!(notice["author_kind"], "system");

    let handoff = app.handoff_with_status(&id, "assigned").await;
    assert_eq!(handoff["assigned_agent_id"], agent.as_str());
    let hid = handoff["id"].as_str().unwrap();
    app.post_json(
        &format!("/api/v1/handoffs/{hid}/accept"),
        &agent_token,
        json!({}),
    )
    .await;
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{id}/messages"),
            &agent_token,
            json!({"text": "Walt here, how can I help?"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);

    let from_agent = stream.until(|m| m["direction"] == "out").await;
    assert_eq!(from_agent["author_kind"], "agent");
    assert_eq!(from_agent["text"], "Walt here, how can I help?");
    // Published to the stream first, then recorded as sent.
    app.message_where(&id, |m| {
        m["id"] == from_agent["id"] && m["delivery_status"] == "sent"
    })
    .await;
}

#[tokio::test]
async fn a_reconnecting_widget_gets_what_it_missed() {
    let app = spawn_app().await;
    let (id, token) = start_chat(&app).await;
    let r = app
        .client
        .post(app.url(&format!("/widget/v1/conversations/{id}/messages")))
        .bearer_auth(&token)
        .json(&json!({"text": "opening hours?"}))
        .send()
        .await
        .unwrap();
    let mine: Value = r.json().await.unwrap();
    app.message_where(&id, |m| m["author_kind"] == "bot").await;

    // Connect after the bot answered, resuming after our own message.
    let r = app
        .client
        .get(app.url(&format!(
            "/widget/v1/conversations/{id}/events?token={token}"
        )))
        .header("Last-Event-ID", mine["message_id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let mut stream = SseReader::new(r);
    let first = stream.next_json().await;
    assert_eq!(
        first["author_kind"], "bot",
        "replay starts after the last seen message"
    );
}

#[tokio::test]
async fn a_retried_widget_post_is_stored_once() {
    let app = spawn_app().await;
    let (id, token) = start_chat(&app).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = app
            .client
            .post(app.url(&format!("/widget/v1/conversations/{id}/messages")))
            .bearer_auth(&token)
            .json(&json!({"text": "hello", "client_message_id": "c-1"}))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        ids.push((v["message_id"].clone(), v["duplicate"].clone()));
    }
    assert_eq!(ids[0].0, ids[1].0);
    assert_eq!(ids[1].1, true);
}

#[tokio::test]
async fn another_conversations_token_opens_nothing() {
    let app = spawn_app().await;
    let (id, _token) = start_chat(&app).await;
    let (_other, other_token) = start_chat(&app).await;
    let post = app
        .client
        .post(app.url(&format!("/widget/v1/conversations/{id}/messages")))
        .bearer_auth(&other_token)
        .json(&json!({"text": "let me in"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 401);
    let stream = app
        .client
        .get(app.url(&format!(
            "/widget/v1/conversations/{id}/events?token={other_token}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 401);
    let history = app
        .client
        .get(app.url(&format!("/widget/v1/conversations/{id}/messages")))
        .send()
        .await
        .unwrap();
    assert_eq!(history.status().as_u16(), 401);
    assert!(
        app.conversation(&id).await["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_demo_page_embeds_the_widget_without_inline_script() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<script src="/static/widget.js" defer></script>"#));
    assert!(!html.contains("<script>"), "no inline scripts");
    let js = app
        .client
        .get(app.url("/static/widget.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status().as_u16(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        js.text()
            .await
            .unwrap()
            .contains("/widget/v1/conversations")
    );
}

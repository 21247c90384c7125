use baton::model::{ChannelKind, Identity, MessageText};
use baton::store::{InboundMessage, SenderProfile};

use crate::helpers::{spawn_app, test_settings};

#[tokio::test]
async fn a_restarted_gateway_keeps_every_conversation() {
    let app = spawn_app().await;
    let (_, token) = app.create_agent("Dee", true).await;
    let mut conversations = Vec::new();
    for i in 0..5 {
        let c = app.customer_says(&format!("keep-{i}"), "hello").await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.message_where(&c, |m| m["author_kind"] == "bot").await;
        conversations.push(c);
    }
    let queued = app.customer_says("keep-h", "human").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h = app.handoff_with_status(&queued, "assigned").await;
    // What must survive: status, customer, every message and the ticket.
    fn essence(c: &serde_json::Value) -> serde_json::Value {
        let messages: Vec<_> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| serde_json::json!([m["id"], m["author_kind"], m["text"], m["created_at"]]))
            .collect();
        serde_json::json!([
            c["status"],
            c["customer"],
            messages,
            c["handoff"]["id"],
            c["handoff"]["status"]
        ])
    }
    let mut before = Vec::new();
    for c in conversations.iter().chain([&queued]) {
        before.push(essence(&app.conversation(c).await));
    }

    let app = app.restart().await;
    for (c, old) in conversations.iter().chain([&queued]).zip(before) {
        assert_eq!(
            essence(&app.conversation(c).await),
            old,
            "conversation {c} survives the restart unchanged"
        );
    }
    // The agent's token and the ticket still work after the restart.
    let hid = h["id"].as_str().unwrap();
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{hid}/accept"),
            &token,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_message_stored_before_a_crash_is_answered_after_the_restart() {
    // Store a message the way ingest does, but with no gateway running to answer it: the state
    // a crash right after the acknowledgement leaves behind.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let settings = test_settings(&dir);
    std::fs::create_dir_all(&settings.data_dir).unwrap();
    let store = baton::store::open(&settings.store_location())
        .await
        .unwrap();
    let receipt = store
        .ingest(InboundMessage {
            channel: ChannelKind::Api,
            sender: SenderProfile {
                identity: Identity::channel(ChannelKind::Api, "crashy").unwrap(),
                display_name: None,
                email: None,
                phone: None,
            },
            conversation_id: None,
            external_id: Some("before-crash".into()),
            text: MessageText::parse("what are your opening hours?").unwrap(),
            html: None,
            attachments: vec![],
            sent_at: None,
        })
        .await
        .unwrap();
    store.close().await;

    let app = crate::helpers::restart_with(settings, dir).await;
    let c = receipt.conversation_id.to_string();
    let reply = app.message_where(&c, |m| m["author_kind"] == "bot").await;
    assert!(reply["text"].as_str().unwrap().contains("Monday"));
    app.pipeline_idle().await;
}

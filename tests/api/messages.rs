use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, eventually, spawn_app};

#[tokio::test]
async fn an_api_message_gets_a_bot_reply() {
    let app = spawn_app().await;
    let accepted = app
        .customer_says("alice", "What are your opening hours?")
        .await;
    assert_eq!(accepted["duplicate"], false);
    let conversation = accepted["conversation_id"].as_str().unwrap();

    let reply = app
        .message_where(conversation, |m| m["author_kind"] == "bot")
        .await;
    assert_eq!(reply["direction"], "out");
    assert!(
        reply["text"].as_str().unwrap().contains("Monday"),
        "{reply}"
    );

    let c = app.conversation(conversation).await;
    assert_eq!(c["channel"], "api");
    assert_eq!(c["status"], "bot");
    assert_eq!(c["messages"][0]["text"], "What are your opening hours?");
    assert_eq!(c["messages"][0]["author_kind"], "customer");
    assert_eq!(c["customer"]["display_name"], "alice");
    assert_eq!(
        c["customer"]["identities"][0],
        json!({"kind": "api", "value": "alice"})
    );
}

#[tokio::test]
async fn a_duplicate_inbound_message_is_stored_once() {
    let app = spawn_app().await;
    let body = json!({"sender": {"external_id": "bob"}, "external_id": "msg-1", "text": "hello"});
    let first: serde_json::Value = app
        .post_json("/api/v1/messages", ADMIN_TOKEN, body.clone())
        .await
        .json()
        .await
        .unwrap();
    let second = app.post_json("/api/v1/messages", ADMIN_TOKEN, body).await;
    assert_eq!(second.status().as_u16(), 202);
    let second: serde_json::Value = second.json().await.unwrap();

    assert_eq!(second["duplicate"], true);
    assert_eq!(second["conversation_id"], first["conversation_id"]);
    assert_eq!(second["message_id"], first["message_id"]);
    let conversation = first["conversation_id"].as_str().unwrap();
    app.message_where(conversation, |m| m["author_kind"] == "bot")
        .await;
    let c = app.conversation(conversation).await;
    let inbound = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "in")
        .count();
    assert_eq!(inbound, 1, "the redelivery must not be stored again");
    let bot = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["author_kind"] == "bot")
        .count();
    assert_eq!(bot, 1, "the bot must answer the redelivery only once");
}

#[tokio::test]
async fn concurrent_redeliveries_of_one_message_store_it_once() {
    let app = spawn_app().await;
    let body = json!({"sender": {"external_id": "carol"}, "external_id": "burst-1", "text": "hi"});
    let posts = (0..20).map(|_| app.post_json("/api/v1/messages", ADMIN_TOKEN, body.clone()));
    let responses = futures_util::future::join_all(posts).await;
    let mut fresh = 0;
    let mut ids = std::collections::HashSet::new();
    for r in responses {
        assert_eq!(r.status().as_u16(), 202);
        let v: serde_json::Value = r.json().await.unwrap();
        fresh += usize::from(v["duplicate"] == false);
        ids.insert(v["message_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(fresh, 1, "exactly one delivery is the original");
    assert_eq!(ids.len(), 1, "every delivery names the same stored message");
}

#[tokio::test]
async fn messages_from_the_same_sender_continue_one_conversation() {
    let app = spawn_app().await;
    let a = app.customer_says("dave", "hello").await;
    let b = app.customer_says("dave", "are you there?").await;
    let other = app.customer_says("erin", "hello").await;
    assert_eq!(a["conversation_id"], b["conversation_id"]);
    assert_ne!(a["conversation_id"], other["conversation_id"]);
}

#[tokio::test]
async fn a_sender_with_a_known_email_is_the_same_customer_on_another_handle() {
    let app = spawn_app().await;
    let first = app
        .post_json(
            "/api/v1/messages",
            ADMIN_TOKEN,
            json!({"sender": {"external_id": "crm-1", "email": "Frank@Example.com"}, "text": "hi"}),
        )
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let second = app
        .post_json(
            "/api/v1/messages",
            ADMIN_TOKEN,
            json!({"sender": {"external_id": "crm-2", "email": "Frank@example.com"}, "text": "me again"}),
        )
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let c1 = app
        .conversation(first["conversation_id"].as_str().unwrap())
        .await;
    let c2 = app
        .conversation(second["conversation_id"].as_str().unwrap())
        .await;
    assert_eq!(c1["customer"]["id"], c2["customer"]["id"]);
    let kinds: Vec<_> = c2["customer"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].clone())
        .collect();
    assert!(
        kinds.contains(&json!("crm-1"))
            && kinds.contains(&json!("crm-2"))
            && kinds.contains(&json!("Frank@example.com"))
    );
}

#[tokio::test]
async fn conversations_are_listed_newest_first_page_by_page() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.customer_says(&format!("lister-{i}"), "hello").await["conversation_id"].clone(),
        );
    }
    ids.reverse();
    let (status, page1) = app
        .get_json("/api/v1/conversations?limit=3&channel=api", ADMIN_TOKEN)
        .await;
    assert_eq!(status, 200);
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, page2) = app
        .get_json(
            &format!("/api/v1/conversations?limit=3&cursor={cursor}"),
            ADMIN_TOKEN,
        )
        .await;
    let listed: Vec<_> = page1["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["conversations"].as_array().unwrap())
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(listed, ids);
    assert!(page2["next_cursor"].is_null());

    let (_, web_only) = app
        .get_json("/api/v1/conversations?channel=web_chat", ADMIN_TOKEN)
        .await;
    assert!(web_only["conversations"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_bot_answers_every_message_in_order() {
    let app = spawn_app().await;
    let c = app.customer_says("gina", "hello").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.message_where(&c, |m| m["author_kind"] == "bot").await;
    app.customer_says("gina", "how much does it cost?").await;
    let messages = eventually("two bot answers", || async {
        let conv = app.conversation(&c).await;
        let msgs = conv["messages"].as_array().unwrap().clone();
        (msgs.iter().filter(|m| m["author_kind"] == "bot").count() == 2).then_some(msgs)
    })
    .await;
    let authors: Vec<_> = messages
        .iter()
        .map(|m| m["author_kind"].as_str().unwrap())
        .collect();
    assert_eq!(authors, ["customer", "bot", "customer", "bot"]);
    assert!(messages[3]["text"].as_str().unwrap().contains("$10"));
}

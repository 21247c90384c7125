use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, eventually, spawn_app, spawn_app_with};

#[tokio::test]
async fn asking_for_a_human_queues_a_handoff_and_tells_the_customer() {
    let app = spawn_app().await;
    let c = app.customer_says("hank", "I want to talk to a human").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let handoff = app.handoff_with_status(&c, "queued").await;
    assert_eq!(handoff["reason"], "customer_request");
    let notice = app
        .message_where(&c, |m| m["author_kind"] == "system")
        .await;
    assert!(
        notice["text"].as_str().unwrap().contains("person"),
        "{notice}"
    );
    let conv = app.conversation(&c).await;
    assert_eq!(conv["status"], "queued");
    assert!(
        !conv["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["author_kind"] == "bot"),
        "the bot stays silent once a person is asked for"
    );

    // While queued, the bot stays silent on further messages.
    app.customer_says("hank", "hello?").await;
    let (_, queued) = app
        .get_json("/api/v1/handoffs?status=queued", ADMIN_TOKEN)
        .await;
    assert_eq!(queued["handoffs"].as_array().unwrap().len(), 1);
    app.pipeline_idle().await;
    let conv = app.conversation(&c).await;
    assert!(
        !conv["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["author_kind"] == "bot")
    );
}

#[tokio::test]
async fn a_queued_handoff_waits_until_an_agent_comes_online_then_is_assigned() {
    let app = spawn_app().await;
    let (agent, token) = app.create_agent("Ivy", false).await;
    let c = app.customer_says("ian", "agent please").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.handoff_with_status(&c, "queued").await;

    app.set_presence(&agent, &token, "online").await;
    let handoff = app.handoff_with_status(&c, "assigned").await;
    assert_eq!(handoff["assigned_agent_id"], agent.as_str());
    assert_eq!(app.conversation(&c).await["status"], "assigned");
}

#[tokio::test]
async fn the_full_handoff_accept_reply_resolve_path_works_over_the_api() {
    let app = spawn_app().await;
    let (agent, token) = app.create_agent("Jay", true).await;
    let c = app
        .customer_says("jill", "can I speak to a real person")
        .await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let handoff = app.handoff_with_status(&c, "assigned").await;
    let id = handoff["id"].as_str().unwrap();

    // Replying before accepting is refused.
    let early = app
        .post_json(
            &format!("/api/v1/conversations/{c}/messages"),
            &token,
            json!({"text": "hi"}),
        )
        .await;
    assert_eq!(early.status().as_u16(), 409);

    let accepted = app
        .post_json(&format!("/api/v1/handoffs/{id}/accept"), &token, json!({}))
        .await;
    assert_eq!(accepted.status().as_u16(), 200);
    assert_eq!(app.conversation(&c).await["status"], "agent");

    let reply = app
        .post_json(
            &format!("/api/v1/conversations/{c}/messages"),
            &token,
            json!({"text": "Hi Jill, I'm Jay."}),
        )
        .await;
    assert_eq!(reply.status().as_u16(), 201);
    let reply: Value = reply.json().await.unwrap();
    assert_eq!(reply["author_kind"], "agent");
    assert_eq!(reply["agent_id"], agent.as_str());

    let resolved = app
        .post_json(&format!("/api/v1/handoffs/{id}/resolve"), &token, json!({}))
        .await;
    assert_eq!(resolved.status().as_u16(), 200);
    let conv = app.conversation(&c).await;
    assert_eq!(conv["status"], "resolved");
    assert_eq!(conv["handoff"]["status"], "resolved");
    assert!(!conv["handoff"]["first_reply_at"].is_null());
}

#[tokio::test]
async fn an_agent_cannot_act_on_a_ticket_offered_to_someone_else() {
    let app = spawn_app().await;
    let (_kim, kim_token) = app.create_agent("Kim", true).await;
    let c = app.customer_says("kate", "human").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let handoff = app.handoff_with_status(&c, "assigned").await;
    let id = handoff["id"].as_str().unwrap();
    let (_lou, lou_token) = app.create_agent("Lou", true).await;

    for action in ["accept", "resolve", "release"] {
        let r = app
            .post_json(
                &format!("/api/v1/handoffs/{id}/{action}"),
                &lou_token,
                json!({}),
            )
            .await;
        assert_eq!(r.status().as_u16(), 403, "{action} by another agent");
    }
    let (status, _) = app
        .get_json(&format!("/api/v1/conversations/{c}"), &lou_token)
        .await;
    assert_eq!(status, 403, "another agent cannot read the conversation");
    let (status, _) = app
        .get_json(&format!("/api/v1/conversations/{c}"), &kim_token)
        .await;
    assert_eq!(status, 200, "the assigned agent can");
}

#[tokio::test]
async fn round_robin_spreads_tickets_across_online_agents() {
    let app = spawn_app().await;
    let (a, _) = app.create_agent("Mia", true).await;
    let (b, _) = app.create_agent("Ned", true).await;
    let mut owners = Vec::new();
    for i in 0..4 {
        let c = app
            .customer_says(&format!("rr-{i}"), "talk to someone")
            .await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let h = app.handoff_with_status(&c, "assigned").await;
        owners.push(h["assigned_agent_id"].as_str().unwrap().to_owned());
    }
    let count = |id: &str| owners.iter().filter(|o| *o == id).count();
    assert_eq!((count(&a), count(&b)), (2, 2), "{owners:?}");
    // Each agent has max_concurrent = 2: a fifth ticket waits.
    let c = app.customer_says("rr-5", "operator").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.handoff_with_status(&c, "queued").await;
    app.services.router.tick().await.unwrap();
    assert_eq!(app.conversation(&c).await["handoff"]["status"], "queued");
}

#[tokio::test]
async fn a_freed_slot_takes_the_next_waiting_ticket() {
    let app = spawn_app().await;
    let (_, token) = app.create_agent("Olga", true).await;
    // One after the other, so the queue order is known.
    let mut conversations = Vec::new();
    let mut handoffs = Vec::new();
    for (i, expected) in ["assigned", "assigned", "queued"].into_iter().enumerate() {
        let c = app.customer_says(&format!("slot-{i}"), "agent").await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        handoffs.push(app.handoff_with_status(&c, expected).await);
        conversations.push(c);
    }
    let first = &handoffs[0];
    let id = first["id"].as_str().unwrap();
    let r = app
        .post_json(&format!("/api/v1/handoffs/{id}/release"), &token, json!({}))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    app.handoff_with_status(&conversations[2], "assigned").await;
}

#[tokio::test]
async fn releasing_a_conversation_hands_it_back_to_the_bot() {
    let app = spawn_app().await;
    let (agent, token) = app.create_agent("Pat", true).await;
    let c = app.customer_says("paul", "representative").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h = app.handoff_with_status(&c, "assigned").await;
    let id = h["id"].as_str().unwrap();
    app.post_json(&format!("/api/v1/handoffs/{id}/accept"), &token, json!({}))
        .await;

    // An admin acting for the agent names them.
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{id}/release"),
            ADMIN_TOKEN,
            json!({"agent_id": agent}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let conv = app.conversation(&c).await;
    assert_eq!(conv["status"], "bot");
    assert_eq!(conv["handoff"]["status"], "released");

    app.customer_says("paul", "what about shipping?").await;
    let answer = app
        .message_where(&c, |m| {
            m["author_kind"] == "bot" && m["text"].as_str().unwrap().contains("ship")
        })
        .await;
    assert_eq!(answer["direction"], "out");
}

#[tokio::test]
async fn the_api_can_hand_off_a_conversation_with_a_reason_and_priority() {
    let app = spawn_app().await;
    let c = app.customer_says("quinn", "hello").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{c}/handoff"),
            ADMIN_TOKEN,
            json!({"reason": "VIP account", "summary": "Wants a refund for order 42", "priority": "urgent"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let h: Value = r.json().await.unwrap();
    assert_eq!(h["reason"], "manual");
    assert_eq!(h["reason_detail"], "VIP account");
    assert_eq!(h["priority"], "urgent");
    assert_eq!(h["summary"], "Wants a refund for order 42");

    let again = app
        .post_json(
            &format!("/api/v1/conversations/{c}/handoff"),
            ADMIN_TOKEN,
            json!({}),
        )
        .await;
    assert_eq!(
        again.status().as_u16(),
        409,
        "a conversation has one open handoff"
    );
}

/// A stand-in for an external bot: answers every message, asks for a person on "refund".
async fn start_external_bot() -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    async fn answer(req: actix_web::HttpRequest, body: web::Json<Value>) -> HttpResponse {
        assert_eq!(
            req.headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer bot-secret"),
            "Baton authenticates to the bot"
        );
        let text = body["message"]["text"].as_str().unwrap_or_default();
        assert!(body["conversation_id"].is_string() && body["history"].is_array());
        if text.contains("refund") {
            HttpResponse::Ok().json(json!({
                "replies": [{"text": "Let me get a colleague for that."}],
                "handoff": {"reason": "refund requested", "summary": "Customer wants a refund", "priority": "high"}
            }))
        } else if text.contains("crash") {
            HttpResponse::InternalServerError().finish()
        } else {
            HttpResponse::Ok().json(json!([{"text": format!("echo: {text}")}]))
        }
    }
    let server = HttpServer::new(|| App::new().route("/bot", web::post().to(answer)))
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/bot"), handle)
}

#[tokio::test]
async fn an_external_bot_answers_and_can_ask_for_a_handoff() {
    let (url, _bot) = start_external_bot().await;
    let app = spawn_app_with(|s| {
        s.bot_webhook_url = Some(url);
        s.bot_webhook_secret = Some("bot-secret".to_owned().into());
    })
    .await;
    let c = app.customer_says("rita", "hello bot").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let echo = app.message_where(&c, |m| m["author_kind"] == "bot").await;
    assert_eq!(echo["text"], "echo: hello bot");

    app.customer_says("rita", "I want a refund").await;
    let h = app.handoff_with_status(&c, "queued").await;
    assert_eq!(h["reason"], "bot_request");
    assert_eq!(h["summary"], "Customer wants a refund");
    assert_eq!(h["priority"], "high");
    app.message_where(&c, |m| m["text"] == "Let me get a colleague for that.")
        .await;
}

#[tokio::test]
async fn a_failing_bot_hands_the_customer_to_a_person() {
    let (url, _bot) = start_external_bot().await;
    let app = spawn_app_with(|s| {
        s.bot_webhook_url = Some(url);
        s.bot_webhook_secret = Some("bot-secret".to_owned().into());
    })
    .await;
    let c = app.customer_says("sam", "this will crash").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h = app.handoff_with_status(&c, "queued").await;
    assert_eq!(h["reason"], "bot_failure");
    let waited = eventually("the customer to be told", || async {
        let conv = app.conversation(&c).await;
        conv["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["author_kind"] == "system")
            .then_some(())
    })
    .await;
    assert_eq!(waited, ());
}

#[tokio::test]
async fn an_agent_is_created_with_skills_and_teams_and_its_token_works() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/api/v1/agents",
            ADMIN_TOKEN,
            json!({"name": "Tess", "email": "Tess@Example.com", "skills": ["Billing", "lang:es"],
                   "teams": ["Tier-1"], "max_concurrent": 4}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let agent: Value = r.json().await.unwrap();
    assert_eq!(agent["skills"], json!(["billing", "lang:es"]));
    assert_eq!(agent["teams"], json!(["tier-1"]));
    assert_eq!(agent["email"], "Tess@example.com");
    assert_eq!(agent["presence"], "offline");
    let token = agent["token"].as_str().unwrap();
    let id = agent["id"].as_str().unwrap();
    app.set_presence(id, token, "online").await;
    let (_, list) = app.get_json("/api/v1/agents", ADMIN_TOKEN).await;
    let listed = &list["agents"][0];
    assert_eq!(listed["presence"], "online");
    assert!(
        listed.get("token").is_none(),
        "the token is shown only once"
    );

    let dup = app
        .post_json(
            "/api/v1/agents",
            ADMIN_TOKEN,
            json!({"name": "T2", "email": "tess@example.com"}),
        )
        .await;
    assert_eq!(dup.status().as_u16(), 409);
}

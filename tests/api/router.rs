//! The handoff router end to end through the public API: escalation rules, queues, honest
//! waiting, offers that time out and go to the next agent, transfers with notes, hand-back to
//! the bot, the context package, business hours, abandonment, restarts and concurrency.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, eventually, spawn_app_with};

impl TestApp {
    /// POSTs a ticket action; returns (status, body).
    async fn act(&self, token: &str, handoff: &str, action: &str, body: Value) -> (u16, Value) {
        let r = self
            .post_json(&format!("/api/v1/handoffs/{handoff}/{action}"), token, body)
            .await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The ticket with its context package.
    async fn ticket(&self, id: &str) -> Value {
        let (status, body) = self
            .get_json(&format!("/api/v1/handoffs/{id}"), ADMIN_TOKEN)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits until the ticket matches `pred`.
    async fn ticket_where(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(what, || async {
            let t = self.ticket(id).await;
            pred(&t).then_some(t)
        })
        .await
    }

    /// The system notices a conversation got, oldest first.
    async fn notices(&self, conversation: &str) -> Vec<String> {
        self.conversation(conversation).await["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["author_kind"] == "system")
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A ticket's events in ClickHouse, in order: (type, agent id or "").
    async fn events_of(&self, handoff: &str) -> Vec<(String, String)> {
        #[derive(serde::Deserialize, clickhouse::Row)]
        struct Row {
            event_type: String,
            agent_id: String,
        }
        self.ship_events().await;
        let rows: Vec<Row> = self
            .services
            .clickhouse
            .client()
            .query(
                "SELECT event_type, agent_id FROM handoff_events FINAL
                 WHERE handoff_id = ? ORDER BY seq",
            )
            .bind(handoff)
            .fetch_all()
            .await
            .unwrap();
        rows.into_iter()
            .map(|r| (r.event_type, r.agent_id))
            .collect()
    }
}

fn conversation_of(v: &Value) -> String {
    v["conversation_id"].as_str().unwrap().to_owned()
}

fn queue(json: Value) -> baton::handoff::engine::QueueConfig {
    serde_json::from_value(json).unwrap()
}

#[tokio::test]
async fn a_frustrated_customer_waits_in_line_then_is_offered_timed_out_re_offered_accepted_transferred_and_resolved()
 {
    let app = spawn_app_with(|s| {
        s.queues = vec![
            queue(json!({"team": "general", "accept_timeout_ms": 3000})),
            queue(json!({"team": "billing"})),
        ];
    })
    .await;
    let (ann, ann_token) = app.create_agent_in("Ann", &[], 1, false).await;
    let (ben, ben_token) = app.create_agent_in("Ben", &[], 1, false).await;
    let (cat, cat_token) = app.create_agent_in("Cat", &["billing"], 1, false).await;

    // Nobody is online: the first customer is next in line.
    let amy = conversation_of(&app.customer_says("amy", "I want to talk to a person").await);
    let a = app.handoff_with_status(&amy, "queued").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("amy hears she is next", || async {
        app.notices(&amy)
            .await
            .iter()
            .any(|n| n.contains("You're next"))
            .then_some(())
    })
    .await;

    // The second one gets frustrated with the bot.
    let bob = conversation_of(&app.customer_says("bob", "Where is my parcel?").await);
    app.message_where(&bob, |m| m["author_kind"] == "bot").await;
    app.customer_says(
        "bob",
        "THIS IS USELESS!!! I already told you my order number",
    )
    .await;
    let b = app.handoff_with_status(&bob, "queued").await;
    assert_eq!(b["reason"], "frustration");
    assert_eq!(b["rule"], "frustrated-customer");
    let b = b["id"].as_str().unwrap().to_owned();
    eventually("bob hears his place in line", || async {
        app.notices(&bob)
            .await
            .iter()
            .any(|n| n.contains("number 2 in line"))
            .then_some(())
    })
    .await;
    let ticket = app.ticket(&b).await;
    assert!(
        ticket["reason_detail"]
            .as_str()
            .unwrap()
            .contains("negative_words"),
        "{ticket}"
    );

    // Ann comes online, is offered the older ticket and takes it; Ben gets Bob's and lets the
    // offer lapse.
    app.set_presence(&ann, &ann_token, "online").await;
    app.ticket_where(&a, "amy's ticket offered to Ann", |t| {
        t["status"] == "assigned" && t["assigned_agent_id"] == ann.as_str()
    })
    .await;
    assert_eq!(app.act(&ann_token, &a, "accept", json!({})).await.0, 200);
    app.set_presence(&ben, &ben_token, "online").await;
    let offered = app
        .ticket_where(&b, "bob's ticket offered to Ben", |t| {
            t["status"] == "assigned" && t["assigned_agent_id"] == ben.as_str()
        })
        .await;
    assert!(!offered["offer_deadline"].is_null(), "{offered}");
    app.ticket_where(&b, "Ben's offer to time out", |t| t["status"] == "queued")
        .await;
    // Ben cannot accept a lapsed offer.
    let (status, _) = app.act(&ben_token, &b, "accept", json!({})).await;
    assert_eq!(status, 403);

    // Ann finishes Amy's ticket; her free slot takes Bob's at once (Ben, who let it lapse, is
    // not offered it again while Ann can take it).
    assert_eq!(app.act(&ann_token, &a, "resolve", json!({})).await.0, 200);
    app.ticket_where(&b, "bob's ticket re-offered to Ann", |t| {
        t["status"] == "assigned" && t["assigned_agent_id"] == ann.as_str()
    })
    .await;
    assert_eq!(app.act(&ann_token, &b, "accept", json!({})).await.0, 200);

    // A transfer needs a note; the note travels with the ticket to billing, where Cat is.
    app.set_presence(&cat, &cat_token, "online").await;
    let (status, _) = app
        .act(&ann_token, &b, "transfer", json!({"team": "billing"}))
        .await;
    assert_eq!(status, 400);
    let (status, body) = app
        .act(
            &ann_token,
            &b,
            "transfer",
            json!({"team": "billing", "note": "Wants a refund for order A-17; please decide."}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let t = app
        .ticket_where(&b, "bob's ticket offered to Cat", |t| {
            t["status"] == "assigned" && t["assigned_agent_id"] == cat.as_str()
        })
        .await;
    assert_eq!(t["team"], "billing");
    let notes = t["context"]["notes"].as_array().unwrap();
    assert_eq!(notes[0]["kind"], "transfer");
    assert_eq!(notes[0]["to_team"], "billing");
    assert!(notes[0]["text"].as_str().unwrap().contains("A-17"));

    assert_eq!(app.act(&cat_token, &b, "accept", json!({})).await.0, 200);
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{bob}/messages"),
            &cat_token,
            json!({"text": "Hi Bob, I've approved the refund."}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(app.act(&cat_token, &b, "resolve", json!({})).await.0, 200);

    let events = app.events_of(&b).await;
    let expected: Vec<(String, String)> = [
        ("requested", ""),
        ("queued", ""),
        ("offered", ben.as_str()),
        ("offer_timed_out", ben.as_str()),
        ("offered", ann.as_str()),
        ("accepted", ann.as_str()),
        ("assigned", ann.as_str()),
        ("transferred", ann.as_str()),
        ("offered", cat.as_str()),
        ("accepted", cat.as_str()),
        ("assigned", cat.as_str()),
        ("first_agent_reply", cat.as_str()),
        ("resolved", cat.as_str()),
    ]
    .into_iter()
    .map(|(k, a)| (k.to_owned(), a.to_owned()))
    .collect();
    assert_eq!(events, expected);
}

/// An external bot that reports intent and collected fields, and records what it is sent.
async fn recording_bot() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let seen: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let recorded = seen.clone();
    let server = HttpServer::new(move || {
        let recorded = recorded.clone();
        App::new().route(
            "/bot",
            web::post().to(move |body: web::Json<Value>| {
                let recorded = recorded.clone();
                async move {
                    recorded.lock().unwrap().push(body.0.clone());
                    let text = body["message"]["text"].as_str().unwrap_or_default();
                    if text.contains("refund") {
                        HttpResponse::Ok().json(json!({
                            "replies": [{"text": "I'll get a colleague for the refund."}],
                            "handoff": {"summary": "Refund for order A-17", "team": "billing"},
                            "intent": "refund",
                            "fields": {"order": "A-17", "amount": 42.5},
                            "confidence": 0.9
                        }))
                    } else {
                        HttpResponse::Ok()
                            .json(json!({"replies": [{"text": format!("bot: {text}")}]}))
                    }
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://127.0.0.1:{}/bot", server.addrs()[0].port());
    tokio::spawn(server.run());
    (url, seen)
}

#[tokio::test]
async fn the_agent_gets_the_whole_context_and_hands_back_to_a_bot_that_stayed_silent_meanwhile() {
    let (url, seen) = recording_bot().await;
    let app = spawn_app_with(|s| {
        s.bot_webhook_url = Some(url);
        s.queues = vec![queue(json!({"team": "billing"}))];
        s.support_address = Some("support@example.com".into());
    })
    .await;
    let (_, token) = app.create_agent_in("Dee", &["billing"], 2, true).await;
    // Eve wrote by email last week; today she is on the API channel with the same address.
    let mail = "From: Eve <eve@customer.example>\r\nTo: support@example.com\r\n\
                Subject: Invoice question\r\nMessage-ID: <eve-1@customer.example>\r\n\
                MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nWhere is my invoice?\r\n";
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
    let email_conversation = conversation_of(&r.json().await.unwrap());
    let r = app
        .post_json(
            "/api/v1/messages",
            ADMIN_TOKEN,
            json!({"sender": {"external_id": "eve", "email": "eve@customer.example"}, "text": "hello there"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let c = conversation_of(&r.json().await.unwrap());
    app.message_where(&c, |m| m["author_kind"] == "bot").await;
    app.post_json(
        "/api/v1/messages",
        ADMIN_TOKEN,
        json!({"sender": {"external_id": "eve"}, "text": "I need a refund please"}),
    )
    .await;
    let h = app.handoff_with_status(&c, "assigned").await;
    let id = h["id"].as_str().unwrap().to_owned();
    assert_eq!(h["reason"], "bot_request");

    let t = app.ticket(&id).await;
    assert_eq!(t["team"], "billing", "the bot named the team");
    assert_eq!(t["summary"], "Refund for order A-17");
    assert_eq!(t["intent"], "refund");
    assert_eq!(t["fields"], json!({"order": "A-17", "amount": 42.5}));
    let transcript: Vec<&str> = t["context"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(transcript[0], "hello there");
    assert!(transcript.contains(&"I need a refund please"));
    let identities: Vec<&str> = t["context"]["customer"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_str().unwrap())
        .collect();
    assert!(
        identities.contains(&"eve") && identities.contains(&"eve@customer.example"),
        "{identities:?}"
    );
    let earlier = t["context"]["earlier_conversations"].as_array().unwrap();
    assert_eq!(earlier.len(), 1, "{earlier:?}");
    assert_eq!(
        earlier[0]["conversation"]["id"],
        email_conversation.as_str()
    );
    assert_eq!(earlier[0]["conversation"]["channel"], "email");
    // The bot answered that mail too: its answer is the latest message there.
    assert!(earlier[0]["message_count"].as_u64().unwrap() >= 1);
    assert!(
        earlier[0]["last_message"]
            .as_str()
            .unwrap()
            .contains("invoice")
    );
    assert!(t["waited_ms"].as_i64().unwrap() >= 0);

    // While a person has the conversation, the bot is not asked.
    assert_eq!(app.act(&token, &id, "accept", json!({})).await.0, 200);
    let asked = seen.lock().unwrap().len();
    app.customer_says("eve", "are you there?").await;
    app.pipeline_idle().await;
    assert_eq!(seen.lock().unwrap().len(), asked, "the bot stays silent");

    let (status, body) = app
        .act(
            &token,
            &id,
            "release",
            json!({"note": "Refund approved; it arrives in 3 days."}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.conversation(&c).await["status"], "bot");
    app.customer_says("eve", "thanks").await;
    let request = eventually("the bot is asked again", || async {
        seen.lock()
            .unwrap()
            .last()
            .filter(|r| r["message"]["text"] == "thanks")
            .cloned()
    })
    .await;
    assert_eq!(
        request["handback"]["note"],
        "Refund approved; it arrives in 3 days."
    );
    let t = app.ticket(&id).await;
    assert_eq!(t["status"], "released");
    assert_eq!(t["context"]["notes"][0]["kind"], "release");
}

#[tokio::test]
async fn rules_from_the_api_send_a_tagged_customer_straight_to_their_team_with_its_priority() {
    let app = spawn_app_with(|s| {
        s.queues = vec![queue(json!({"team": "vip-desk"}))];
    })
    .await;
    let rules = json!({"rules": [
        {"name": "vip-first", "when": {"customer_tags": ["vip"]}, "team": "vip-desk", "priority": "urgent"},
        {"name": "legal", "when": {"keywords": ["lawyer", "legal action"]}, "priority": "high"},
        {"name": "asks", "when": {"asks_for_human": true}}
    ]});
    let r = app
        .client
        .put(app.url("/api/v1/escalation-rules"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, stored) = app.get_json("/api/v1/escalation-rules", ADMIN_TOKEN).await;
    assert_eq!(stored["rules"].as_array().unwrap().len(), 3);
    // A bad rule list is refused whole, with the reason.
    let bad = app
        .client
        .put(app.url("/api/v1/escalation-rules"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"rules": [{"name": "x", "when": {"frustration_at_least": 3}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // A keyword rule fires before the bot answers.
    let c = conversation_of(
        &app.customer_says("gus", "My lawyer will hear about this")
            .await,
    );
    let h = app.handoff_with_status(&c, "queued").await;
    assert_eq!(
        (h["rule"].as_str(), h["priority"].as_str()),
        (Some("legal"), Some("high"))
    );
    assert_eq!(h["reason"], "rule");

    // Tag a customer as VIP: their next conversation goes straight to the VIP desk.
    let first = conversation_of(&app.customer_says("vic", "hi").await);
    app.message_where(&first, |m| m["author_kind"] == "bot")
        .await;
    let customer = app.conversation(&first).await["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .client
        .put(app.url(&format!("/api/v1/customers/{customer}/tags")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"tags": ["VIP"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    app.customer_says("vic", "one more question").await;
    let h = app.handoff_with_status(&first, "queued").await;
    assert_eq!(h["rule"], "vip-first");
    assert_eq!(h["team"], "vip-desk");
    assert_eq!(h["priority"], "urgent");
}

#[tokio::test]
async fn outside_business_hours_the_customer_is_told_when_people_are_back_and_the_ticket_waits() {
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().unwrap();
    let app = spawn_app_with(|s| {
        s.queues = vec![queue(json!({"team": "general", "hours": {
            "timezone": "UTC",
            "weekly": {"mon": ["00:00-24:00"], "tue": ["00:00-24:00"], "wed": ["00:00-24:00"],
                       "thu": ["00:00-24:00"], "fri": ["00:00-24:00"], "sat": ["00:00-24:00"],
                       "sun": ["00:00-24:00"]},
            "holidays": [today.to_string()]
        }}))];
    })
    .await;
    let (_, _) = app.create_agent_in("Hal", &[], 2, true).await;
    let c = conversation_of(&app.customer_says("ivy", "talk to a human please").await);
    let h = app.handoff_with_status(&c, "queued").await;
    let notice = eventually("the customer is told when people are back", || async {
        app.notices(&c)
            .await
            .into_iter()
            .find(|n| n.contains("back"))
    })
    .await;
    assert!(
        notice.contains(&format!("{tomorrow} 00:00 UTC")),
        "{notice}"
    );
    // An online agent does not get it while the queue is closed.
    app.services.router.tick().await.unwrap();
    assert_eq!(
        app.ticket(h["id"].as_str().unwrap()).await["status"],
        "queued"
    );
}

#[tokio::test]
async fn a_customer_who_goes_quiet_while_queued_is_marked_abandoned_and_the_bot_takes_over_again() {
    let app = spawn_app_with(|s| s.abandon_after_secs = 1).await;
    let c = conversation_of(&app.customer_says("jay", "agent please").await);
    let h = app.handoff_with_status(&c, "queued").await;
    let id = h["id"].as_str().unwrap().to_owned();
    app.ticket_where(&id, "the ticket abandoned", |t| t["status"] == "abandoned")
        .await;
    assert_eq!(app.conversation(&c).await["status"], "bot");
    let events = app.events_of(&id).await;
    assert_eq!(events.last().unwrap().0, "abandoned");
}

#[tokio::test]
async fn offers_and_queues_survive_a_restart() {
    let app = spawn_app_with(|s| {
        s.queues = vec![queue(
            json!({"team": "general", "accept_timeout_ms": 600000}),
        )];
    })
    .await;
    let (kim, kim_token) = app.create_agent_in("Kim", &[], 1, true).await;
    let first = conversation_of(&app.customer_says("lou", "human please").await);
    let offered = app.handoff_with_status(&first, "assigned").await;
    assert_eq!(offered["assigned_agent_id"], kim.as_str());
    let second = conversation_of(&app.customer_says("mo", "human please").await);
    let waiting = app.handoff_with_status(&second, "queued").await;

    let app = app.restart().await;
    // The offer still stands for Kim, and the waiting ticket still waits for her slot.
    let offered_id = offered["id"].as_str().unwrap();
    assert_eq!(
        app.act(&kim_token, offered_id, "accept", json!({})).await.0,
        200
    );
    assert_eq!(
        app.act(&kim_token, offered_id, "resolve", json!({}))
            .await
            .0,
        200
    );
    let waiting_id = waiting["id"].as_str().unwrap();
    app.ticket_where(waiting_id, "the waiting ticket offered to Kim", |t| {
        t["status"] == "assigned" && t["assigned_agent_id"] == kim.as_str()
    })
    .await;
}

#[tokio::test]
async fn concurrent_requests_never_give_a_ticket_to_two_agents_or_an_agent_more_than_their_capacity()
 {
    let app = spawn_app_with(|s| {
        s.queues = vec![queue(
            json!({"team": "general", "accept_timeout_ms": 600000}),
        )];
    })
    .await;
    let mut agents = Vec::new();
    for name in ["Pia", "Quin", "Rex"] {
        agents.push(app.create_agent_in(name, &[], 2, true).await);
    }
    // Thirty customers ask at once.
    let asks = (0..30).map(|i| {
        let app = &app;
        async move {
            app.customer_says(&format!("crowd-{i}"), "real person please")
                .await
        }
    });
    futures_util::future::join_all(asks).await;
    app.pipeline_idle().await;
    // Every agent tries to accept, decline and resolve every ticket at once, several times.
    let (_, list) = app
        .get_json("/api/v1/handoffs?limit=100", ADMIN_TOKEN)
        .await;
    let ids: Vec<String> = list["handoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 30);
    for round in 0..3 {
        let mut calls = Vec::new();
        for (_, token) in &agents {
            for id in &ids {
                let action = ["accept", "decline", "accept", "resolve"][(round + id.len()) % 4];
                calls.push(app.act(token, id, action, json!({})));
            }
        }
        for (status, body) in futures_util::future::join_all(calls).await {
            assert!(
                [200, 403, 409].contains(&status),
                "unexpected {status}: {body}"
            );
        }
    }
    // The store agrees with the rules: per agent, offered + owned never above 2.
    let db = crate::helpers::StoreDb::of(&app.settings).await;
    let rows: Vec<(Option<String>, i64)> = db
        .fetch(
            "SELECT assigned_agent_id, count(*) FROM handoffs
             WHERE status IN ('assigned', 'accepted') GROUP BY assigned_agent_id",
        )
        .await
        .unwrap();
    for (agent, n) in &rows {
        assert!(agent.is_some(), "an offered ticket without an agent");
        assert!(*n <= 2, "{agent:?} holds {n} tickets");
    }
    let open_conversations: Vec<(String, Option<String>, Option<String>)> = db
        .fetch(
            "SELECT c.status, c.assigned_agent_id, h.assigned_agent_id FROM conversations c
             JOIN handoffs h ON h.conversation_id = c.id AND h.status IN ('assigned', 'accepted')",
        )
        .await
        .unwrap();
    for (status, conv_agent, ticket_agent) in open_conversations {
        assert_eq!(
            conv_agent, ticket_agent,
            "conversation {status} disagrees with its ticket"
        );
    }
    // And the router still works: every remaining ticket is eventually accounted for.
    let total = db.number("SELECT count(*) FROM handoffs").await.unwrap();
    assert_eq!(total, 30);
}

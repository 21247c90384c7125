//! The agent workspace: inbox, ticket view, replies, notes and actions through its forms, and
//! in headless Chromium the live offer, the reply reaching the customer's widget, the laptop
//! layout, and hostile messages that must never run.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::access::{ADMIN_EMAIL, PASSWORD, SignedIn};
use crate::browser::Browser;
use crate::helpers::{ADMIN_TOKEN, TestApp, eventually, spawn_app_with};

impl TestApp {
    async fn page(&self, session: &SignedIn, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(self.url(path))
            .header("cookie", &session.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts a workspace form with the session's CSRF token; returns (status, Location).
    async fn submit(
        &self,
        session: &SignedIn,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (u16, String) {
        let mut form = vec![("csrf", session.csrf.as_str())];
        form.extend_from_slice(fields);
        let r = self
            .client
            .post(self.url(path))
            .header("cookie", &session.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (r.status().as_u16(), location)
    }
}

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/screenshots")
        .join(name)
}

async fn workspace_app() -> TestApp {
    spawn_app_with(|s| {
        s.admin_email = Some(ADMIN_EMAIL.into());
        s.admin_password = Some(PASSWORD.to_owned().into());
        s.queues = vec![
            serde_json::from_value(json!({"team": "billing"})).unwrap(),
            serde_json::from_value(json!({"team": "sales"})).unwrap(),
        ];
        s.escalation_rules = Some(
            serde_json::from_value(json!([
                {"name": "refunds", "when": {"keywords": ["refund"]}, "team": "billing"},
                {"name": "asks", "when": {"asks_for_human": true}}
            ]))
            .unwrap(),
        );
    })
    .await
}

#[tokio::test]
async fn an_agent_takes_a_ticket_from_the_inbox_replies_notes_and_resolves_it_through_the_forms() {
    let app = workspace_app().await;
    let (ann_id, ann_token) = app
        .create_user("ann@example.com", "agent", &["billing"])
        .await;
    let (_, _) = app
        .create_user("sam@example.com", "agent", &["sales"])
        .await;
    let c = app
        .customer_says("carl", "I want a refund for order A-17")
        .await;
    let conversation = c["conversation_id"].as_str().unwrap().to_owned();
    let h = app.handoff_with_status(&conversation, "queued").await;
    let id = h["id"].as_str().unwrap().to_owned();

    let ann = app.sign_in("ann@example.com", PASSWORD).await;
    let (status, inbox) = app.page(&ann, "/workspace").await;
    assert_eq!(status, 200);
    assert!(inbox.contains(&format!(r#"data-ticket="{id}""#)), "{inbox}");
    assert!(inbox.contains("Waiting in queue"));

    // Online: the router offers her the ticket; the inbox shows the offer with its buttons.
    app.set_presence(&ann_id, &ann_token, "online").await;
    app.handoff_with_status(&conversation, "assigned").await;
    let (_, inbox) = app.page(&ann, "/workspace").await;
    assert!(inbox.contains(&format!(r#"data-offer="{id}""#)), "{inbox}");

    // Another team's agent cannot open it.
    let sam = app.sign_in("sam@example.com", PASSWORD).await;
    assert_eq!(
        app.page(&sam, &format!("/workspace/tickets/{id}")).await.0,
        403
    );

    let ticket = format!("/workspace/tickets/{id}");
    let (status, location) = app.submit(&ann, &format!("{ticket}/accept"), &[]).await;
    assert_eq!((status, location.as_str()), (303, ticket.as_str()));
    let (_, page) = app.page(&ann, &ticket).await;
    assert!(
        page.contains("I want a refund for order A-17"),
        "the transcript"
    );
    assert!(
        page.contains("refunds"),
        "the rule that fired, in the context"
    );
    assert!(page.contains(r#"id="reply-text""#), "the composer");

    // A canned response arrives with the customer's and the agent's names filled in.
    let (_, canned) = app
        .page(&ann, &format!("{ticket}/canned?canned=greeting"))
        .await;
    assert!(
        canned.contains("Hi carl, I") && canned.contains("m ann and I"),
        "{canned}"
    );

    let (status, location) = app
        .submit(
            &ann,
            &format!("{ticket}/reply"),
            &[("text", "Hi Carl, refund on its way.")],
        )
        .await;
    assert_eq!((status, location.as_str()), (303, ticket.as_str()));
    let reply = app
        .message_where(&conversation, |m| m["author_kind"] == "agent")
        .await;
    assert_eq!(reply["text"], "Hi Carl, refund on its way.");
    assert_eq!(reply["agent_id"], ann_id.as_str());

    // A reply over the channel's limit is refused with the reason on the page.
    let long = "x".repeat(65_537);
    let (_, location) = app
        .submit(&ann, &format!("{ticket}/reply"), &[("text", long.as_str())])
        .await;
    assert!(location.contains("notice="), "{location}");

    // A private note is on the ticket, never in what the customer sees.
    app.submit(
        &ann,
        &format!("{ticket}/note"),
        &[("text", "Customer is a repeat refunder")],
    )
    .await;
    let (_, page) = app.page(&ann, &ticket).await;
    assert!(page.contains("Customer is a repeat refunder"));
    let messages = app.conversation(&conversation).await["messages"].clone();
    assert!(!messages.to_string().contains("repeat refunder"));

    // A manager of the team reads the ticket but gets no composer.
    app.create_user("mia@example.com", "manager", &["billing"])
        .await;
    let mia = app.sign_in("mia@example.com", PASSWORD).await;
    let (status, page) = app.page(&mia, &ticket).await;
    assert_eq!(status, 200);
    assert!(!page.contains(r#"id="reply-text""#));

    let (status, location) = app
        .submit(
            &ann,
            &format!("{ticket}/resolve"),
            &[("disposition", "solved")],
        )
        .await;
    assert_eq!((status, location.as_str()), (303, "/workspace"));
    app.handoff_with_status(&conversation, "resolved").await;
    let (_, log) = app
        .get_json(
            &format!("/api/v1/audit?target_kind=handoff&target_id={id}"),
            ADMIN_TOKEN,
        )
        .await;
    let resolve = &log["entries"][0];
    assert_eq!(resolve["action"], "handoff.resolve");
    assert_eq!(resolve["detail"]["disposition"], "solved");
    assert_eq!(resolve["actor"], "ann@example.com");
}

#[tokio::test]
async fn going_offline_in_the_workspace_gives_an_offered_ticket_back_to_the_queue() {
    let app = workspace_app().await;
    let (ann_id, ann_token) = app.create_user("ann@example.com", "agent", &[]).await;
    app.set_presence(&ann_id, &ann_token, "online").await;
    let c = app.customer_says("dan", "I want to talk to a human").await;
    let conversation = c["conversation_id"].as_str().unwrap().to_owned();
    app.handoff_with_status(&conversation, "assigned").await;
    let ann = app.sign_in("ann@example.com", PASSWORD).await;
    let (status, _) = app
        .submit(&ann, "/workspace/presence", &[("status", "offline")])
        .await;
    assert_eq!(status, 303);
    let h = app.handoff_with_status(&conversation, "queued").await;
    assert!(h["assigned_agent_id"].is_null(), "{h}");
}

#[tokio::test]
async fn an_agent_gets_the_offer_live_accepts_with_a_key_and_the_reply_reaches_the_customers_widget()
 {
    let app = workspace_app().await;
    let (ann_id, ann_token) = app.create_user("ann@example.com", "agent", &[]).await;
    app.set_presence(&ann_id, &ann_token, "online").await;

    let mut agent = Browser::launch().await;
    agent.viewport(1280, 800).await;
    agent
        .sign_in(
            &app.url("/login"),
            "ann@example.com",
            PASSWORD,
            "/workspace",
        )
        .await;
    agent.eval("window.sameDocument = true").await;
    agent
        .wait_for(
            "the inbox stream to connect",
            "document.querySelector('[data-streamed]') !== null",
        )
        .await;

    // The customer, in another browser, opens the widget and asks for a person.
    let mut customer = Browser::launch().await;
    customer.goto(&app.url("/")).await;
    customer
        .eval("document.querySelector('.baton-launcher').click(); true")
        .await;
    customer
        .wait_for(
            "the widget's conversation",
            "localStorage.length > 0 && document.querySelector('.baton-form input') !== null",
        )
        .await;
    customer
        .eval(
            "document.querySelector('.baton-form input').value = 'I want to talk to a human';
             document.querySelector('.baton-form').requestSubmit(); true",
        )
        .await;

    agent
        .wait_for(
            "the offer to pop up without a reload",
            "document.querySelector('[data-offer]') !== null && window.sameDocument === true",
        )
        .await;
    agent
        .screenshot(&screenshot_path("workspace-offer.png"))
        .await;
    // "a" accepts.
    agent
        .eval(
            "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'a', bubbles: true})); true",
        )
        .await;
    agent
        .wait_for(
            "the ticket page",
            "location.pathname.startsWith('/workspace/tickets/') && document.getElementById('reply-text') !== null",
        )
        .await;
    // Usable on a 1280x800 laptop: nothing wider than the screen, the composer in view.
    let fits = agent
        .eval(
            "document.documentElement.scrollWidth <= 1280 &&
             document.getElementById('reply-text').getBoundingClientRect().bottom <= 800",
        )
        .await;
    assert_eq!(
        fits,
        json!(true),
        "the ticket page must fit a 1280x800 screen"
    );
    agent
        .screenshot(&screenshot_path("workspace-ticket.png"))
        .await;

    // Ctrl+Enter sends.
    agent
        .eval(
            "const box = document.getElementById('reply-text');
             box.value = 'Hi, I am Ann. I have read everything you wrote.';
             box.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', ctrlKey: true, bubbles: true})); true",
        )
        .await;
    agent
        .wait_for(
            "the reply in the transcript",
            "document.querySelector('.transcript') !== null && document.querySelector('.transcript').textContent.includes('I have read everything')",
        )
        .await;
    customer
        .wait_for(
            "the agent's reply in the widget",
            "Array.from(document.querySelectorAll('.baton-msg[data-author=agent]')).some(m => m.textContent.includes('I have read everything'))",
        )
        .await;
    customer
        .screenshot(&screenshot_path("workspace-widget.png"))
        .await;
}

#[tokio::test]
async fn hostile_chat_text_and_email_html_never_run_in_the_ticket_view() {
    let app = spawn_app_with(|s| {
        s.admin_email = Some(ADMIN_EMAIL.into());
        s.admin_password = Some(PASSWORD.to_owned().into());
        s.support_address = Some("support@example.com".into());
    })
    .await;
    let chat = app
        .customer_says(
            "mallory",
            "<script>window.__pwned = 'chat-script'</script><img src=x onerror=\"window.__pwned='chat-img'\"> I want to talk to a human",
        )
        .await;
    let chat_conversation = chat["conversation_id"].as_str().unwrap().to_owned();
    let chat_ticket = app.handoff_with_status(&chat_conversation, "queued").await;

    let raw = "From: Mallory <mallory@evil.example>\r\nTo: support@example.com\r\nSubject: help\r\n\
               Message-ID: <xss-1@evil.example>\r\nMIME-Version: 1.0\r\n\
               Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n\
               Content-Type: text/plain; charset=utf-8\r\n\r\nI want to talk to a human\r\n--b\r\n\
               Content-Type: text/html; charset=utf-8\r\n\r\n\
               <p>Hello</p><script>window.__pwned='mail-script'</script>\
               <img src=\"https://tracker.evil.example/pixel.gif\" onerror=\"window.__pwned='mail-img'\">\
               <a href=\"javascript:window.__pwned='mail-link'\" id=\"bad-link\">click</a>\
               <svg onload=\"window.__pwned='mail-svg'\"></svg>\
               <iframe src=\"https://evil.example\"></iframe>\
               <form action=\"https://evil.example\"><input name=q></form>\
               <div style=\"background:url(https://tracker.evil.example/css)\" onmouseover=\"window.__pwned='mail-hover'\">hover</div>\r\n--b--\r\n";
    let r = app
        .client
        .post(app.url("/ingest/email"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let mail: Value = r.json().await.unwrap();
    let mail_conversation = mail["conversation_id"].as_str().unwrap().to_owned();
    let mail_ticket = eventually("the email's ticket", || async {
        let c = app.conversation(&mail_conversation).await;
        c["handoff"]["id"].as_str().map(str::to_owned)
    })
    .await;

    let mut browser = Browser::launch().await;
    browser
        .sign_in(&app.url("/login"), ADMIN_EMAIL, PASSWORD, "/dashboard")
        .await;
    for ticket in [chat_ticket["id"].as_str().unwrap().to_owned(), mail_ticket] {
        browser
            .goto(&app.url(&format!("/workspace/tickets/{ticket}")))
            .await;
        browser
            .wait_for(
                "the transcript",
                "document.querySelector('.transcript') !== null",
            )
            .await;
        // Give anything that could run (image errors, SVG load) its chance, then look.
        browser
            .eval("new Promise(r => setTimeout(() => r(true), 300))")
            .await;
        let found = browser
            .eval(
                "JSON.stringify({
                   pwned: window.__pwned || null,
                   scripts: document.querySelectorAll('.transcript script').length,
                   handlers: Array.from(document.querySelectorAll('.transcript *'))
                     .filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length,
                   remote: Array.from(document.querySelectorAll('.transcript img'))
                     .filter(i => (i.getAttribute('src') || '').startsWith('http')).length,
                   js_links: Array.from(document.querySelectorAll('.transcript a'))
                     .filter(a => (a.getAttribute('href') || '').toLowerCase().startsWith('javascript')).length,
                   frames: document.querySelectorAll('.transcript iframe, .transcript form').length,
                   text: document.querySelector('.transcript').textContent
                 })",
            )
            .await;
        let found: Value = serde_json::from_str(found.as_str().unwrap()).unwrap();
        assert_eq!(found["pwned"], Value::Null, "{found}");
        for key in ["scripts", "handlers", "remote", "js_links", "frames"] {
            assert_eq!(found[key], 0, "{key}: {found}");
        }
        if ticket == chat_ticket["id"].as_str().unwrap() {
            assert!(
                found["text"].as_str().unwrap().contains("<script>"),
                "the chat text shows as text: {found}"
            );
        } else {
            assert!(found["text"].as_str().unwrap().contains("Hello"), "{found}");
        }
    }
}

#[tokio::test]
async fn an_agent_answers_a_chat_by_email_after_the_customer_left_and_the_answer_threads_back() {
    let smtp = crate::mail_servers::start_smtp(0);
    let smtp_url = smtp.url();
    let app = spawn_app_with(|s| {
        s.support_address = Some("support@example.com".into());
        s.smtp_url = Some(smtp_url.into());
    })
    .await;
    let (ann_id, ann_token) = app.create_user("ann@example.com", "agent", &[]).await;
    app.set_presence(&ann_id, &ann_token, "online").await;
    // A chat customer who gave their email address.
    let r = app
        .post_json(
            "/api/v1/messages",
            ADMIN_TOKEN,
            json!({"sender": {"external_id": "erin-chat", "name": "Erin", "email": "erin@customer.example"},
                   "text": "I want to talk to a human"}),
        )
        .await;
    assert!(r.status().is_success());
    let body: Value = r.json().await.unwrap();
    let conversation = body["conversation_id"].as_str().unwrap().to_owned();
    let h = app.handoff_with_status(&conversation, "assigned").await;
    let id = h["id"].as_str().unwrap().to_owned();
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{id}/accept"),
            &ann_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);

    let ann = app.sign_in("ann@example.com", PASSWORD).await;
    let ticket = format!("/workspace/tickets/{id}");
    let (_, page) = app.page(&ann, &ticket).await;
    assert!(
        page.contains(r#"<option value="email">Email</option>"#),
        "{page}"
    );
    let (status, location) = app
        .submit(
            &ann,
            &format!("{ticket}/reply"),
            &[
                (
                    "text",
                    "Sorry we missed you in the chat: your refund is done.",
                ),
                ("channel", "email"),
            ],
        )
        .await;
    assert_eq!((status, location.as_str()), (303, ticket.as_str()));

    let sent = smtp.wait_for(1, std::time::Duration::from_secs(30)).await;
    let mail = baton::channels::email::parse::parse(&sent[0]).unwrap();
    assert_eq!(mail.to[0].address, "erin@customer.example");
    assert!(
        mail.text
            .unwrap_or_default()
            .contains("your refund is done")
    );
    let reply_address = mail.reply_to[0].address.clone();

    // Erin answers the mail: it lands in the same conversation, in front of the same agent.
    let raw = format!(
        "From: Erin <erin@customer.example>\r\nTo: <{reply_address}>\r\nSubject: Re: your message\r\n\
         Message-ID: <erin-1@customer.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThanks, got it!\r\n"
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
    assert_eq!(r.status().as_u16(), 202);
    let receipt: Value = r.json().await.unwrap();
    assert_eq!(receipt["conversation_id"], conversation.as_str());
    app.message_where(&conversation, |m| m["text"] == "Thanks, got it!")
        .await;

    // Without an address, there is no email option and the API refuses it.
    let r = app
        .post_json(
            "/api/v1/messages",
            ADMIN_TOKEN,
            json!({"sender": {"external_id": "nomail"}, "text": "I want to talk to a human"}),
        )
        .await;
    let other: Value = r.json().await.unwrap();
    let other_conversation = other["conversation_id"].as_str().unwrap().to_owned();
    let h = app
        .handoff_with_status(&other_conversation, "assigned")
        .await;
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{}/accept", h["id"].as_str().unwrap()),
            &ann_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{other_conversation}/messages"),
            &ann_token,
            json!({"text": "hello", "channel": "email"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 409);
}

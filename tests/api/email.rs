//! The email channel against real mail servers: a private dovecot holds the mailbox Baton
//! polls, an aiosmtpd server captures what Baton sends.

use std::time::Duration;

use baton::channels::email::parse::{ParsedEmail, parse};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, eventually, spawn_app_with};
use crate::mail_servers::{SmtpCapture, start_imap, start_smtp};

const SUPPORT: &str = "support@example.com";
const WAIT: Duration = Duration::from_secs(30);

fn mail(from: &str, subject: &str, message_id: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: Support <{SUPPORT}>\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: Tue, 24 Nov 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n{extra_headers}\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
}

async fn spawn_email_app(smtp: Option<&SmtpCapture>) -> TestApp {
    let smtp_url = smtp.map(|s| s.url());
    spawn_app_with(|s| {
        s.support_address = Some(SUPPORT.into());
        s.support_name = "Acme Support".into();
        s.smtp_url = smtp_url.map(Into::into);
        s.ingest_token = Some("test-ingest-token".to_owned().into());
    })
    .await
}

impl TestApp {
    async fn post_mail(&self, token: &str, raw: &str) -> reqwest::Response {
        self.client
            .post(self.url("/ingest/email"))
            .bearer_auth(token)
            .header("content-type", "message/rfc822")
            .body(raw.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn mail_in(&self, raw: &str) -> Value {
        let r = self.post_mail(ADMIN_TOKEN, raw).await;
        assert_eq!(r.status(), 202);
        r.json().await.unwrap()
    }
}

fn parsed(raw: &[u8]) -> ParsedEmail {
    parse(raw).expect("Baton's outgoing mail parses")
}

#[tokio::test]
async fn a_mail_opens_a_conversation_and_the_bot_answers_by_mail_that_threads() {
    let smtp = start_smtp(0);
    let app = spawn_email_app(Some(&smtp)).await;
    let r = app
        .mail_in(&mail(
            "Ann Example <ann@customer.example>",
            "Opening hours?",
            "first@customer.example",
            "",
            "What are your opening hours?",
        ))
        .await;
    assert_eq!(r["duplicate"], false);
    assert_eq!(r["thread_match"], "new");
    let conversation = r["conversation_id"].as_str().unwrap();
    let c = app.conversation(conversation).await;
    assert_eq!(c["channel"], "email");
    assert_eq!(c["messages"][0]["text"], "What are your opening hours?");

    let sent = smtp.wait_for(1, WAIT).await;
    let out = parsed(&sent[0]);
    assert_eq!(out.to[0].address, "ann@customer.example");
    assert_eq!(out.in_reply_to, ["first@customer.example"]);
    assert_eq!(out.references, ["first@customer.example"]);
    assert_eq!(out.subject.as_deref(), Some("Re: Opening hours?"));
    let reply_to = &out.reply_to[0].address;
    assert!(
        reply_to.starts_with("support+") && reply_to.ends_with("@example.com"),
        "{reply_to}"
    );
    assert!(
        out.text.unwrap().contains("9:00 to 18:00"),
        "the FAQ bot's answer"
    );
    assert!(out.html.is_some(), "text and HTML alternatives");
    let raw = String::from_utf8_lossy(&sent[0]);
    assert!(
        raw.contains("Auto-Submitted: auto-replied"),
        "the bot's mail is marked automatic"
    );
    assert_eq!(
        smtp.envelopes()[0]["rcpt_tos"],
        json!(["ann@customer.example"])
    );
}

#[tokio::test]
async fn replies_thread_by_reply_address_by_headers_and_by_subject_but_never_across_senders() {
    let smtp = start_smtp(0);
    let app = spawn_email_app(Some(&smtp)).await;
    let first = app
        .mail_in(&mail(
            "bo@customer.example",
            "Broken printer",
            "p1@customer.example",
            "",
            "It is broken",
        ))
        .await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let sent = smtp.wait_for(1, WAIT).await;
    let out = parsed(&sent[0]);
    let reply_address = out.reply_to[0].address.clone();
    let our_id = out.message_id.unwrap();

    // 1. Only the reply address (a client that drops the headers, a new subject).
    let r = app
        .mail_in(
            &mail(
                "bo@customer.example",
                "other words",
                "p2@customer.example",
                "",
                "By address",
            )
            .replace(
                &format!("To: Support <{SUPPORT}>"),
                &format!("To: <{reply_address}>"),
            ),
        )
        .await;
    assert_eq!(
        (
            r["conversation_id"].as_str().unwrap(),
            r["thread_match"].as_str().unwrap()
        ),
        (conversation.as_str(), "reply_address")
    );

    // 2. In-Reply-To naming the mail Baton sent.
    let r = app
        .mail_in(&mail(
            "bo@customer.example",
            "anything",
            "p3@customer.example",
            &format!("In-Reply-To: <{our_id}>\r\n"),
            "By header",
        ))
        .await;
    assert_eq!(
        (
            r["conversation_id"].as_str().unwrap(),
            r["thread_match"].as_str().unwrap()
        ),
        (conversation.as_str(), "in_reply_to")
    );

    // 3. References only, the known id not first: every value counts.
    let r = app
        .mail_in(&mail(
            "bo@customer.example",
            "anything else",
            "p4@customer.example",
            "References: <unknown@elsewhere> <p1@customer.example> <also-unknown@x>\r\n",
            "By references",
        ))
        .await;
    assert_eq!(
        (
            r["conversation_id"].as_str().unwrap(),
            r["thread_match"].as_str().unwrap()
        ),
        (conversation.as_str(), "references")
    );

    // 4. Same sender, "Re:" and a ticket tag on the same subject.
    let r = app
        .mail_in(&mail(
            "bo@customer.example",
            "RE: [#12] Broken printer",
            "p5@customer.example",
            "",
            "By subject",
        ))
        .await;
    assert_eq!(
        (
            r["conversation_id"].as_str().unwrap(),
            r["thread_match"].as_str().unwrap()
        ),
        (conversation.as_str(), "subject")
    );

    // 5. Someone else with the same subject gets a conversation of their own.
    let r = app
        .mail_in(&mail(
            "eve@other.example",
            "Re: Broken printer",
            "e1@other.example",
            "",
            "Me too",
        ))
        .await;
    assert_ne!(r["conversation_id"].as_str().unwrap(), conversation);
    assert_eq!(r["thread_match"], "new");
}

#[tokio::test]
async fn auto_replies_and_bounces_are_kept_but_never_answered() {
    let smtp = start_smtp(0);
    let app = spawn_email_app(Some(&smtp)).await;
    let first = app
        .mail_in(&mail(
            "cy@customer.example",
            "Question",
            "q1@customer.example",
            "",
            "Do you ship abroad?",
        ))
        .await;
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    let sent = smtp.wait_for(1, WAIT).await;
    let ours = parsed(&sent[0]).message_id.unwrap();

    let ooo = mail(
        "cy@customer.example",
        "Automatic reply: Re: Question",
        "ooo1@customer.example",
        &format!("Auto-Submitted: auto-replied\r\nIn-Reply-To: <{ours}>\r\n"),
        "I am out of the office until Monday. I want to talk to a human.",
    );
    let r = app.mail_in(&ooo).await;
    assert_eq!(r["conversation_id"].as_str().unwrap(), conversation);
    let bounce = mail(
        "MAILER-DAEMON@mx.customer.example",
        "Undelivered Mail Returned to Sender",
        "b1@mx.customer.example",
        &format!("Auto-Submitted: auto-replied\r\nIn-Reply-To: <{ours}>\r\n"),
        "This is the mail system. Your message could not be delivered.",
    );
    let r = app.mail_in(&bounce).await;
    assert_eq!(r["conversation_id"].as_str().unwrap(), conversation);
    app.pipeline_idle().await;
    app.services.dispatcher.deliver_due().await.unwrap();

    let c = app.conversation(&conversation).await;
    assert_eq!(
        c["status"], "bot",
        "no handoff from an auto-reply, whatever it says"
    );
    let texts: Vec<&str> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["author_kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["customer", "bot", "customer", "customer"],
        "stored, and not answered"
    );
    assert_eq!(
        smtp.envelopes().len(),
        1,
        "no mail went back to an auto-responder"
    );
}

#[tokio::test]
async fn the_same_message_id_is_stored_once() {
    let app = spawn_email_app(None).await;
    let raw = mail(
        "di@customer.example",
        "Twice",
        "dup@customer.example",
        "",
        "Hello",
    );
    let a = app.mail_in(&raw).await;
    let b = app.mail_in(&raw).await;
    assert_eq!(b["duplicate"], true);
    assert_eq!(a["message_id"], b["message_id"]);
    let c = app
        .conversation(a["conversation_id"].as_str().unwrap())
        .await;
    let inbound = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "in")
        .count();
    assert_eq!(inbound, 1);
}

#[tokio::test]
async fn ingest_takes_admin_and_ingest_tokens_and_an_ingest_token_opens_nothing_else() {
    let app = spawn_email_app(None).await;
    let raw = mail(
        "fa@customer.example",
        "Hi",
        "t1@customer.example",
        "",
        "Hello",
    );
    assert_eq!(app.post_mail("", &raw).await.status(), 401);
    let (_, agent_token) = app.create_agent("Gus", true).await;
    assert_eq!(app.post_mail(&agent_token, &raw).await.status(), 403);
    assert_eq!(app.post_mail("test-ingest-token", &raw).await.status(), 202);
    let (status, body) = app
        .get_json("/api/v1/conversations", "test-ingest-token")
        .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn bad_mail_gets_a_clear_json_4xx_and_stores_nothing() {
    let app = spawn_app_with(|s| {
        s.support_address = Some(SUPPORT.into());
        s.max_email_bytes = 64 * 1024;
    })
    .await;
    let ok = mail(
        "ha@customer.example",
        "Hi",
        "x1@customer.example",
        "",
        "Hello",
    );
    let wrong_type = app
        .client
        .post(app.url("/ingest/email"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(ok.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    let cases = [
        ("".to_owned(), 422),
        ("\u{0}\u{1}garbage without headers".to_owned(), 422),
        (ok.replace("From: ha@customer.example\r\n", ""), 422),
        (
            ok.replace("ha@customer.example", "support@example.com"),
            422,
        ),
        (format!("{ok}{}", "x".repeat(70 * 1024)), 413),
    ];
    for (raw, status) in cases {
        let r = app.post_mail(ADMIN_TOKEN, &raw).await;
        assert_eq!(r.status(), status, "{}", &raw[..raw.len().min(60)]);
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let (_, list) = app.get_json("/api/v1/conversations", ADMIN_TOKEN).await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_refused_send_is_retried_and_visible_as_pending_until_it_goes_out() {
    let smtp = start_smtp(2);
    let app = spawn_email_app(Some(&smtp)).await;
    let r = app
        .mail_in(&mail(
            "ivy@customer.example",
            "Hello",
            "r1@customer.example",
            "",
            "What are your opening hours?",
        ))
        .await;
    let conversation = r["conversation_id"].as_str().unwrap().to_owned();
    let bot = app
        .message_where(&conversation, |m| m["author_kind"] == "bot")
        .await;
    assert_ne!(bot["delivery_status"], "failed");
    let sent = smtp.wait_for(1, WAIT).await;
    assert_eq!(parsed(&sent[0]).in_reply_to, ["r1@customer.example"]);
    eventually("the reply is marked sent", || async {
        let m = app
            .message_where(&conversation, |m| m["author_kind"] == "bot")
            .await;
        (m["delivery_status"] == "sent").then_some(())
    })
    .await;
}

/// The acceptance path: the customer mails support (into the IMAP mailbox Baton polls), asks
/// for a person, the agent answers by mail, and the customer's reply to that mail, built from
/// it as a mail client would, lands in the same conversation with the quote trimmed.
#[tokio::test]
async fn a_customers_mail_reaches_an_agent_and_their_reply_threads_back_with_the_quote_trimmed() {
    let imap = start_imap();
    let smtp = start_smtp(0);
    let imap_url = imap.url();
    let smtp_url = smtp.url();
    let app = spawn_app_with(|s| {
        s.support_address = Some(SUPPORT.into());
        s.smtp_url = Some(smtp_url.into());
        s.imap_url = Some(imap_url.into());
        s.imap_poll_ms = 100;
    })
    .await;
    let (agent, agent_token) = app.create_agent("Jo", true).await;

    imap.append(
        "INBOX",
        mail(
            "Kim Customer <kim@customer.example>",
            "Refund for order 1234",
            "kim-1@customer.example",
            "",
            "I want to talk to a human about my refund.",
        )
        .as_bytes(),
    );
    let conversation = eventually("the poller imports the mail", || async {
        let (_, list) = app
            .get_json("/api/v1/conversations?channel=email", ADMIN_TOKEN)
            .await;
        list["conversations"][0]["id"].as_str().map(str::to_owned)
    })
    .await;
    let h = app.handoff_with_status(&conversation, "assigned").await;
    assert_eq!(h["assigned_agent_id"].as_str().unwrap(), agent);
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{}/accept", h["id"].as_str().unwrap()),
            &agent_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post_json(
            &format!("/api/v1/conversations/{conversation}/messages"),
            &agent_token,
            json!({"text": "Hi Kim, I have refunded order 1234."}),
        )
        .await;
    assert!(r.status().is_success());

    // The handoff notice and the agent's answer go out by mail (a waiting notice may come in
    // between, depending on when the router's tick runs); find the agent's.
    let mut expected = 2;
    let (raw_out, out) = loop {
        let sent = smtp.wait_for(expected, WAIT).await;
        expected = sent.len() + 1;
        let agent_mail = sent
            .into_iter()
            .map(|raw| (parsed(&raw), raw))
            .find(|(m, _)| {
                m.text
                    .as_deref()
                    .unwrap_or_default()
                    .contains("refunded order 1234")
            });
        if let Some((out, raw)) = agent_mail {
            break (raw, out);
        }
    };
    let raw_out = &raw_out;
    assert!(
        !String::from_utf8_lossy(raw_out).contains("Auto-Submitted"),
        "a person's reply"
    );
    assert_eq!(out.in_reply_to, ["kim-1@customer.example"]);
    assert_eq!(
        out.references.first().map(String::as_str),
        Some("kim-1@customer.example")
    );
    assert_eq!(out.subject.as_deref(), Some("Re: Refund for order 1234"));
    assert_eq!(out.to[0].address, "kim@customer.example");

    // Kim answers from her mail client: to the Reply-To address, In-Reply-To and References
    // from the mail she got, the old text quoted below.
    let ours = out.message_id.clone().unwrap();
    let mut references: Vec<String> = out.references.iter().map(|r| format!("<{r}>")).collect();
    references.push(format!("<{ours}>"));
    let reply = format!(
        "From: Kim Customer <kim@customer.example>\r\nTo: {to}\r\nSubject: Re: {subject}\r\n\
         Message-ID: <kim-2@customer.example>\r\nIn-Reply-To: <{ours}>\r\nReferences: {refs}\r\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Thank you, that was quick!\r\n\r\nOn Tue, 24 Nov 2026 at 09:30, Acme Support <{SUPPORT}> wrote:\r\n\
         > Hi Kim, I have refunded order 1234.\r\n",
        to = out.reply_to[0].address,
        subject = out.subject.as_deref().unwrap().trim_start_matches("Re: "),
        refs = references.join(" "),
    );
    imap.append("INBOX", reply.as_bytes());
    let answer = app
        .message_where(&conversation, |m| {
            m["direction"] == "in" && m["text"] != "I want to talk to a human about my refund."
        })
        .await;
    assert_eq!(answer["text"], "Thank you, that was quick!");
    let (_, list) = app
        .get_json("/api/v1/conversations?channel=email", ADMIN_TOKEN)
        .await;
    assert_eq!(
        list["conversations"].as_array().unwrap().len(),
        1,
        "no second conversation"
    );
}

#[tokio::test]
async fn the_imap_poller_imports_each_mail_once_across_restarts() {
    let imap = start_imap();
    let imap_url = imap.url();
    let app = spawn_app_with(|s| {
        s.support_address = Some(SUPPORT.into());
        s.imap_url = Some(imap_url.into());
        // Long enough that only the test drives the poller.
        s.imap_poll_ms = 3_600_000;
    })
    .await;
    let poller = app.services.imap.clone().unwrap();
    for i in 0..3 {
        imap.append(
            "INBOX",
            mail(
                "lu@customer.example",
                &format!("Mail {i}"),
                &format!("lu-{i}@customer.example"),
                "",
                "Hello",
            )
            .as_bytes(),
        );
    }
    // The worker polled once at start-up (maybe after some of the appends): step until all
    // three are in, however they were split between the two.
    eventually("three mails imported", || async {
        poller.poll_once().await.unwrap();
        let (_, list) = app
            .get_json("/api/v1/conversations?channel=email", ADMIN_TOKEN)
            .await;
        (list["conversations"].as_array().unwrap().len() == 3).then_some(())
    })
    .await;
    let app = app.restart().await;
    let poller = app.services.imap.clone().unwrap();
    // Polls are serialized, so once this one returns the worker's start-up poll has either
    // run or will find the same position: neither may import anything.
    assert_eq!(
        poller.poll_once().await.unwrap(),
        0,
        "nothing is imported twice"
    );
    imap.append(
        "INBOX",
        mail(
            "lu@customer.example",
            "Mail 3",
            "lu-3@customer.example",
            "",
            "Hello",
        )
        .as_bytes(),
    );
    // The worker's start-up poll may be the one that picks Mail 3 up; either way it is
    // imported exactly once.
    poller.poll_once().await.unwrap();
    let (_, list) = app
        .get_json("/api/v1/conversations?channel=email", ADMIN_TOKEN)
        .await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 4);
    assert_eq!(poller.poll_once().await.unwrap(), 0, "and only once");
    assert_eq!(imap.count("INBOX"), 4, "mail stays on the server");
}

#[tokio::test]
async fn a_reply_to_a_resolved_conversation_reopens_it_or_starts_a_linked_one() {
    for (policy, same) in [
        (baton::model::ReopenPolicy::Reopen, true),
        (baton::model::ReopenPolicy::New, false),
    ] {
        let app = spawn_app_with(|s| {
            s.support_address = Some(SUPPORT.into());
            s.email_reopen = policy;
        })
        .await;
        let (agent, _) = app.create_agent("Max", true).await;
        let first = app
            .mail_in(&mail(
                "mo@customer.example",
                "Help",
                "mo-1@customer.example",
                "",
                "I want to talk to a human",
            ))
            .await;
        let conversation = first["conversation_id"].as_str().unwrap().to_owned();
        let h = app.handoff_with_status(&conversation, "assigned").await;
        let r = app
            .post_json(
                &format!("/api/v1/handoffs/{}/resolve", h["id"].as_str().unwrap()),
                ADMIN_TOKEN,
                json!({"agent_id": agent}),
            )
            .await;
        assert!(r.status().is_success());
        assert_eq!(app.conversation(&conversation).await["status"], "resolved");
        let again = app
            .mail_in(&mail(
                "mo@customer.example",
                "Re: Help",
                "mo-2@customer.example",
                "In-Reply-To: <mo-1@customer.example>\r\n",
                "One more thing",
            ))
            .await;
        assert_eq!(
            again["conversation_id"].as_str().unwrap() == conversation,
            same,
            "{policy:?}"
        );
        let c = app
            .conversation(again["conversation_id"].as_str().unwrap())
            .await;
        assert_eq!(
            c["status"], "bot",
            "{policy:?}: the customer is answered again"
        );
    }
}

#[tokio::test]
async fn attachments_are_stored_and_served_as_downloads_and_html_is_sanitized() {
    let app = spawn_email_app(None).await;
    let raw = format!(
        "From: nia@customer.example\r\nTo: {SUPPORT}\r\nSubject: Photo\r\nMessage-ID: <att-1@customer.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
         --m\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p onclick=\"steal()\">See the <b>photo</b><script>alert(1)</script><img src=\"https://tracker.example/p.gif\"></p>\r\n\
         --m\r\nContent-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--m--\r\n"
    );
    let r = app.mail_in(&raw).await;
    let c = app
        .conversation(r["conversation_id"].as_str().unwrap())
        .await;
    let m = &c["messages"][0];
    let html = m["html"].as_str().unwrap();
    assert!(html.contains("<b>photo</b>"), "{html}");
    for bad in ["script", "onclick", "tracker.example"] {
        assert!(!html.contains(bad), "{bad} in {html}");
    }
    let a = &m["attachments"][0];
    assert_eq!(
        (a["name"].as_str(), a["size"].as_u64()),
        (Some("notes.txt"), Some(11))
    );
    let url = a["url"].as_str().unwrap();
    let file = app
        .client
        .get(app.url(url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert!(
        file.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(file.bytes().await.unwrap().as_ref(), b"hello world");
    let (_, agent_token) = app.create_agent("Oz", true).await;
    let denied = app
        .client
        .get(app.url(url))
        .bearer_auth(&agent_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        denied.status(),
        404,
        "an agent who does not own the conversation sees nothing"
    );
}

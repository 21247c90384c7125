use serde_json::json;

use crate::access::PASSWORD;
use crate::helpers::{ADMIN_TOKEN, eventually, spawn_app};

/// The figure shown for a `data-metric` on the page (the text inside, links stripped).
fn metric(html: &str, name: &str) -> String {
    let marker = format!(r#"data-metric="{name}">"#);
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no metric {name}"))
        + marker.len();
    let inner = html[start..].split("</p>").next().unwrap();
    let mut text = String::new();
    let mut in_tag = false;
    for c in inner.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.trim().to_owned()
}

#[tokio::test]
async fn the_dashboard_shows_the_period_by_channel_with_filters_in_the_url_and_drills_down_to_the_handoffs()
 {
    let app = spawn_app().await;
    // Two handoffs on the API channel are assigned, one on web chat waits (no capacity).
    let (_, _) = app.create_agent("Bea", true).await;
    for who in ["d1", "d2"] {
        let c = app.customer_says(who, "human").await["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.handoff_with_status(&c, "assigned").await;
    }
    let chat: serde_json::Value = app
        .client
        .post(app.url("/widget/v1/conversations"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = chat["conversation_id"].as_str().unwrap();
    app.client
        .post(app.url(&format!("/widget/v1/conversations/{id}/messages")))
        .bearer_auth(chat["token"].as_str().unwrap())
        .json(&json!({"text": "talk to an agent please"}))
        .send()
        .await
        .unwrap();
    app.handoff_with_status(id, "queued").await;
    app.ship_events().await;

    let page = |path: &'static str| {
        let app = &app;
        async move {
            let r = app
                .client
                .get(app.url(path))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path}");
            r.text().await.unwrap()
        }
    };
    let html = eventually("the dashboard to count three handoffs", || async {
        let html = page("/dashboard").await;
        (metric(&html, "requested") == "3").then_some(html)
    })
    .await;
    // The live panel comes from the store: the web chat ticket waits.
    let live = r#"data-live="queued-now">"#;
    let at = html.find(live).unwrap() + live.len();
    assert_eq!(html[at..].split('<').next().unwrap().trim(), "1");
    // Breakdown rows per channel, each metric with its definition, and no customer words.
    assert!(
        html.contains(r#"<tr data-key="api"><td>api</td><td class="num">2</td>"#),
        "{html}"
    );
    assert!(html.contains(r#"<tr data-key="web_chat"><td>web_chat</td><td class="num">1</td>"#));
    assert!(
        html.contains("Handoffs requested in the period"),
        "help text is on the page"
    );
    assert!(
        !html.contains(">human<") && !html.contains("talk to an agent please"),
        "no message bodies"
    );
    assert!(!html.contains("<script>"), "no inline scripts");
    assert!(html.contains("<svg"), "charts are drawn on the server");

    // The filters live in the URL: web chat alone has one handoff.
    let filtered = page("/dashboard?range=today&channel=web_chat").await;
    assert_eq!(metric(&filtered, "requested"), "1");
    assert!(filtered.contains(r#"<option value="web_chat" selected>"#));
    // The report part refreshes alone, with the same filters.
    let fragment = page("/dashboard/report?channel=web_chat").await;
    assert!(fragment.trim_start().starts_with(r#"<section id="report""#));
    assert_eq!(metric(&fragment, "requested"), "1");

    // From the figure to the handoffs behind it, each linking to its ticket.
    let drill = page("/dashboard/handoffs?drill=requested&range=today").await;
    assert_eq!(drill.matches("<tr data-handoff=").count(), 3, "{drill}");
    assert!(drill.contains("/api/v1/handoffs/"));
    assert!(drill.contains("format=csv"));
}

#[tokio::test]
async fn the_dashboard_asks_for_a_login_and_a_manager_gets_in() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/dashboard");
    // The filters survive the detour through the login page.
    let r = app
        .client
        .get(app.url("/dashboard?range=7d"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        "/login?next=/dashboard%3Frange%3D7d"
    );

    app.create_user("mia@example.com", "manager", &["billing"])
        .await;
    let session = app.sign_in("mia@example.com", PASSWORD).await;
    let page = app
        .client
        .get(app.url("/dashboard"))
        .header("cookie", session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("Handoffs"));
}

#[tokio::test]
async fn an_agent_token_does_not_open_the_dashboard() {
    let app = spawn_app().await;
    let (_, token) = app.create_agent("Cy", false).await;
    let r = app
        .client
        .get(app.url("/dashboard"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn the_live_panel_changes_without_a_reload_when_a_handoff_happens() {
    use crate::browser::Browser;
    let app = spawn_app().await;
    app.create_agent("Uma", false).await;
    let mut browser = Browser::launch().await;
    app.create_user("mia@example.com", "manager", &[]).await;
    browser
        .sign_in(
            &app.url("/login"),
            "mia@example.com",
            PASSWORD,
            "/dashboard",
        )
        .await;
    let queued = "document.querySelector('[data-live=queued-now]').textContent.trim()";
    assert_eq!(browser.eval(queued).await, "0");
    // A marker that survives only if the page is never reloaded.
    browser.eval("window.sameDocument = true").await;
    browser
        .wait_for(
            "the live stream to connect",
            "document.querySelector('[data-live=streamed]') !== null",
        )
        .await;

    let c = app
        .customer_says("wendy", "I want to talk to a person")
        .await;
    app.handoff_with_status(c["conversation_id"].as_str().unwrap(), "queued")
        .await;
    browser
        .wait_for(
            "the live panel to show the queued handoff",
            &format!("{queued} === '1'"),
        )
        .await;
    assert_eq!(browser.eval("window.sameDocument === true").await, true);
    browser
        .screenshot(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs/screenshots/dashboard.png"),
        )
        .await;
}

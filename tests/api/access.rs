//! Accounts and access control: sign-in with a password, sessions, CSRF, roles against every
//! route, team scoping, tokens per user, rate limits, security headers and the audit log.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, spawn_app_with};

pub const ADMIN_EMAIL: &str = "boss@example.com";
pub const PASSWORD: &str = "correct horse battery staple";

/// A signed-in browser: its session cookie and the CSRF token its pages carry.
pub struct SignedIn {
    pub cookie: String,
    pub csrf: String,
}

impl TestApp {
    /// Signs in through the login form; panics unless it works.
    pub async fn sign_in(&self, email: &str, password: &str) -> SignedIn {
        let r = self
            .client
            .post(self.url("/login"))
            .form(&[
                ("email", email),
                ("password", password),
                ("next", "/account"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "sign-in of {email} failed");
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let page = self
            .client
            .get(self.url("/account"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = page
            .split(r#"name="csrf" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the account page carries the CSRF token")
            .to_owned();
        SignedIn { cookie, csrf }
    }

    /// Creates a user through the API as the admin; returns (id, API token).
    pub async fn create_user(&self, email: &str, role: &str, teams: &[&str]) -> (String, String) {
        let r = self
            .post_json(
                "/api/v1/users",
                ADMIN_TOKEN,
                json!({"email": email, "name": email.split('@').next().unwrap(), "role": role,
                       "password": PASSWORD, "teams": teams}),
            )
            .await;
        assert_eq!(r.status().as_u16(), 201);
        let user: Value = r.json().await.unwrap();
        let id = user["id"].as_str().unwrap().to_owned();
        let r = self
            .post_json(
                &format!("/api/v1/users/{id}/tokens"),
                ADMIN_TOKEN,
                json!({"label": "tests"}),
            )
            .await;
        assert_eq!(r.status().as_u16(), 201);
        let token: Value = r.json().await.unwrap();
        (id, token["token"].as_str().unwrap().to_owned())
    }

    /// Sends a request with a bearer token (or none); returns the status.
    async fn status_of(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> u16 {
        let mut r = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if method != "GET" {
            r = r.json(&body);
        }
        r.send().await.unwrap().status().as_u16()
    }
}

async fn app_with_admin() -> TestApp {
    spawn_app_with(|s| {
        s.admin_email = Some(ADMIN_EMAIL.into());
        s.admin_password = Some(PASSWORD.to_owned().into());
    })
    .await
}

#[tokio::test]
async fn a_person_signs_in_with_email_and_password_and_signs_out_with_the_csrf_token() {
    let app = app_with_admin().await;
    let bad = app
        .client
        .post(app.url("/login"))
        .form(&[("email", ADMIN_EMAIL), ("password", "wrong password!")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    assert!(bad.text().await.unwrap().contains("do not match"));
    // An unknown address gets the same answer as a wrong password.
    let unknown = app
        .client
        .post(app.url("/login"))
        .form(&[("email", "nobody@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 401);

    let good = app
        .client
        .post(app.url("/login"))
        .form(&[("email", "Boss@Example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(good.status().as_u16(), 303);
    let set_cookie = good.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(
        !set_cookie.contains(PASSWORD) && !set_cookie.contains(ADMIN_TOKEN),
        "the cookie carries a session id, nothing else"
    );
    let session = app.sign_in(ADMIN_EMAIL, PASSWORD).await;
    let dashboard = |cookie: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/dashboard"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(dashboard(session.cookie.clone()).await, 200);

    // Signing out needs the page's CSRF token: a forged form from elsewhere does nothing.
    let forged = app
        .client
        .post(app.url("/logout"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(dashboard(session.cookie.clone()).await, 200);
    let out = app
        .client
        .post(app.url("/logout"))
        .header("cookie", &session.cookie)
        .form(&[("csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(dashboard(session.cookie).await, 303, "the session is gone");
}

#[tokio::test]
async fn state_changing_requests_made_with_the_session_cookie_need_the_csrf_token() {
    let app = app_with_admin().await;
    let (agent, _) = app.create_user("ann@example.com", "agent", &[]).await;
    let ann = app.sign_in("ann@example.com", PASSWORD).await;
    let presence = |header: Option<(&'static str, String)>| {
        let app = &app;
        let cookie = ann.cookie.clone();
        let agent = agent.clone();
        async move {
            let mut r = app
                .client
                .put(app.url(&format!("/api/v1/agents/{agent}/presence")))
                .header("cookie", cookie)
                .json(&json!({"status": "online"}));
            if let Some((name, value)) = header {
                r = r.header(name, value);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(presence(None).await, 403, "no token");
    assert_eq!(
        presence(Some(("x-csrf-token", "csrf_forged".into()))).await,
        403,
        "a wrong token"
    );
    assert_eq!(
        presence(Some(("x-csrf-token", ann.csrf.clone()))).await,
        200
    );
    // A request from another site is refused even with the token (the browser names its origin).
    let cross = app
        .client
        .put(app.url(&format!("/api/v1/agents/{agent}/presence")))
        .header("cookie", &ann.cookie)
        .header("x-csrf-token", &ann.csrf)
        .header("origin", "https://evil.example")
        .json(&json!({"status": "online"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
}

/// Each role against each route: data for those allowed, a refusal (401/403) for the others.
#[tokio::test]
async fn every_role_gets_data_only_from_the_routes_and_tickets_it_may_see() {
    let app = spawn_app_with(|s| {
        s.admin_email = Some(ADMIN_EMAIL.into());
        s.admin_password = Some(PASSWORD.to_owned().into());
        s.queues = vec![
            serde_json::from_value(json!({"team": "billing"})).unwrap(),
            serde_json::from_value(json!({"team": "sales"})).unwrap(),
        ];
        s.escalation_rules = Some(
            serde_json::from_value(json!([
                {"name": "refunds", "when": {"keywords": ["refund"]}, "team": "billing"},
                {"name": "quotes", "when": {"keywords": ["quote"]}, "team": "sales"}
            ]))
            .unwrap(),
        );
    })
    .await;
    let (ann_id, ann) = app
        .create_user("ann@example.com", "agent", &["billing"])
        .await;
    let (_, sam) = app
        .create_user("sam@example.com", "agent", &["sales"])
        .await;
    let (mia_id, mia) = app
        .create_user("mia@example.com", "manager", &["billing"])
        .await;
    let billing_conv = app.customer_says("carl", "I want a refund").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let billing = app.handoff_with_status(&billing_conv, "queued").await;
    let billing = billing["id"].as_str().unwrap().to_owned();
    let sales_conv = app.customer_says("dora", "Can I get a quote?").await["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sales = app.handoff_with_status(&sales_conv, "queued").await;
    let sales = sales["id"].as_str().unwrap().to_owned();

    const A: &str = "admin";
    const M: &str = "manager";
    const G: &str = "agent";
    // (method, path, body, roles allowed). "agent" is Ann (billing); Sam (sales) is checked
    // separately below.
    let routes: Vec<(&str, String, Value, &[&str])> = vec![
        ("GET", "/api/v1/users".into(), json!(null), &[A]),
        (
            "POST",
            "/api/v1/users".into(),
            json!({"email": "x@example.com", "name": "X", "role": "admin", "password": PASSWORD}),
            &[A],
        ),
        (
            "PATCH",
            format!("/api/v1/users/{mia_id}"),
            json!({"name": "Mia"}),
            &[A],
        ),
        (
            "PUT",
            format!("/api/v1/users/{ann_id}/password"),
            json!({"password": PASSWORD}),
            &[A],
        ),
        (
            "POST",
            format!("/api/v1/users/{ann_id}/tokens"),
            json!({}),
            &[A],
        ),
        ("GET", "/api/v1/audit".into(), json!(null), &[A]),
        // The configured admin token belongs to nobody: 404, not a refusal.
        ("GET", "/api/v1/me".into(), json!(null), &[A, M, G]),
        ("GET", "/api/v1/me/tokens".into(), json!(null), &[M, G]),
        (
            "POST",
            "/api/v1/agents".into(),
            json!({"name": "Y", "email": "y@example.com"}),
            &[A],
        ),
        ("GET", "/api/v1/agents".into(), json!(null), &[A, M]),
        (
            "PATCH",
            format!("/api/v1/agents/{ann_id}"),
            json!({"max_concurrent": 4}),
            &[A],
        ),
        (
            "PUT",
            format!("/api/v1/agents/{ann_id}/presence"),
            json!({"status": "away"}),
            &[A, G],
        ),
        ("GET", "/api/v1/queues".into(), json!(null), &[A, M]),
        ("PUT", "/api/v1/queues/vip".into(), json!({}), &[A]),
        ("GET", "/api/v1/escalation-rules".into(), json!(null), &[A]),
        (
            "GET",
            "/api/v1/event-dead-letters".into(),
            json!(null),
            &[A],
        ),
        (
            "POST",
            "/api/v1/event-dead-letters/replay".into(),
            json!(null),
            &[A],
        ),
        ("GET", "/api/v1/conversations".into(), json!(null), &[A]),
        (
            "GET",
            format!("/api/v1/conversations/{billing_conv}"),
            json!(null),
            &[A, M, G],
        ),
        (
            "GET",
            format!("/api/v1/conversations/{sales_conv}"),
            json!(null),
            &[A],
        ),
        (
            "POST",
            format!("/api/v1/conversations/{sales_conv}/handoff"),
            json!({}),
            &[A],
        ),
        (
            "GET",
            format!("/api/v1/handoffs/{billing}"),
            json!(null),
            &[A, M, G],
        ),
        (
            "GET",
            format!("/api/v1/handoffs/{sales}"),
            json!(null),
            &[A],
        ),
        (
            "GET",
            "/api/v1/reports/summary".into(),
            json!(null),
            &[A, M],
        ),
        ("GET", "/api/v1/reports/live".into(), json!(null), &[A, M]),
        ("GET", "/dashboard".into(), json!(null), &[A, M]),
        ("GET", "/api/v1/handoffs".into(), json!(null), &[A, M, G]),
        ("GET", "/workspace".into(), json!(null), &[A, M, G]),
        ("GET", "/workspace/inbox".into(), json!(null), &[A, M, G]),
        (
            "GET",
            format!("/workspace/tickets/{billing}"),
            json!(null),
            &[A, M, G],
        ),
        (
            "GET",
            format!("/workspace/tickets/{sales}"),
            json!(null),
            &[A],
        ),
        (
            "GET",
            format!("/workspace/tickets/{sales}/transcript"),
            json!(null),
            &[A],
        ),
        ("GET", "/admin".into(), json!(null), &[A]),
        (
            "PUT",
            "/api/v1/escalation-rules".into(),
            json!({"rules": []}),
            &[A],
        ),
    ];
    let roles = [(A, ADMIN_TOKEN), (M, mia.as_str()), (G, ann.as_str())];
    let mut wrong = Vec::new();
    for (method, path, body, allowed) in &routes {
        let anonymous = app.status_of(method, path, None, body.clone()).await;
        if !matches!(anonymous, 401 | 303) {
            wrong.push(format!("anonymous {method} {path}: {anonymous}"));
        }
        for (role, token) in roles {
            let status = app.status_of(method, path, Some(token), body.clone()).await;
            let denied = matches!(status, 401 | 403);
            if allowed.contains(&role) == denied {
                wrong.push(format!("{role} {method} {path}: {status}"));
            }
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));

    // Lists only hold what the caller may see.
    let ids = |v: Value| -> Vec<String> {
        v["handoffs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = app.get_json("/api/v1/handoffs", ADMIN_TOKEN).await;
    assert!(ids(all.clone()).contains(&billing) && ids(all).contains(&sales));
    let (_, annes) = app.get_json("/api/v1/handoffs", &ann).await;
    assert!(ids(annes.clone()).contains(&billing) && !ids(annes).contains(&sales));
    let (_, sams) = app.get_json("/api/v1/handoffs", &sam).await;
    assert!(!ids(sams.clone()).contains(&billing) && ids(sams).contains(&sales));
    let (_, mias) = app.get_json("/api/v1/handoffs", &mia).await;
    assert!(ids(mias.clone()).contains(&billing) && !ids(mias).contains(&sales));
    // A manager watches but does not act on tickets.
    let r = app
        .post_json(
            &format!("/api/v1/handoffs/{billing}/resolve"),
            &mia,
            json!({}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 403);
}

#[tokio::test]
async fn the_audit_log_names_who_changed_a_ticket_or_a_setting() {
    let app = app_with_admin().await;
    let (ann_id, ann) = app.create_user("ann@example.com", "agent", &[]).await;
    app.set_presence(&ann_id, &ann, "online").await;
    let c = app
        .customer_says("carl", "I want to talk to a person")
        .await;
    let conversation = c["conversation_id"].as_str().unwrap().to_owned();
    let h = app.handoff_with_status(&conversation, "assigned").await;
    let id = h["id"].as_str().unwrap().to_owned();
    for action in ["accept", "resolve"] {
        let r = app
            .post_json(&format!("/api/v1/handoffs/{id}/{action}"), &ann, json!({}))
            .await;
        assert_eq!(r.status().as_u16(), 200, "{action}");
    }
    let r = app
        .client
        .put(app.url("/api/v1/queues/billing"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"strategy": "least_busy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let (status, log) = app
        .get_json(
            &format!("/api/v1/audit?target_kind=handoff&target_id={id}"),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(status, 200);
    let lines: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            ("handoff.resolve".to_owned(), "ann@example.com".to_owned()),
            ("handoff.accept".to_owned(), "ann@example.com".to_owned()),
        ]
    );
    let (_, everything) = app.get_json("/api/v1/audit", ADMIN_TOKEN).await;
    let queue = &everything["entries"][0];
    assert_eq!(
        (
            queue["action"].as_str(),
            queue["target_id"].as_str(),
            queue["actor"].as_str()
        ),
        (Some("queue.update"), Some("billing"), Some("admin token"))
    );
}

#[tokio::test]
async fn an_admin_adds_a_person_on_the_admin_page_and_sees_it_in_the_audit_log() {
    let app = app_with_admin().await;
    let admin = app.sign_in(ADMIN_EMAIL, PASSWORD).await;
    let r = app
        .client
        .post(app.url("/admin/users"))
        .header("cookie", &admin.cookie)
        .form(&[
            ("csrf", admin.csrf.as_str()),
            ("name", "Nia"),
            ("email", "nia@example.com"),
            ("role", "agent"),
            ("teams", "billing, sales"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let page = app
        .client
        .get(app.url("/admin"))
        .header("cookie", &admin.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("nia@example.com"), "{page}");
    assert!(page.contains("billing, sales"));
    assert!(page.contains("user.create"), "the audit log on the page");
    // The new agent signs in and lands in the workspace.
    let r = app
        .client
        .post(app.url("/login"))
        .form(&[("email", "nia@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/workspace");
}

#[tokio::test]
async fn sign_in_attempts_are_limited_and_the_limit_says_when_to_retry() {
    let app = spawn_app_with(|s| s.login_attempts_per_minute = 3).await;
    let attempt = || async {
        app.client
            .post(app.url("/login"))
            .form(&[
                ("email", "who@example.com"),
                ("password", "guess guess guess"),
            ])
            .send()
            .await
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(attempt().await.status().as_u16(), 401);
    }
    let limited = attempt().await;
    assert_eq!(limited.status().as_u16(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test]
async fn the_public_widget_is_rate_limited_per_client_address() {
    let app = spawn_app_with(|s| s.widget_requests_per_minute = 3).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = app
            .client
            .post(app.url("/widget/v1/conversations"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..3].iter().all(|s| *s != 429), "{statuses:?}");
    assert_eq!(statuses[3], 429);
}

#[tokio::test]
async fn a_revoked_token_and_a_disabled_user_stop_working_at_once() {
    let app = app_with_admin().await;
    let (mia_id, mia) = app.create_user("mia@example.com", "manager", &[]).await;
    assert_eq!(app.get_json("/api/v1/me", &mia).await.0, 200);
    // A second token, revoked by its owner.
    let r = app
        .post_json("/api/v1/me/tokens", &mia, json!({"label": "laptop"}))
        .await;
    let second: Value = r.json().await.unwrap();
    let second_token = second["token"].as_str().unwrap();
    assert_eq!(app.get_json("/api/v1/me", second_token).await.0, 200);
    let r = app
        .client
        .delete(app.url(&format!(
            "/api/v1/me/tokens/{}",
            second["id"].as_str().unwrap()
        )))
        .bearer_auth(&mia)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(app.get_json("/api/v1/me", second_token).await.0, 401);

    // Disabled: no token, no session, no sign-in.
    let session = app.sign_in("mia@example.com", PASSWORD).await;
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/users/{mia_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.get_json("/api/v1/me", &mia).await.0, 401);
    let page = app
        .client
        .get(app.url("/dashboard"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 303);
    let again = app
        .client
        .post(app.url("/login"))
        .form(&[("email", "mia@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 401);
}

#[tokio::test]
async fn changing_a_password_needs_the_current_one_and_signs_out_everywhere() {
    let app = app_with_admin().await;
    app.create_user("ann@example.com", "agent", &[]).await;
    let first = app.sign_in("ann@example.com", PASSWORD).await;
    let change = |current: &'static str, new: &'static str| {
        let app = &app;
        let (cookie, csrf) = (first.cookie.clone(), first.csrf.clone());
        async move {
            app.client
                .post(app.url("/account/password"))
                .header("cookie", cookie)
                .form(&[("csrf", csrf.as_str()), ("current", current), ("new", new)])
                .send()
                .await
                .unwrap()
        }
    };
    let wrong = change("not my password", "a brand new passphrase").await;
    assert_eq!(wrong.status().as_u16(), 400);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("current password is wrong")
    );
    let short = change(PASSWORD, "short").await;
    assert_eq!(short.status().as_u16(), 400);
    let ok = change(PASSWORD, "a brand new passphrase").await;
    assert_eq!(ok.status().as_u16(), 303);
    let account = app
        .client
        .get(app.url("/account"))
        .header("cookie", &first.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(account.status().as_u16(), 303, "the old session ended");
    app.sign_in("ann@example.com", "a brand new passphrase")
        .await;
}

#[tokio::test]
async fn every_page_is_served_with_security_headers() {
    let app = spawn_app_with(|_| {}).await;
    for path in ["/", "/login", "/api/v1/me"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn the_first_admin_is_created_from_the_command_line_with_the_password_on_stdin() {
    use secrecy::ExposeSecret;
    use std::io::Write;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let settings = crate::helpers::test_settings(&dir);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.args([
        "admin",
        "create",
        "--email",
        "root@example.com",
        "--data-dir",
    ])
    .arg(dir.path())
    .env_remove("BATON_ADMIN_PASSWORD")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped());
    // The same store the gateway below opens.
    if let Some(url) = &settings.database_url {
        cmd.env("BATON_DATABASE_URL", url.expose_secret());
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("root@example.com"));

    let app = crate::helpers::restart_with(settings, dir).await;
    let session = app.sign_in("root@example.com", PASSWORD).await;
    let r = app
        .client
        .get(app.url("/dashboard"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

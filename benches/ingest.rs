//! Ingest benchmark: API-channel messages over loopback HTTP into the real gateway (durable
//! group-committed acks, bot answers in the background), beside a trivial 200-OK actix handler
//! driven by the same load generator in the same run. The ratio is the figure that matters:
//! absolute numbers on a shared 2-core machine move from run to run.
//!
//!   cargo bench --bench ingest -- [--seconds N] [--connections N] [--rounds N]
//!                                 [--channel api|email|meta|webchat] [--latency]
//!
//! `--channel email` posts raw MIME mails (multipart/alternative, a quoted earlier message,
//! threading headers) to /ingest/email instead: parse, trim, thread and persist per mail.
//! `--channel meta` posts signed Messenger webhooks (HMAC-SHA256 checked per request);
//! `--channel webchat` posts widget messages for 1,000 visitors with their conversation tokens.
//!
//! `--latency` then drives the gateway open-loop at 50% and 90% of its sustainable maximum and
//! reports acknowledgement latency p50/p99/p99.9, measured from when each request was due (so
//! a stalled server is charged for the requests it delayed: no coordinated omission). The
//! sustainable maximum is the lower of the acknowledgement rate and the rate at which the bot
//! answered the same round: acknowledgements can outrun the bot for a few seconds (the answers
//! queue behind them), but a load above what the bot keeps up with is not a load the gateway
//! can carry, and "50%" of it would saturate the machine.
//!
//! The two targets are measured in alternating rounds (trivial, gateway, trivial, ...) and the
//! medians compared, so a noisy neighbour slows both rather than one.
//!
//! Set BATON_BENCH_CLICKHOUSE_URL to ship events to a ClickHouse; this benchmark creates no
//! handoffs, so it does not need one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use baton::config::Settings;
use baton::web::Application;

mod common;
use common::{Run, closed_loop};

const TOKEN: &str = "bench-admin-token";

/// Numbers the messages' external ids across all rounds. (Restarting it per round made every
/// round after the first a replay of the one before: duplicates, which the gateway answers
/// without storing or asking the bot. Earlier figures in the README were skewed by that.)
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

struct Args {
    seconds: u64,
    connections: usize,
    rounds: usize,
    channel: Channel,
    latency: bool,
}

/// What the load generator sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Channel {
    Api,
    Email,
    Meta,
    WebChat,
}

const META_SECRET: &str = "bench-meta-app-secret";

/// The widget visitors of a webchat run: (conversation id, token).
static VISITORS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Request `n` of a channel: path, headers, body.
fn request(channel: Channel, n: u64) -> (String, Vec<(&'static str, String)>, String) {
    match channel {
        Channel::Api => (
            "/api/v1/messages".into(),
            vec![
                ("content-type", "application/json".into()),
                ("authorization", format!("Bearer {TOKEN}")),
            ],
            format!(
                r#"{{"sender":{{"external_id":"bench-user-{}","name":"Bench"}},"external_id":"bench-{}-{}","text":"What are your opening hours?"}}"#,
                n % 1000,
                std::process::id(),
                n
            ),
        ),
        Channel::Email => (
            "/ingest/email".into(),
            vec![
                ("content-type", "message/rfc822".into()),
                ("authorization", format!("Bearer {TOKEN}")),
            ],
            mail(n),
        ),
        Channel::Meta => {
            use hmac::{Hmac, Mac};
            let body = format!(
                r#"{{"object":"page","entry":[{{"id":"1717527131834678","time":1475942721780,"messaging":[{{"sender":{{"id":"bench-psid-{}"}},"recipient":{{"id":"1717527131834678"}},"timestamp":1475942721741,"message":{{"mid":"mid.bench-{}-{}","text":"What are your opening hours?"}}}}]}}]}}"#,
                n % 1000,
                std::process::id(),
                n
            );
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(META_SECRET.as_bytes()).unwrap();
            mac.update(body.as_bytes());
            let sig = hex::encode(mac.finalize().into_bytes());
            (
                "/webhooks/meta".into(),
                vec![
                    ("content-type", "application/json".into()),
                    ("x-hub-signature-256", format!("sha256={sig}")),
                ],
                body,
            )
        }
        Channel::WebChat => {
            let visitors = VISITORS.get().expect("visitors created");
            let (id, token) = &visitors[(n % visitors.len() as u64) as usize];
            (
                format!("/widget/v1/conversations/{id}/messages"),
                vec![
                    ("content-type", "application/json".into()),
                    ("authorization", format!("Bearer {token}")),
                ],
                format!(
                    r#"{{"text":"What are your opening hours?","client_message_id":"b-{}-{n}"}}"#,
                    std::process::id()
                ),
            )
        }
    }
}

impl Channel {
    fn label(self) -> &'static str {
        match self {
            Channel::Api => "API",
            Channel::Email => "email (raw MIME)",
            Channel::Meta => "Meta webhook, signed",
            Channel::WebChat => "web chat widget",
        }
    }
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        connections: 64,
        rounds: 3,
        channel: Channel::Api,
        latency: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--seconds" => a.seconds = argv[i + 1].parse().expect("--seconds N"),
            "--connections" => a.connections = argv[i + 1].parse().expect("--connections N"),
            "--rounds" => a.rounds = argv[i + 1].parse().expect("--rounds N"),
            "--channel" => {
                a.channel = match argv[i + 1].as_str() {
                    "api" => Channel::Api,
                    "email" => Channel::Email,
                    "meta" => Channel::Meta,
                    "webchat" => Channel::WebChat,
                    other => panic!("unknown channel {other}"),
                }
            }
            "--latency" => a.latency = true,
            _ => {}
        }
        i += 1;
    }
    a
}

/// A closed-loop run against `base` (the gateway or the trivial handler, which answers every
/// path) with requests of `channel`.
async fn drive(base: String, connections: usize, duration: Duration, channel: Channel) -> Run {
    closed_loop(connections, duration, move |client| {
        // One sequence for the whole run: every message is new, in every round.
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let (path, headers, body) = request(channel, n);
        let mut req = client.post(format!("{base}{path}")).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req
    })
    .await
}

/// A customer's reply as mail clients send it: multipart/alternative, the earlier message
/// quoted, threading headers naming the sender's first mail (about 2 KB).
fn mail(n: u64) -> String {
    let sender = n % 1000;
    let pid = std::process::id();
    format!(
        "From: Bench Customer {sender} <bench{sender}@customer.example>\r\n\
         To: Support <support@example.com>\r\n\
         Subject: Re: Order {sender} arrived damaged\r\n\
         Message-ID: <bench-{pid}-{n}@customer.example>\r\n\
         In-Reply-To: <bench-{pid}-{sender}@customer.example>\r\n\
         References: <bench-{pid}-{sender}@customer.example>\r\n\
         Date: Tue, 24 Nov 2026 09:00:00 +0000\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         Hello, the box was crushed and the mug inside is broken. Can you send a new one?\r\n\
         Thanks, Bench\r\n\r\n\
         On Mon, 23 Nov 2026 at 18:00, Support <support@example.com> wrote:\r\n\
         > Thank you for your order. It ships today and should arrive within three days.\r\n\
         > If anything is wrong with it, just reply to this mail.\r\n\
         >\r\n> Kind regards, the support team\r\n\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <html><body><p>Hello, the box was crushed and the mug inside is broken. Can you send a new one?</p>\
         <p>Thanks, Bench</p><blockquote><p>Thank you for your order. It ships today and should arrive\
         within three days.</p><p>If anything is wrong with it, just reply to this mail.</p>\
         <p>Kind regards, the support team</p></blockquote></body></html>\r\n\
         --b1--\r\n"
    )
}

/// An open-loop generator: request k is due at start + k / rate, sent on time whatever the
/// server does (at most 2,000 in flight), and its latency counts from when it was due.
async fn open_loop(base: String, rate: f64, duration: Duration, channel: Channel) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(2000));
    let start = Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut tasks = Vec::with_capacity(total as usize);
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let permit = limit.clone().acquire_owned().await.unwrap();
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            let (path, headers, body) = request(channel, n);
            let mut req = client.post(format!("{base}{path}")).body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let ok = match req.send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            };
            drop(permit);
            ok.then(|| due.elapsed().as_micros() as u64)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some(l) => latencies.push(l),
            None => errors += 1,
        }
    }
    latencies.sort_unstable();
    Run {
        requests: latencies.len() as u64,
        errors,
        duplicates: 0,
        elapsed: start.elapsed(),
        latencies_us: latencies,
    }
}

fn report(name: &str, r: &Run) {
    println!(
        "{name:<28} {:>9} ok {:>6} err {:>6} dup {:>8.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        r.requests,
        r.errors,
        r.duplicates,
        r.rate(),
        r.pct(0.50),
        r.pct(0.99)
    );
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs.swap_remove(runs.len() / 2)
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!("machine: {}", common::machine());
        let warmup = Duration::from_secs(2);
        let measure = Duration::from_secs(a.seconds);

        // The baseline: what this machine and this load generator can do at all.
        let trivial = HttpServer::new(|| {
            App::new().default_service(web::to(|| async { HttpResponse::Ok().body("{}") }))
        })
        .bind("127.0.0.1:0")
        .unwrap();
        let trivial_port = trivial.addrs()[0].port();
        let trivial = trivial.run();
        let trivial_handle = trivial.handle();
        tokio::spawn(trivial);
        let trivial_url = format!("http://127.0.0.1:{trivial_port}");

        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            bind: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            clickhouse_url: std::env::var("BATON_BENCH_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:9".into()),
            api_token: Some(TOKEN.to_owned().into()),
            support_address: Some("support@example.com".into()),
            meta_app_secret: Some(META_SECRET.to_owned().into()),
            // One load generator is one client address: the per-address limits would measure
            // themselves.
            widget_requests_per_minute: u32::MAX,
            webhook_requests_per_minute: u32::MAX,
            ..Settings::default()
        };
        let app = Application::build(settings).await.unwrap();
        let path = request(Channel::Api, 0).0;
        let path = match a.channel {
            Channel::Api => path,
            Channel::Email => "/ingest/email".into(),
            Channel::Meta => "/webhooks/meta".into(),
            Channel::WebChat => "/widget/v1/conversations/{id}/messages".into(),
        };
        let url = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        let services = app.services();
        let server = tokio::spawn(app.run_until_stopped());
        // (After the server runs: before, these requests would wait on the listen backlog
        // forever, which is how the first web chat run stalled.)
        if a.channel == Channel::WebChat {
            let client = reqwest::Client::new();
            let mut visitors = Vec::new();
            for _ in 0..1000 {
                let v: serde_json::Value = client
                    .post(format!("{url}/widget/v1/conversations"))
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                visitors.push((
                    v["conversation_id"].as_str().unwrap().to_owned(),
                    v["token"].as_str().unwrap().to_owned(),
                ));
            }
            VISITORS.set(visitors).unwrap();
        }

        drive(trivial_url.clone(), a.connections, warmup, a.channel).await;
        drive(url.clone(), a.connections, warmup, a.channel).await;
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_secs(60)
            && !services.store.unprocessed_inbound(1).await.map(|v| v.is_empty()).unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (mut base_runs, mut gw_runs) = (Vec::new(), Vec::new());
        let mut answered_rates = Vec::new();
        for round in 1..=a.rounds {
            let b = drive(trivial_url.clone(), a.connections, measure, a.channel).await;
            let g = drive(url.clone(), a.connections, measure, a.channel).await;
            // Let the bot finish the round's messages before the next trivial round, so the
            // gateway's background work is not billed to the baseline.
            let drain_start = Instant::now();
            while drain_start.elapsed() < Duration::from_secs(60)
                && !services.store.unprocessed_inbound(1).await.map(|v| v.is_empty()).unwrap_or(true)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The bot answers behind the acknowledgements; its sustained rate is the round's
            // messages over the time until the last was answered.
            let answered = g.requests as f64 / (g.elapsed + drain_start.elapsed()).as_secs_f64();
            answered_rates.push(answered);
            println!(
                "round {round}: trivial {:>7.0} req/s, gateway {:>7.0} req/s ({:.1}%), bot answered {:>7.0} msg/s",
                b.rate(),
                g.rate(),
                100.0 * g.rate() / b.rate(),
                answered
            );
            base_runs.push(b);
            gw_runs.push(g);
        }
        // Open loop at 50% and 90% of the sustainable maximum: acknowledgement latency.
        let ack_rate = median(gw_runs.iter().map(|r| Run {
            requests: r.requests,
            errors: r.errors,
            duplicates: r.duplicates,
            elapsed: r.elapsed,
            latencies_us: Vec::new(),
        }).collect()).rate();
        answered_rates.sort_by(f64::total_cmp);
        let answered_rate = answered_rates[answered_rates.len() / 2];
        let max_rate = ack_rate.min(answered_rate);
        let mut latency_runs = Vec::new();
        if a.latency {
            for share in [0.5, 0.9] {
                let r = open_loop(url.clone(), max_rate * share, measure, a.channel).await;
                let drain_start = Instant::now();
                while drain_start.elapsed() < Duration::from_secs(60)
                    && !services.store.unprocessed_inbound(1).await.map(|v| v.is_empty()).unwrap_or(true)
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                latency_runs.push((share, r));
            }
        }
        let backlog = services.store.unprocessed_inbound(1_000_000).await.map(|v| v.len()).unwrap_or(0);
        handle.stop(true).await;
        let _ = server.await;
        trivial_handle.stop(true).await;

        let (base, gw) = (median(base_runs), median(gw_runs));
        println!(
            "ingest benchmark: {} connections, {} rounds of {} s per target, {} cores",
            a.connections,
            a.rounds,
            a.seconds,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
        );
        println!("median round of each:");
        report("trivial 200-OK handler", &base);
        report(&format!("gateway POST {path}"), &gw);
        println!(
            "gateway / trivial throughput: {:.1}%   (inbound messages not yet answered by the bot at stop: {backlog})",
            100.0 * gw.rate() / base.rate(),
        );
        println!(
            "sustainable maximum: {max_rate:.0} msg/s (acknowledged {ack_rate:.0} req/s, answered by the bot {answered_rate:.0} msg/s)"
        );
        for (share, r) in &latency_runs {
            println!(
                "open loop at {:>3.0}% of the maximum ({:>6.0} req/s offered): {:>6.0} req/s acknowledged, {} errors, ack latency p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms",
                share * 100.0,
                max_rate * share,
                r.rate(),
                r.errors,
                r.pct(0.50),
                r.pct(0.99),
                r.pct(0.999)
            );
        }
        // One line for scripts/bench.sh's report: a row of docs/BENCHMARKS.md's ingest table.
        let lat = |share: f64| {
            latency_runs
                .iter()
                .find(|(s, _)| *s == share)
                .map(|(_, r)| format!("{:.1} / {:.1} / {:.1} ms", r.pct(0.5), r.pct(0.99), r.pct(0.999)))
                .unwrap_or_default()
        };
        println!(
            "REPORT ingest | {} | {} × {} s | {:.0} req/s | {:.0} req/s | {:.1}% | {:.0} msg/s | {} | {} |",
            a.channel.label(),
            a.rounds,
            a.seconds,
            base.rate(),
            gw.rate(),
            100.0 * gw.rate() / base.rate(),
            max_rate,
            lat(0.5),
            lat(0.9)
        );
    });
}

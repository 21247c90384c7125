//! Ingest benchmark: API-channel messages over loopback HTTP into the real gateway (durable
//! group-committed acks, bot answers in the background), beside a trivial 200-OK actix handler
//! driven by the same load generator in the same run. The ratio is the figure that matters:
//! absolute numbers on a shared 2-core machine move from run to run.
//!
//!   cargo bench --bench ingest -- [--seconds N] [--connections N] [--rounds N] [--channel api|email]
//!
//! `--channel email` posts raw MIME mails (multipart/alternative, a quoted earlier message,
//! threading headers) to /ingest/email instead: parse, trim, thread and persist per mail.
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

const TOKEN: &str = "bench-admin-token";

/// Numbers the messages' external ids across all rounds. (Restarting it per round made every
/// round after the first a replay of the one before: duplicates, which the gateway answers
/// without storing or asking the bot. Earlier figures in the README were skewed by that.)
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

struct Args {
    seconds: u64,
    connections: usize,
    rounds: usize,
    email: bool,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        connections: 64,
        rounds: 3,
        email: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--seconds" => a.seconds = argv[i + 1].parse().expect("--seconds N"),
            "--connections" => a.connections = argv[i + 1].parse().expect("--connections N"),
            "--rounds" => a.rounds = argv[i + 1].parse().expect("--rounds N"),
            "--channel" => a.email = argv[i + 1] == "email",
            _ => {}
        }
        i += 1;
    }
    a
}

struct Run {
    requests: u64,
    errors: u64,
    /// Answers that said `duplicate`: must be 0, or the run measured replays, not ingest.
    duplicates: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// A closed-loop generator: `connections` workers, each sending the next request when the
/// previous one is answered, for `duration`.
async fn drive(url: String, connections: usize, duration: Duration, email: bool) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut duplicates = 0u64;
            while Instant::now() < deadline {
                // One sequence for the whole run: every message is new, in every round.
                let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
                let (content_type, body) = if email {
                    ("message/rfc822", mail(n))
                } else {
                    (
                        "application/json",
                        format!(
                            r#"{{"sender":{{"external_id":"bench-user-{}","name":"Bench"}},"external_id":"bench-{}-{}","text":"What are your opening hours?"}}"#,
                            n % 1000,
                            std::process::id(),
                            n
                        ),
                    )
                };
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let body = r.bytes().await.unwrap_or_default();
                        lat.push(t.elapsed().as_micros() as u64);
                        if body.windows(16).any(|w| w == b"\"duplicate\":true") {
                            duplicates += 1;
                        }
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors, duplicates)
        }));
    }
    let mut latencies = Vec::new();
    let (mut errors, mut duplicates) = (0, 0);
    for t in tasks {
        let (l, e, d) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
        duplicates += d;
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Run {
        requests: latencies.len() as u64,
        errors,
        duplicates,
        elapsed,
        latencies_us: latencies,
    }
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
        let warmup = Duration::from_secs(2);
        let measure = Duration::from_secs(a.seconds);

        // The baseline: what this machine and this load generator can do at all.
        let trivial = HttpServer::new(|| {
            App::new().route("/api/v1/messages", web::post().to(|| async { HttpResponse::Ok().body("{}") }))
        })
        .bind("127.0.0.1:0")
        .unwrap();
        let trivial_port = trivial.addrs()[0].port();
        let trivial = trivial.run();
        let trivial_handle = trivial.handle();
        tokio::spawn(trivial);
        let trivial_url = format!("http://127.0.0.1:{trivial_port}/api/v1/messages");

        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            bind: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            clickhouse_url: std::env::var("BATON_BENCH_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:9".into()),
            api_token: Some(TOKEN.to_owned().into()),
            support_address: Some("support@example.com".into()),
            ..Settings::default()
        };
        let app = Application::build(settings).await.unwrap();
        let path = if a.email { "/ingest/email" } else { "/api/v1/messages" };
        let url = format!("http://127.0.0.1:{}{path}", app.port());
        let handle = app.handle();
        let services = app.services();
        let server = tokio::spawn(app.run_until_stopped());

        drive(trivial_url.clone(), a.connections, warmup, a.email).await;
        drive(url.clone(), a.connections, warmup, a.email).await;
        while !services.store.unprocessed_inbound(1).await.map(|v| v.is_empty()).unwrap_or(true) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (mut base_runs, mut gw_runs) = (Vec::new(), Vec::new());
        for round in 1..=a.rounds {
            let b = drive(trivial_url.clone(), a.connections, measure, a.email).await;
            let g = drive(url.clone(), a.connections, measure, a.email).await;
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
    });
}

//! Shared by the benchmarks: command-line values, free ports, a closed-loop load generator and
//! what it measured. (Each bench uses a part of it.)
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one generator run measured.
pub struct Run {
    /// Requests answered with 2xx.
    pub requests: u64,
    /// Requests that failed or were answered otherwise.
    pub errors: u64,
    /// 2xx answers that said `"duplicate":true`: must be 0, or the run measured replays.
    pub duplicates: u64,
    pub elapsed: Duration,
    /// Latency of each 2xx answer, sorted.
    pub latencies_us: Vec<u64>,
}

impl Run {
    /// Answered requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency percentile `p` (0..=1) in milliseconds.
    pub fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// A closed-loop generator: `connections` workers, each sending the next request (built by
/// `request`) when the previous one is answered, for `duration`.
pub async fn closed_loop<F>(connections: usize, duration: Duration, request: F) -> Run
where
    F: Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let request = Arc::new(request);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, request) = (client.clone(), request.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let (mut errors, mut duplicates) = (0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match request(&client).send().await {
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

/// The machine a report was measured on, for the report's header.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), load average {load} at the start")
}

/// The value after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

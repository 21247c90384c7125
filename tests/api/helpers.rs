//! The one spawn helper: starts the gateway on port 0 against its own temp data folder and its
//! own database in a private ClickHouse server that this test binary starts (and that dies with
//! it). Set BATON_TEST_CLICKHOUSE_URL to use an already running private server instead.
//!
//! The store is the SQLite file in the data folder; with BATON_TEST_STORE=postgres it is a fresh
//! database (created by the gateway on start) in a private PostgreSQL server that this test
//! binary starts the same way (initdb into a temp folder, Unix socket only).

use std::future::Future;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use baton::config::Settings;
use baton::services::Services;
use baton::web::Application;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

static CLICKHOUSE: OnceLock<String> = OnceLock::new();
static POSTGRES: OnceLock<(PathBuf, u16)> = OnceLock::new();

/// Whether the store under test is PostgreSQL (BATON_TEST_STORE=postgres).
pub fn postgres_store() -> bool {
    std::env::var("BATON_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// Skips the rest of a test that needs the SQLite store (it looks into the file, or fills the
/// disk under it) when the suite runs against PostgreSQL, saying why.
#[macro_export]
macro_rules! sqlite_only {
    ($why:literal) => {
        if $crate::helpers::postgres_store() {
            eprintln!("skipped under BATON_TEST_STORE=postgres: {}", $why);
            return;
        }
    };
}

/// Skips a test that needs PostgreSQL (several instances on one database) when the suite runs
/// against SQLite, saying why.
#[macro_export]
macro_rules! postgres_only {
    ($why:literal) => {
        if !$crate::helpers::postgres_store() {
            eprintln!("skipped without BATON_TEST_STORE=postgres: {}", $why);
            return;
        }
    };
}

/// A URL for a new, empty database in the private PostgreSQL server (started on first use).
pub fn fresh_database_url() -> String {
    let (dir, port) = POSTGRES.get_or_init(start_private_postgres);
    format!(
        "postgres://baton@localhost/baton_test_{}?host={}&port={port}",
        uuid::Uuid::new_v4().simple(),
        dir.display()
    )
}

/// Starts this binary's PostgreSQL server (its cluster and socket in a temp folder named after
/// this process, which the server's script removes once this process is gone).
fn start_private_postgres() -> (PathBuf, u16) {
    sweep_dead_servers_folders();
    let dir = std::env::temp_dir().join(format!("baton-test-postgres-{}", std::process::id()));
    let port = free_port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-private.sh");
    let log_path =
        std::env::temp_dir().join(format!("baton-test-postgres-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    // Not tied to this process by PDEATHSIG (the server runs as another user, which clears
    // it): the script watches this process and stops the server when it is gone.
    let mut child = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot start the private PostgreSQL server");
    std::thread::spawn(move || child.wait());
    // The socket appears before the server takes connections ("the database system is
    // starting up"); its log says when it does.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("ready to accept connections")
    {
        assert!(
            Instant::now() < deadline,
            "private PostgreSQL server did not start (see its log in the temp folder)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (dir, port)
}

/// A port nobody listens on right now (another process may still take it first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The private ClickHouse server's HTTP URL, starting it on first use.
pub fn clickhouse_url() -> String {
    CLICKHOUSE
        .get_or_init(|| {
            if let Ok(url) = std::env::var("BATON_TEST_CLICKHOUSE_URL") {
                return url;
            }
            sweep_dead_servers_folders();
            let dir =
                std::env::temp_dir().join(format!("baton-test-clickhouse-{}", std::process::id()));
            let (http, tcp) = (free_port(), free_port());
            let script =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/clickhouse-private.sh");
            let log = std::fs::File::create(
                std::env::temp_dir()
                    .join(format!("baton-test-clickhouse-{}.log", std::process::id())),
            )
            .unwrap();
            // Spawned from a thread that lives as long as the server, with PR_SET_PDEATHSIG, so
            // the server dies with this test binary even when a test panics.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut cmd = Command::new("bash");
                cmd.arg(&script)
                    .arg(&dir)
                    .arg(http.to_string())
                    .arg(tcp.to_string())
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log);
                unsafe {
                    use std::os::unix::process::CommandExt;
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let mut child = cmd.spawn().expect("cannot start clickhouse-server");
                tx.send(()).unwrap();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&dir);
            });
            rx.recv().unwrap();
            let url = format!("http://127.0.0.1:{http}");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let ok =
                    std::net::TcpStream::connect(("127.0.0.1", http)).is_ok() && ureq_ping(&url);
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "private clickhouse-server did not start"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            url
        })
        .clone()
}

/// Removes the data folders and logs left by earlier test binaries' servers. The folder of a run
/// is removed by nobody when the binary exits (its server is killed with it), so without this
/// every `cargo test` would leave a few megabytes behind in the temp folder.
fn sweep_dead_servers_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix("baton-test-clickhouse-")
            .or_else(|| name.strip_prefix("baton-test-postgres-"))
        else {
            continue;
        };
        let pid = rest.trim_end_matches(".log");
        let alive = PathBuf::from("/proc").join(pid).exists();
        if pid.parse::<u32>().is_ok() && !alive {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

/// A ClickHouse server of one test's own, which the test may kill and start again on the same
/// data folder and port (the shared server of `clickhouse_url` must never go down).
pub struct PrivateClickHouse {
    dir: TempDir,
    http: u16,
    tcp: u16,
    child: Option<std::process::Child>,
}

impl PrivateClickHouse {
    /// Starts a server on a fresh data folder and waits until it answers.
    pub async fn start() -> Self {
        let mut ch = Self {
            dir: tempfile::tempdir().unwrap(),
            http: free_port(),
            tcp: free_port(),
            child: None,
        };
        ch.restart().await;
        ch
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// Starts the server (again) on its data folder and ports; returns once it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/clickhouse-private.sh");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.out"))
            .unwrap();
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .arg(self.dir.path().join("ch"))
            .arg(self.http.to_string())
            .arg(self.tcp.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Dies with the thread that started it, even if the test binary is killed.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("cannot start clickhouse-server"));
        let url = self.url();
        let client = reqwest::Client::new();
        eventually_within(
            "the private clickhouse-server to answer",
            Duration::from_secs(60),
            || {
                let ping = client.get(format!("{url}/ping")).send();
                async move {
                    let r = ping.await.ok()?;
                    (r.status() == 200).then_some(())
                }
            },
        )
        .await;
    }

    /// Kills the server at once (SIGKILL, as a crash or an OOM kill would) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking `GET /ping` without pulling in a blocking HTTP client.
fn ureq_ping(url: &str) -> bool {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /ping HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.contains("Ok.")
}

/// A running gateway for one test.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub services: Arc<Services>,
    pub data_dir: Arc<TempDir>,
    /// The separate metrics listener's port, when `metrics_bind` is set.
    pub metrics_port: Option<u16>,
    handle: ServerHandle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Settings for a test: its own data folder and ClickHouse database, fast shipping.
pub fn test_settings(data_dir: &TempDir) -> Settings {
    Settings {
        bind: "127.0.0.1:0".into(),
        data_dir: data_dir.path().to_path_buf(),
        clickhouse_url: clickhouse_url(),
        clickhouse_database: format!("baton_test_{}", uuid::Uuid::new_v4().simple()),
        database_url: postgres_store().then(|| fresh_database_url().into()),
        api_token: Some(ADMIN_TOKEN.to_owned().into()),
        ship_interval_ms: 100,
        // Dozens of gateways share the tests' one ClickHouse: their rollup workers' queries
        // every second slowed its INSERTs past the shipper's deadline. The rollup's tests
        // drive `rollup::refresh` themselves.
        rollup_interval_ms: 0,
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    // Logs only when asked (TEST_LOG=1), so test output stays readable for people and CI.
    if std::env::var_os("TEST_LOG").is_some() {
        baton::telemetry::init("text");
    }
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&data_dir);
    customize(&mut settings);
    start(settings, data_dir).await
}

/// Starts a gateway on existing data with changed settings.
pub async fn restart_with(settings: Settings, data_dir: Arc<TempDir>) -> TestApp {
    start(settings, data_dir).await
}

async fn start(settings: Settings, data_dir: Arc<TempDir>) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("gateway failed to start");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let services = app.services();
    let metrics_port = app.metrics_port();
    let join = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        settings,
        services,
        data_dir,
        metrics_port,
        handle,
        join,
    }
}

impl TestApp {
    /// Stops the gateway gracefully and starts it again on the same data and database.
    pub async fn restart(self) -> TestApp {
        let (settings, data_dir) = self.stop().await;
        start(settings, data_dir).await
    }

    /// Stops the gateway gracefully; returns what a restart needs.
    pub async fn stop(self) -> (Settings, Arc<TempDir>) {
        self.handle.stop(true).await;
        self.join.await.unwrap().unwrap();
        (self.settings, self.data_dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A page's body, fetched with a bearer token.
    pub async fn get_text(&self, path: &str, token: &str) -> String {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    /// Waits until the pipeline has handled every stored inbound message.
    pub async fn pipeline_idle(&self) {
        eventually("the pipeline to handle every message", || async {
            self.services
                .store
                .unprocessed_inbound(10)
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        })
        .await
    }

    /// Posts a customer message on the API channel; returns the 202 body.
    pub async fn customer_says(&self, sender: &str, text: &str) -> Value {
        let r = self
            .post_json(
                "/api/v1/messages",
                ADMIN_TOKEN,
                json!({"sender": {"external_id": sender, "name": sender}, "text": text}),
            )
            .await;
        assert_eq!(r.status().as_u16(), 202, "message not accepted");
        r.json().await.unwrap()
    }

    pub async fn conversation(&self, id: &str) -> Value {
        let (status, body) = self
            .get_json(&format!("/api/v1/conversations/{id}"), ADMIN_TOKEN)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Creates an agent; returns (id, token).
    pub async fn create_agent(&self, name: &str, online: bool) -> (String, String) {
        self.create_agent_in(name, &[], 2, online).await
    }

    /// Creates an agent in `teams` taking `max` conversations at once; returns (id, token).
    pub async fn create_agent_in(
        &self,
        name: &str,
        teams: &[&str],
        max: u32,
        online: bool,
    ) -> (String, String) {
        let r = self
            .post_json(
                "/api/v1/agents",
                ADMIN_TOKEN,
                json!({"name": name, "email": format!("{}@example.com", name.to_lowercase()),
                       "teams": teams, "max_concurrent": max}),
            )
            .await;
        assert_eq!(r.status().as_u16(), 201);
        let body: Value = r.json().await.unwrap();
        let (id, token) = (
            body["id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        );
        if online {
            self.set_presence(&id, &token, "online").await;
        }
        (id, token)
    }

    pub async fn set_presence(&self, agent_id: &str, token: &str, status: &str) {
        let r = self
            .client
            .put(self.url(&format!("/api/v1/agents/{agent_id}/presence")))
            .bearer_auth(token)
            .json(&json!({"status": status}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    /// Waits until the conversation has a message matching `pred`; returns it.
    pub async fn message_where(&self, conversation: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually("a matching message", || async {
            let c = self.conversation(conversation).await;
            c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| pred(m))
                .cloned()
        })
        .await
    }

    /// Waits until the conversation's latest handoff has `status`; returns the handoff.
    pub async fn handoff_with_status(&self, conversation: &str, status: &str) -> Value {
        eventually(&format!("a handoff in status {status}"), || async {
            let c = self.conversation(conversation).await;
            (c["handoff"]["status"] == status).then(|| c["handoff"].clone())
        })
        .await
    }

    /// Ships every waiting event to ClickHouse now.
    pub async fn ship_events(&self) {
        self.services
            .shipper
            .drain()
            .await
            .expect("shipping events failed");
    }

    /// Counts rows per event type for this test's database, deduplicated as reports are.
    pub async fn event_counts(&self) -> std::collections::BTreeMap<String, u64> {
        #[derive(serde::Deserialize, clickhouse::Row)]
        struct Row {
            event_type: String,
            n: u64,
        }
        let rows: Vec<Row> = self
            .services
            .clickhouse
            .client()
            .query("SELECT event_type, count() AS n FROM handoff_events FINAL GROUP BY event_type")
            .fetch_all()
            .await
            .unwrap();
        rows.into_iter().map(|r| (r.event_type, r.n)).collect()
    }
}

/// Polls `check` until it yields a value (at most 15 s).
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(15), check).await
}

/// Polls `check` until it yields a value, for at most `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads server-sent events from a streaming response.
pub struct SseReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            stream: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next `data:` payload as JSON (15 s at most).
    pub async fn next_json(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if !data.is_empty() {
                    return serde_json::from_str(&data.join("\n")).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("timed out waiting for a server-sent event")
                .expect("stream ended")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Skips events until one matches.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next_json().await;
            if pred(&v) {
                return v;
            }
        }
    }
}

/// A direct connection to a test gateway's store, for the few tests that look at (or change)
/// rows themselves. SQL given to it must read the same on SQLite and PostgreSQL (no `?`
/// parameters, booleans compared with TRUE/FALSE).
pub enum StoreDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl StoreDb {
    /// The store of a gateway started with `settings`.
    pub async fn of(settings: &Settings) -> Self {
        use secrecy::ExposeSecret;
        Self::open(
            settings.database_url.as_ref().map(|u| u.expose_secret()),
            &settings.database_path(),
        )
        .await
    }

    /// The PostgreSQL database at `url`, else the SQLite file at `path`.
    pub async fn open(url: Option<&str>, path: &std::path::Path) -> Self {
        match url {
            Some(url) => Self::Postgres(sqlx::PgPool::connect(url).await.unwrap()),
            None => Self::Sqlite(
                sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Runs a statement.
    pub async fn execute(&self, sql: &'static str) {
        match self {
            Self::Sqlite(db) => drop(sqlx::query(sql).execute(db).await.unwrap()),
            Self::Postgres(db) => drop(sqlx::query(sql).execute(db).await.unwrap()),
        }
    }

    /// The rows of a query.
    pub async fn fetch<T>(&self, sql: &'static str) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        match self {
            Self::Sqlite(db) => sqlx::query_as(sql).fetch_all(db).await,
            Self::Postgres(db) => sqlx::query_as(sql).fetch_all(db).await,
        }
    }

    /// The one number a query returns (a count).
    pub async fn number(&self, sql: &'static str) -> Result<i64, sqlx::Error> {
        let rows: Vec<(i64,)> = self.fetch(sql).await?;
        Ok(rows.first().map(|r| r.0).unwrap_or(0))
    }

    pub async fn close(self) {
        match self {
            Self::Sqlite(db) => db.close().await,
            Self::Postgres(db) => db.close().await,
        }
    }
}

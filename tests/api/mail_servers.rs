//! Real mail servers for the email tests, private to each test: a Dovecot IMAP server holding
//! the support mailbox that the gateway polls (`scripts/dovecot-private.sh`), and a capturing
//! SMTP server that stores what the gateway sends (`scripts/smtp-capture.py`, aiosmtpd).
//!
//! Each `start_*` call starts its own server on a free loopback port with its own temp folder,
//! so tests run in parallel. Servers are spawned like the private ClickHouse in `helpers.rs`:
//! from a thread that lives as long as the server, with `PR_SET_PDEATHSIG`, so they die with
//! the test binary even when a test panics; dropping the handle stops the server and removes its
//! folder. When a test panics while a handle is alive, the server's log goes to stderr.
//!
//! "A customer mails support@" is [`ImapServer::append`] to `INBOX`; "the gateway sent a mail" is
//! [`SmtpCapture::wait_for`].

// Not every test binary that includes this module uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// How long a server may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one IMAP exchange may take.
const IMAP_TIMEOUT: Duration = Duration::from_secs(10);

use crate::helpers::free_port;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// One server process, owned by the thread that spawned it and waits for it.
struct Process {
    pid: libc::pid_t,
    exited: Receiver<std::io::Result<ExitStatus>>,
    status: Option<String>,
    log: PathBuf,
    what: &'static str,
}

impl Process {
    /// Spawns `program args` with stdout and stderr going to `log`.
    fn spawn(what: &'static str, program: &str, args: Vec<String>, log: PathBuf) -> Process {
        let (pid_tx, pid_rx) = std::sync::mpsc::channel();
        let (exit_tx, exit_rx) = std::sync::mpsc::channel();
        let name = program.to_owned();
        // Appending: the server's processes may each open the log anew (/dev/stderr).
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("cannot create a server log");
        // PR_SET_PDEATHSIG fires when the spawning *thread* ends, so it lives as long as the
        // server: the server dies with this test binary.
        std::thread::spawn(move || {
            let mut cmd = Command::new(&name);
            cmd.args(&args)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file);
            use std::os::unix::process::CommandExt;
            // Its own process group, so stopping it reaches the server's children too.
            cmd.process_group(0);
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            match cmd.spawn() {
                Ok(mut child) => {
                    pid_tx.send(Ok(child.id())).unwrap();
                    let _ = exit_tx.send(child.wait());
                }
                Err(e) => pid_tx.send(Err(e)).unwrap(),
            }
        });
        let pid = pid_rx
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("cannot start the {what} ({program}): {e}"));
        Process {
            pid: pid as libc::pid_t,
            exited: exit_rx,
            status: None,
            log,
            what,
        }
    }

    /// Whether the process has ended (and how), without waiting.
    fn has_exited(&mut self) -> Option<&str> {
        if self.status.is_none() {
            match self.exited.try_recv() {
                Ok(r) => self.status = Some(format!("{r:?}")),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => self.status = Some("gone".into()),
            }
        }
        self.status.as_deref()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the server's log.
    fn fail(&mut self, why: &str) -> ! {
        let status = self.has_exited().unwrap_or("running").to_owned();
        panic!(
            "{} {why} (process {status}); its log:\n{}",
            self.what,
            self.log_text()
        )
    }

    /// SIGTERM to its process group, then SIGKILL if it has not ended within 5 s; waits until
    /// it has ended.
    fn stop(&mut self) {
        if self.has_exited().is_some() {
            return;
        }
        // The leader is not reaped until it ends, so the group is still ours.
        unsafe { libc::killpg(self.pid, libc::SIGTERM) };
        if let Err(RecvTimeoutError::Timeout) = self.exited.recv_timeout(Duration::from_secs(5)) {
            unsafe { libc::killpg(self.pid, libc::SIGKILL) };
            let _ = self.exited.recv();
        }
        self.status = Some("stopped".into());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.what,
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// A private Dovecot IMAP server with one user, whose `INBOX` is the support mailbox.
///
/// Plaintext IMAP on 127.0.0.1 (LOGIN or AUTHENTICATE PLAIN, no TLS). Stopped, and its folder
/// removed, on drop.
pub struct ImapServer {
    /// The loopback port it listens on.
    pub port: u16,
    /// The one user's login.
    pub user: String,
    /// The user's password (random per server).
    pub password: String,
    // Field order matters: the process stops before its folder is removed.
    process: Process,
    dir: TempDir,
}

/// Starts a private Dovecot IMAP server on a free loopback port; returns once a login works.
pub fn start_imap() -> ImapServer {
    let user = "support".to_owned();
    let password = uuid::Uuid::new_v4().simple().to_string();
    let mut last = String::new();
    // A free port can be taken by another test between choosing and binding it: then try again.
    for _ in 0..3 {
        let dir = tempfile::Builder::new()
            .prefix("baton-test-imap-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut process = Process::spawn(
            "private dovecot",
            "bash",
            vec![
                script("dovecot-private.sh").display().to_string(),
                dir.path().display().to_string(),
                port.to_string(),
                user.clone(),
                password.clone(),
            ],
            dir.path().join("dovecot.log"),
        );
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // A login with this server's random password proves it is ours and ready.
            if let Ok(mut c) = ImapClient::connect(port)
                && c.login(&user, &password).is_ok()
            {
                let _ = c.logout();
                return ImapServer {
                    port,
                    user,
                    password,
                    process,
                    dir,
                };
            }
            if process.has_exited().is_some() {
                last = process.log_text();
                break;
            }
            if Instant::now() > deadline {
                process.fail("did not start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    panic!("private dovecot did not start (3 tries); last log:\n{last}")
}

impl ImapServer {
    /// The mailbox URL for the gateway: `imap://user:pass@127.0.0.1:port/INBOX`.
    pub fn url(&self) -> String {
        format!(
            "imap://{}:{}@127.0.0.1:{}/INBOX",
            self.user, self.password, self.port
        )
    }

    /// The folder the server keeps its config, state and Maildir in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Delivers a raw RFC 5322 message into `mailbox` (IMAP APPEND), creating the mailbox when
    /// it does not exist. `append("INBOX", raw)` is a customer mailing support. Line endings
    /// should be CRLF, as on the wire. Mailbox names are ASCII, `/` separating levels.
    pub fn append(&self, mailbox: &str, raw: &[u8]) {
        let mut c = self.client();
        let r = c.append(mailbox, raw).expect("IMAP APPEND failed");
        let r = if r.status == "NO" && r.text.contains("[TRYCREATE]") {
            c.simple(&format!("CREATE {}", quote(mailbox)))
                .expect("IMAP CREATE failed")
                .ok(&format!("CREATE {mailbox}"));
            c.append(mailbox, raw).expect("IMAP APPEND failed")
        } else {
            r
        };
        r.ok(&format!("APPEND to {mailbox}"));
        let _ = c.logout();
    }

    /// How many messages `mailbox` holds (IMAP STATUS); 0 when it does not exist.
    pub fn count(&self, mailbox: &str) -> usize {
        let mut c = self.client();
        let r = c
            .simple(&format!("STATUS {} (MESSAGES)", quote(mailbox)))
            .expect("IMAP STATUS failed");
        let _ = c.logout();
        // Dovecot 2.3 says "NO Mailbox doesn't exist" without the RFC 5530 code.
        if r.status == "NO"
            && (r.text.contains("[NONEXISTENT]") || r.text.contains("doesn't exist"))
        {
            return 0;
        }
        r.ok(&format!("STATUS {mailbox}"));
        r.untagged
            .iter()
            .find_map(|l| {
                let rest = l.split_once("(MESSAGES ")?.1;
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no MESSAGES in the STATUS reply: {:?}", r.untagged))
    }

    fn client(&self) -> ImapClient {
        let mut c = ImapClient::connect(self.port).expect("cannot reach the private dovecot");
        c.login(&self.user, &self.password)
            .expect("IMAP LOGIN failed")
            .ok("LOGIN");
        c
    }
}

/// An IMAP quoted string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A command's end: the tagged status, its text and the untagged lines before it.
struct ImapReply {
    status: String,
    text: String,
    untagged: Vec<String>,
}

impl ImapReply {
    fn ok(&self, what: &str) {
        assert_eq!(
            self.status, "OK",
            "IMAP {what}: {} {} (untagged: {:?})",
            self.status, self.text, self.untagged
        );
    }
}

/// A tiny blocking IMAP client: enough for LOGIN, APPEND, CREATE, STATUS and LOGOUT.
struct ImapClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl ImapClient {
    fn connect(port: u16) -> std::io::Result<Self> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, IMAP_TIMEOUT)?;
        stream.set_read_timeout(Some(IMAP_TIMEOUT))?;
        stream.set_write_timeout(Some(IMAP_TIMEOUT))?;
        let mut c = ImapClient {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            tag: 0,
        };
        let greeting = c.line()?;
        if !greeting.starts_with("* OK") {
            return Err(std::io::Error::other(format!("IMAP greeting: {greeting}")));
        }
        Ok(c)
    }

    /// One response line, with any literals (`{n}` at a line's end) read into it.
    fn line(&mut self) -> std::io::Result<String> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            if self.reader.read_until(b'\n', &mut out)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let part = String::from_utf8_lossy(&out[start..]).into_owned();
            let literal = part
                .trim_end()
                .strip_suffix('}')
                .and_then(|s| s.rsplit_once('{'))
                .and_then(|(_, n)| n.trim_end_matches('+').parse::<usize>().ok());
            match literal {
                Some(n) => {
                    let mut buf = vec![0; n];
                    self.reader.read_exact(&mut buf)?;
                    out.extend_from_slice(&buf);
                }
                None => break,
            }
        }
        Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("b{}", self.tag)
    }

    /// Reads until the tagged reply to `tag`.
    fn reply(&mut self, tag: &str) -> std::io::Result<ImapReply> {
        let mut untagged = Vec::new();
        loop {
            let line = self.line()?;
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
                return Ok(ImapReply {
                    status: status.to_owned(),
                    text: text.to_owned(),
                    untagged,
                });
            }
            untagged.push(line);
        }
    }

    fn simple(&mut self, command: &str) -> std::io::Result<ImapReply> {
        let tag = self.next_tag();
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())?;
        self.reply(&tag)
    }

    fn login(&mut self, user: &str, password: &str) -> std::io::Result<ImapReply> {
        let r = self.simple(&format!("LOGIN {} {}", quote(user), quote(password)))?;
        if r.status != "OK" {
            return Err(std::io::Error::other(format!(
                "LOGIN: {} {}",
                r.status, r.text
            )));
        }
        Ok(r)
    }

    /// APPEND with a synchronizing literal: waits for the server's `+` before the message.
    fn append(&mut self, mailbox: &str, raw: &[u8]) -> std::io::Result<ImapReply> {
        let tag = self.next_tag();
        self.writer.write_all(
            format!("{tag} APPEND {} {{{}}}\r\n", quote(mailbox), raw.len()).as_bytes(),
        )?;
        let mut untagged = Vec::new();
        loop {
            let line = self.line()?;
            if line.starts_with('+') {
                break;
            }
            if line.starts_with(&format!("{tag} ")) {
                // Refused before the literal (e.g. a bad mailbox name).
                let rest = &line[tag.len() + 1..];
                let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
                return Ok(ImapReply {
                    status: status.to_owned(),
                    text: text.to_owned(),
                    untagged,
                });
            }
            untagged.push(line);
        }
        self.writer.write_all(raw)?;
        self.writer.write_all(b"\r\n")?;
        self.reply(&tag)
    }

    fn logout(&mut self) -> std::io::Result<()> {
        self.simple("LOGOUT").map(|_| ())
    }
}

/// A capturing SMTP server: accepts every message (no AUTH needed; any AUTH accepted) and
/// keeps it as `<seq>.eml` and `<seq>.json` in its folder. Stopped, and its folder removed, on
/// drop.
pub struct SmtpCapture {
    /// The loopback port it listens on.
    pub port: u16,
    // Field order matters: the process stops before its folder is removed.
    process: Process,
    dir: TempDir,
}

/// Starts a capturing SMTP server on a free loopback port; the first `fail_first` messages are
/// answered `451 4.3.0 try again later` at the end of DATA and not kept.
pub fn start_smtp(fail_first: usize) -> SmtpCapture {
    let mut last = String::new();
    // A free port can be taken by another test between choosing and binding it: then try again.
    for _ in 0..3 {
        match try_start_smtp(free_port(), fail_first) {
            Ok(smtp) => return smtp,
            Err(log) => last = log,
        }
    }
    panic!("capturing SMTP server did not start (3 tries); last log:\n{last}")
}

/// Like [`start_smtp`], on a given port (a relay that comes up where the gateway already
/// expects it).
pub fn start_smtp_on(port: u16, fail_first: usize) -> SmtpCapture {
    try_start_smtp(port, fail_first)
        .unwrap_or_else(|log| panic!("capturing SMTP server did not start on {port}:\n{log}"))
}

/// Starts the server on `port`; its log when it exits before greeting.
fn try_start_smtp(port: u16, fail_first: usize) -> Result<SmtpCapture, String> {
    let dir = tempfile::Builder::new()
        .prefix("baton-test-smtp-")
        .tempdir()
        .unwrap();
    let mut process = Process::spawn(
        "capturing SMTP server",
        "python3",
        vec![
            script("smtp-capture.py").display().to_string(),
            port.to_string(),
            dir.path().join("mail").display().to_string(),
            "--fail-first".into(),
            fail_first.to_string(),
        ],
        dir.path().join("smtp.log"),
    );
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if smtp_greets(port) && process.has_exited().is_none() {
            return Ok(SmtpCapture { port, process, dir });
        }
        if process.has_exited().is_some() {
            return Err(process.log_text());
        }
        if Instant::now() > deadline {
            process.fail("did not start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Whether a capturing SMTP server answers on `port` with its 220 greeting.
fn smtp_greets(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let _ = BufReader::new(&s).read_line(&mut line);
    let _ = (&s).write_all(b"QUIT\r\n");
    line.starts_with("220 smtp-capture.test")
}

impl SmtpCapture {
    /// The relay URL for the gateway: `smtp://127.0.0.1:port` (plaintext, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The sequence numbers of the kept messages, in order.
    fn seqs(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = std::fs::read_dir(self.mail_dir())
            .map(|rd| {
                rd.filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    name.strip_suffix(".eml")?.parse().ok()
                })
                .collect()
            })
            .unwrap_or_default();
        seqs.sort_unstable();
        seqs
    }

    /// Every message kept so far, raw bytes as received, in the order received. Does not wait.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.seqs()
            .into_iter()
            .map(|n| std::fs::read(self.mail_dir().join(format!("{n}.eml"))).unwrap())
            .collect()
    }

    /// Waits until at least `n` messages were kept; returns all kept messages (raw bytes as
    /// received, in order), so a test can also check that no more than `n` arrived. Panics on
    /// timeout, saying how many arrived, or when the server has died.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.seqs().len() >= n {
                return self.messages();
            }
            let got = self.seqs().len();
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {n} mail(s) at {}: {got} arrived; \
                     server log:\n{}",
                    self.url(),
                    self.process.log_text()
                );
            }
            if let Ok(status) = self.process.exited.try_recv() {
                panic!(
                    "the capturing SMTP server died ({status:?}) with {got} of {n} mail(s); \
                     log:\n{}",
                    self.process.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The envelope of every kept message, in order:
    /// `{"mail_from": ..., "rcpt_tos": [...], "auth_login": null | "login"}`.
    pub fn envelopes(&self) -> Vec<Value> {
        self.seqs()
            .into_iter()
            .map(|n| {
                let raw = std::fs::read(self.mail_dir().join(format!("{n}.json"))).unwrap();
                serde_json::from_slice(&raw).unwrap()
            })
            .collect()
    }
}

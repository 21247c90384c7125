//! The IMAP poller: imports new mail from a mailbox. Its position (the highest UID imported
//! under the mailbox's UIDVALIDITY) lives in the store and moves only after a mail is stored,
//! so nothing is imported twice or lost across restarts; a mail imported again after a crash
//! between the two is recognized by its Message-ID. Imported mail is also flagged \Seen on the
//! server, for people looking at the same mailbox.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::inbound::{EmailError, EmailInbound};
use crate::ingest::Pipeline;
use crate::store::{SharedStore, StoreError};

/// Mails fetched per round trip: bounds memory when a large mailbox is first imported.
const FETCH_CHUNK: usize = 20;

/// A parsed `imap://user:pass@host:port/MAILBOX` (or `imaps://`).
#[derive(Clone)]
pub struct ImapUrl {
    tls: bool,
    host: String,
    port: u16,
    user: String,
    password: SecretString,
    mailbox: String,
}

impl std::fmt::Debug for ImapUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(
            f,
            "{}://{}@{}:{}/{}",
            if self.tls { "imaps" } else { "imap" },
            self.user,
            self.host,
            self.port,
            self.mailbox
        )
    }
}

/// Why the IMAP URL is unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid IMAP URL (expected imap[s]://user:password@host[:port][/mailbox]): {0}")]
pub struct ImapUrlError(&'static str);

impl ImapUrl {
    /// Parses the URL; user and password may be percent-encoded.
    pub fn parse(url: &str) -> Result<Self, ImapUrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(ImapUrlError("no scheme"))?;
        let tls = match scheme {
            "imap" => false,
            "imaps" => true,
            _ => return Err(ImapUrlError("the scheme must be imap or imaps")),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority
            .rsplit_once('@')
            .ok_or(ImapUrlError("no user@ part"))?;
        let (user, password) = userinfo
            .split_once(':')
            .ok_or(ImapUrlError("no password"))?;
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| ImapUrlError("bad port"))?),
            None => (hostport, if tls { 993 } else { 143 }),
        };
        if host.is_empty() || user.is_empty() {
            return Err(ImapUrlError("empty host or user"));
        }
        let mailbox = if path.is_empty() {
            "INBOX".to_owned()
        } else {
            decode(path)?
        };
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            user: decode(user)?,
            password: SecretString::from(decode(password)?),
            mailbox,
        })
    }
}

fn decode(s: &str) -> Result<String, ImapUrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or(ImapUrlError("bad percent-encoding"))?;
            out.push(
                u8::from_str_radix(hex, 16).map_err(|_| ImapUrlError("bad percent-encoding"))?,
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ImapUrlError("not UTF-8"))
}

/// A failed poll; the next one retries.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// Connecting, TLS, login or a command failed.
    #[error("IMAP: {0}")]
    Imap(String),
    /// The store could not take a mail; it is fetched again next time.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

fn imap_err(e: impl std::fmt::Display) -> ImapError {
    ImapError::Imap(e.to_string())
}

/// Polls one mailbox.
#[derive(Clone)]
pub struct ImapPoller {
    url: ImapUrl,
    inbound: EmailInbound,
    pipeline: Pipeline,
    store: SharedStore,
    interval: Duration,
    /// One poll at a time per mailbox: the worker's poll and one driven by a test or an
    /// operator would otherwise fetch the same new mail twice.
    polling: Arc<tokio::sync::Mutex<()>>,
}

impl ImapPoller {
    /// A poller for `url`, storing mail through `pipeline`.
    pub fn new(
        url: ImapUrl,
        inbound: EmailInbound,
        pipeline: Pipeline,
        store: SharedStore,
        interval: Duration,
    ) -> Self {
        Self {
            url,
            inbound,
            pipeline,
            store,
            interval,
            polling: Arc::default(),
        }
    }

    /// Polls until `shutdown` turns true; after a failure waits longer (up to 5 minutes).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        loop {
            let wait = match self.poll_once().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(imported = n, mailbox = %self.url.mailbox, "imported mail");
                    }
                    failures = 0;
                    self.interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let backoff = self.interval.saturating_mul(1 << failures.min(6));
                    tracing::warn!(error = %e, url = ?self.url, failures, "IMAP poll failed; retrying");
                    backoff.min(Duration::from_secs(300))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One step: connects, imports every mail after the stored position, disconnects.
    /// Returns how many mails were stored.
    pub async fn poll_once(&self) -> Result<usize, ImapError> {
        let _one_at_a_time = self.polling.lock().await;
        let tcp = tokio::time::timeout(
            Duration::from_secs(30),
            TcpStream::connect((self.url.host.as_str(), self.url.port)),
        )
        .await
        .map_err(|_| ImapError::Imap("connect timed out".into()))?
        .map_err(imap_err)?;
        if self.url.tls {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = tokio_rustls::rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.url.host.clone())
                .map_err(imap_err)?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(imap_err)?;
            self.session(stream).await
        } else {
            self.session(tcp).await
        }
    }

    async fn session<T>(&self, stream: T) -> Result<usize, ImapError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug,
    {
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .map_err(imap_err)?
            .ok_or_else(|| ImapError::Imap("no greeting".into()))?;
        let mut session = client
            .login(&self.url.user, self.url.password.expose_secret())
            .await
            .map_err(|(e, _)| imap_err(e))?;
        let result = self.import(&mut session).await;
        let _ = session.logout().await;
        result
    }

    async fn import<T>(&self, session: &mut async_imap::Session<T>) -> Result<usize, ImapError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug,
    {
        let mailbox = &self.url.mailbox;
        let selected = session.select(mailbox).await.map_err(imap_err)?;
        let validity = selected.uid_validity.unwrap_or(0);
        let mut position = self.store.imap_position(mailbox, validity).await?;
        // "n:*" always includes the highest UID, even below n: filter, do not trust the range.
        let mut uids: Vec<u32> = session
            .uid_search(format!("UID {}:*", position.saturating_add(1)))
            .await
            .map_err(imap_err)?
            .into_iter()
            .filter(|&u| u > position)
            .collect();
        uids.sort_unstable();
        let mut imported = 0;
        for chunk in uids.chunks(FETCH_CHUNK) {
            let set = chunk
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut mails: Vec<(u32, Vec<u8>)> = session
                .uid_fetch(&set, "(UID BODY.PEEK[])")
                .await
                .map_err(imap_err)?
                .try_filter_map(|f| async move { Ok(f.uid.zip(f.body().map(<[u8]>::to_vec))) })
                .try_collect()
                .await
                .map_err(imap_err)?;
            mails.sort_unstable_by_key(|(uid, _)| *uid);
            for (uid, raw) in mails {
                match self.inbound.prepare(&raw) {
                    Ok(email) => {
                        self.pipeline.accept_email(email).await?;
                        imported += 1;
                    }
                    // A mail that cannot be taken in never will be: skip it rather than block
                    // the mailbox. It stays on the server.
                    Err(
                        e @ (EmailError::Unparsable(_)
                        | EmailError::NoSender
                        | EmailError::TooLarge(_)
                        | EmailError::FromOurselves),
                    ) => {
                        tracing::warn!(uid, error = %e, "skipping a mail that cannot be imported");
                    }
                }
                position = uid;
                self.store
                    .set_imap_position(mailbox, validity, position)
                    .await?;
            }
            // Best effort: the store's position, not the flag, decides what is imported.
            if let Ok(updates) = session.uid_store(&set, "+FLAGS.SILENT (\\Seen)").await {
                let _ = updates.try_collect::<Vec<_>>().await;
            }
        }
        Ok(imported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imap_urls_give_host_port_user_and_mailbox_but_never_show_the_password() {
        let u = ImapUrl::parse("imap://support%40example.com:p%40ss@127.0.0.1:1143/Support%20Mail")
            .unwrap();
        assert!(!u.tls);
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 1143));
        assert_eq!(u.user, "support@example.com");
        assert_eq!(u.password.expose_secret(), "p@ss");
        assert_eq!(u.mailbox, "Support Mail");
        assert!(!format!("{u:?}").contains("p@ss"));
        let s = ImapUrl::parse("imaps://u:p@mail.example.com").unwrap();
        assert!(s.tls);
        assert_eq!((s.port, s.mailbox.as_str()), (993, "INBOX"));
    }

    #[test]
    fn unusable_imap_urls_are_refused() {
        for bad in [
            "http://u:p@h",
            "imap://h",
            "imap://u@h",
            "imap://u:p@h:notaport",
            "imap://u:p@h/%zz",
        ] {
            assert!(ImapUrl::parse(bad).is_err(), "{bad}");
        }
    }
}

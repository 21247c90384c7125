//! The email channel: mail comes in as raw MIME (POST /ingest/email or the IMAP poller), is
//! parsed, trimmed of quoted history and threaded into its conversation; replies leave over
//! SMTP with the headers that thread them in the customer's mail client.

pub mod imap;
pub mod inbound;
pub mod outbound;
pub mod parse;
pub mod thread;
pub mod trim;

pub use outbound::EmailConnector;
pub use thread::SupportAddress;

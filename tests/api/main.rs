//! Black-box tests: the real gateway on a loopback port, a temp SQLite file, a real ClickHouse.

mod access;
mod analytics;
mod bad_input;
mod browser;
mod dashboard;
mod email;
mod faults;
mod handoff;
mod helpers;
mod mail_servers;
mod messages;
mod pipeline;
mod reports;
mod restart;
mod rollup;
mod router;
mod webchat;
mod webhooks;
mod workspace;

//! Black-box tests: the real gateway on a loopback port, a temp SQLite file (or, with
//! BATON_TEST_STORE=postgres, a database in a private PostgreSQL server), a real ClickHouse.

mod access;
mod analytics;
mod bad_input;
mod browser;
mod dashboard;
mod email;
mod faults;
mod handoff;
mod helpers;
mod instances;
mod mail_servers;
mod messages;
mod outages;
mod pipeline;
mod reports;
mod restart;
mod rollup;
mod router;
mod webchat;
mod webhooks;
mod workspace;

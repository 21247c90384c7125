//! Baton: an omnichannel support gateway.
//!
//! Customers write on any channel; a bot answers first; when it cannot help, the conversation
//! is handed to a person with its whole context; every handoff step becomes an event in
//! ClickHouse for the live dashboard.
//!
//! The crate is organized by subject:
//! - [`model`]: the conversation model, pure types.
//! - [`store`]: the durable store behind one trait (SQLite by default, PostgreSQL for several
//!   instances).
//! - [`channels`]: one connector per channel behind one trait, and outbound delivery.
//! - [`ingest`]: the inbound pipeline (store, then bot or handoff).
//! - [`bot`]: the built-in FAQ bot and the external bot webhook.
//! - [`handoff`]: escalation and routing to agents.
//! - [`analytics`]: the event shipper and reports from ClickHouse.
//! - [`web`]: HTTP routes, authentication, pages; [`web::Application`] builds the server.

pub mod accounts;
pub mod analytics;
pub mod bot;
pub mod channels;
pub mod config;
pub mod demo;
pub mod handoff;
pub mod ingest;
pub mod model;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod web;

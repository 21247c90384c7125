//! Analytics: handoff events travel from the store's outbox to ClickHouse ([`Shipper`]) and
//! come back as dashboard figures ([`reports`]).

pub mod clickhouse;
pub mod histogram;
pub mod reports;
pub mod rollup;
mod shipper;

pub use self::clickhouse::{AnalyticsError, ClickHouse};
pub use shipper::{MAX_INSERT_BYTES, READ_CHUNK, ShipError, ShipStats, Shipper};

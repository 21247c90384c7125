//! Structured logging with `tracing`.

use tracing_subscriber::{EnvFilter, fmt};

/// An error and all its causes, `: `-separated, for logs and error messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `format` is `text` or
/// `json`. Safe to call more than once; later calls do nothing.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

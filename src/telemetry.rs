//! Logging: `tracing` to stderr (stdout stays for command output), JSON for machines or pretty for people,
//! filtered by `RUST_LOG` (default `info` for `serve` and `sim`, `error`
//! for the commands whose output is their answer). Secrets never reach here: they
//! are wrapped in [`Secret`](crate::config::Secret) and never recorded.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber, logging at `default_level` unless
/// `RUST_LOG` says otherwise; a second call (tests) is a no-op.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

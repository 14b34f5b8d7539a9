//! Structured logging. JSON lines by default (what log pipelines ingest), human-readable output
//! for local development (`LOG_FORMAT=pretty`). `RUST_LOG`, when set, overrides `LOG_LEVEL`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber. Later calls (a second application built in the same test
/// process) keep the first subscriber and do nothing.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    // An error here means a subscriber is already installed, which is fine.
    let _ = match settings.format {
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
        }
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

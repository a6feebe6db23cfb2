//! JSON logs on stderr.

use tracing_subscriber::EnvFilter;

/// Installs a JSON subscriber writing to stderr, filtered by `RUST_LOG`
/// (default `info`), with the current span (request id) on every line.
/// Calling it again does nothing, so tests and binaries may both call it.
/// Nothing secret is ever passed to `tracing` by kessai code.
pub fn init_json_logs(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .try_init();
    if installed.is_ok() {
        tracing::info!(service, "logging started");
    }
}

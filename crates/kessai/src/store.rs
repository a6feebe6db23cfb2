//! `kessai store`: the mall's web shop, until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::Context;

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    kessai_http::init_json_logs("store");
    let config =
        kessai_store::StoreConfig::load(config_path).with_context(|| format!("loading {}", config_path.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        eprintln!("store {} listening on {}", config.mall_id, config.listen);
        kessai_store::run(config, shutdown_signal()).await
    })
}

/// Resolves on Ctrl-C or SIGTERM, so the server drains and stops cleanly.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

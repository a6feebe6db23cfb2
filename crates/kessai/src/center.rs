//! `kessai center`: the settlement center, until Ctrl-C or SIGTERM.

use std::path::Path;

use anyhow::Context;
use kessai_center::config::CenterConfig;

pub fn run(config_path: &Path, init_only: bool) -> anyhow::Result<()> {
    let config = CenterConfig::load(config_path).with_context(|| format!("loading {}", config_path.display()))?;
    kessai_center::app::init(&config).context("initialising the center's keys")?;
    if init_only {
        println!("center {} initialised in {}", config.party_id, config.data_dir.display());
        return Ok(());
    }
    kessai_http::init_json_logs("center");
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        eprintln!("center {} listening on {}", config.party_id, config.listen);
        kessai_center::app::run(config, crate::store::shutdown_signal()).await
    })
}

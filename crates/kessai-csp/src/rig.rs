//! A provider on loopback with a CA of its own, for tests and demos that
//! run the other parties against a real provider: its own directory, KEK
//! (fixed: not for production) and register; its server certificate
//! `localhost`; client certificates `center` and `other-center` acting as
//! the center, `bank` acting as the bank, `stranger` (the center's party,
//! no client of it) and `shop` (a store); clients `bank` (with the bank's
//! delivery key, if given), `center`, `other-center` and `shop`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kessai_core::jwe::X25519Jwk;
use kessai_core::random::SeededRandom;
use kessai_core::time::Clock;
use kessai_core::token::TokenKey;
use kessai_http::loopback::{Loopback, loopback_ca};
use kessai_tls::Party;

use crate::{Provider, ProviderConfig};
use kessai_http::party::ServiceConfig as _;

/// A provider serving on loopback, and how to reach it.
pub struct ProviderRig {
    pub provider: Arc<Provider>,
    pub url: String,
    pub dir: PathBuf,
    pub config: ProviderConfig,
    pub kek: [u8; 32],
    served: Loopback,
}

impl std::fmt::Debug for ProviderRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRig").field("url", &self.url).field("dir", &self.dir).finish_non_exhaustive()
    }
}

static RIGS: AtomicUsize = AtomicUsize::new(0);

impl ProviderRig {
    /// Starts a provider in a directory of its own under `parent`, holding
    /// `keys` (written sealed under its KEK, as `kessai csp key-new` does),
    /// on `clock`.
    pub async fn start(
        parent: &Path,
        keys: &[&TokenKey],
        delivery_key: Option<&X25519Jwk>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<ProviderRig> {
        ProviderRig::start_with(parent, keys, delivery_key, clock, "").await
    }

    /// As [`ProviderRig::start`], with `more` appended to its configuration
    /// (a `[limits]` table, say).
    pub async fn start_with(
        parent: &Path,
        keys: &[&TokenKey],
        delivery_key: Option<&X25519Jwk>,
        clock: Arc<dyn Clock>,
        more: &str,
    ) -> anyhow::Result<ProviderRig> {
        let dir = parent.join(format!("csp-{}-{}", std::process::id(), RIGS.fetch_add(1, Ordering::SeqCst)));
        loopback_ca(
            &dir.join("ca"),
            &[
                ("center", Party::Center),
                ("other-center", Party::Center),
                ("bank", Party::Bank),
                ("stranger", Party::Center),
                ("shop", Party::Store),
            ],
        )?;
        let kek = [0x5a; 32];
        let delivery = delivery_key
            .map(|k| format!("\ndelivery_key = {{ kty = \"OKP\", crv = \"X25519\", x = \"{}\" }}", k.x))
            .unwrap_or_default();
        let text = format!(
            "provider_id = \"kessai-csp\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{d}\"\nkek_file = \"kek.hex\"\n\
             [tls]\nca_dir = \"ca\"\nserver_name = \"localhost\"\n\
             [[clients]]\nname = \"bank\"{delivery}\n[[clients]]\nname = \"center\"\n\
             [[clients]]\nname = \"other-center\"\n[[clients]]\nname = \"shop\"\n{more}",
            d = dir.display()
        );
        let config = ProviderConfig::from_toml(&text)?;
        kessai_tls::write_new_file(&dir.join("kek.hex"), hex::encode(kek).as_bytes(), true)?;
        let key_dir = dir.join(crate::KEYS_DIR);
        std::fs::create_dir_all(&key_dir)?;
        for k in keys {
            let sealed = k.seal_at_rest(&kek, &mut SeededRandom::new(u64::from(k.version)))?;
            kessai_tls::write_new_file(&key_dir.join(format!("v{}.sealed", k.version)), &sealed, true)?;
        }
        let provider = Arc::new(Provider::open(&config, clock).await?);
        let mut rig = ProviderRig { provider, url: String::new(), dir, config, kek, served: Loopback::default() };
        rig.serve().await?;
        Ok(rig)
    }

    async fn serve(&mut self) -> anyhow::Result<()> {
        let (config, provider) = (self.config.clone(), Arc::clone(&self.provider));
        self.served
            .start(
                |listener, shutdown| async move { crate::api::serve_on(&config, provider, listener, shutdown).await },
            )
            .await?;
        self.url = self.served.url.clone();
        Ok(())
    }

    /// Stops serving (the provider cannot be reached).
    pub fn stop(&mut self) {
        self.served.stop();
    }

    /// The provider restarted over its directory (its register kept), on
    /// the same port.
    pub async fn restart(&mut self, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
        self.stop();
        self.provider = Arc::new(Provider::open(&self.config, clock).await?);
        self.serve().await
    }

    /// TLS for a client presenting certificate `name` of the rig's CA.
    pub fn client_tls(&self, name: &str) -> anyhow::Result<rustls::ClientConfig> {
        kessai_http::loopback::client_tls(&self.dir.join("ca"), name)
    }
}

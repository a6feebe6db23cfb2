//! A bank on loopback with a CA of its own, for tests and demos that run
//! the center against a real bank: its own directory, KEK (fixed: not for
//! production), delivery key and register; its server certificate
//! `localhost`; client certificates `center` and `other-center` (centers
//! it serves), `stranger` (acting as the center, not served) and `shop` (a
//! store).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kessai_core::random::SeededRandom;
use kessai_core::time::Clock;
use kessai_core::token::TokenKey;
use kessai_http::loopback::{Loopback, loopback_ca};
use kessai_tls::Party;

use crate::{Bank, BankConfig};
use kessai_http::party::ServiceConfig as _;

/// A bank serving on loopback, and how to reach it.
pub struct BankRig {
    pub bank: Arc<Bank>,
    pub url: String,
    pub dir: PathBuf,
    pub config: BankConfig,
    /// Its KEK (fixed: a rig's, not for production).
    pub kek: [u8; 32],
    served: Loopback,
}

impl std::fmt::Debug for BankRig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankRig").field("url", &self.url).field("dir", &self.dir).finish_non_exhaustive()
    }
}

static RIGS: AtomicUsize = AtomicUsize::new(0);

/// The pool account the rig's statements name.
pub const POOL_ACCOUNT: &str = "JP00KESSAIPOOL0001";

impl BankRig {
    /// Starts a bank in a directory of its own under `parent`, holding
    /// `keys` as versions the provider delivered (sealed under its KEK), on
    /// `clock`; `more` is appended to its configuration's `[tokens]`.
    pub async fn start(
        parent: &Path,
        keys: &[&TokenKey],
        clock: Arc<dyn Clock>,
        more_tokens: &str,
    ) -> anyhow::Result<BankRig> {
        let dir = parent.join(format!("bank-{}-{}", std::process::id(), RIGS.fetch_add(1, Ordering::SeqCst)));
        loopback_ca(
            &dir.join("ca"),
            &[
                ("center", Party::Center),
                ("other-center", Party::Center),
                ("stranger", Party::Center),
                ("shop", Party::Store),
                ("bank", Party::Bank),
            ],
        )?;
        let kek = [0x6b; 32];
        let text = format!(
            "bank_id = \"0999\"\npool_account = \"{POOL_ACCOUNT}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{d}\"\n\
             kek_file = \"kek.hex\"\ncenters = [\"center\", \"other-center\"]\n\
             [tls]\nca_dir = \"ca\"\nserver_name = \"localhost\"\n\
             [tokens]\nprovider_id = \"kessai-csp\"\n{more_tokens}\n",
            d = dir.display()
        );
        let config = BankConfig::from_toml(&text)?;
        kessai_tls::write_new_file(&dir.join("kek.hex"), hex::encode(kek).as_bytes(), true)?;
        let key_dir = dir.join(crate::KEYS_DIR);
        crate::delivery_key_once(&key_dir, &kek)?;
        for k in keys {
            let sealed = k.seal_at_rest(&kek, &mut SeededRandom::new(u64::from(k.version)))?;
            kessai_tls::write_new_file(&key_dir.join(format!("v{}.sealed", k.version)), &sealed, true)?;
        }
        let bank = Arc::new(Bank::open(&config, clock).await?);
        let mut rig = BankRig { bank, url: String::new(), dir, config, kek, served: Loopback::default() };
        rig.serve().await?;
        Ok(rig)
    }

    async fn serve(&mut self) -> anyhow::Result<()> {
        let (config, bank) = (self.config.clone(), Arc::clone(&self.bank));
        self.served
            .start(|listener, shutdown| async move { crate::api::serve_on(&config, bank, listener, shutdown).await })
            .await?;
        self.url = self.served.url.clone();
        Ok(())
    }

    /// Stops serving (the bank cannot be reached).
    pub fn stop(&mut self) {
        self.served.stop();
    }

    /// The bank restarted over its directory (its register kept), on the
    /// same port.
    pub async fn restart(&mut self, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
        self.stop();
        self.bank = Arc::new(Bank::open(&self.config, clock).await?);
        self.serve().await
    }

    /// TLS for a client presenting certificate `name` of the rig's CA.
    pub fn client_tls(&self, name: &str) -> anyhow::Result<rustls::ClientConfig> {
        kessai_http::loopback::client_tls(&self.dir.join("ca"), name)
    }
}

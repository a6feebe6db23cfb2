//! A party's service on loopback, for tests and demos that run the other
//! parties against the real thing: a CA of its own, a server certificate
//! `localhost`, and a listener that can be stopped and started again on
//! the same port.

use std::future::Future;
use std::path::Path;

use anyhow::Context;
use kessai_tls::{CaDir, Party, Role};

/// A CA in `dir` with a server certificate `localhost` (for 127.0.0.1)
/// and a client certificate for each of `clients`.
pub fn loopback_ca(dir: &Path, clients: &[(&str, Party)]) -> anyhow::Result<CaDir> {
    let ca = CaDir::new(dir);
    ca.init()?;
    ca.issue(Role::Server, "localhost", &["127.0.0.1".into()])?;
    for (name, party) in clients {
        ca.issue(Role::Client(*party), name, &[])?;
    }
    Ok(ca)
}

/// TLS for a client presenting certificate `name` of the CA in `ca_dir`.
pub fn client_tls(ca_dir: &Path, name: &str) -> anyhow::Result<rustls::ClientConfig> {
    let ca = CaDir::new(ca_dir);
    Ok(kessai_tls::client_config(&ca.ca_cert(), Some((&ca, name)))?)
}

/// Where the service listens, and how to stop it.
#[derive(Debug, Default)]
pub struct Loopback {
    /// `https://127.0.0.1:<port>` once started.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Loopback {
    /// Serves with `serve(listener, shutdown)` on the port it had (a
    /// restart, once the old listener went), else a new one.
    pub async fn start<F, Fut>(&mut self, serve: F) -> anyhow::Result<()>
    where
        F: FnOnce(tokio::net::TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = self.url.strip_prefix("https://").unwrap_or("127.0.0.1:0").to_owned();
        let mut bound = tokio::net::TcpListener::bind(&addr).await;
        for _ in 0..100 {
            if bound.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            bound = tokio::net::TcpListener::bind(&addr).await;
        }
        let listener = bound.with_context(|| format!("binding {addr}"))?;
        self.url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // Until stopped; dropped, it keeps serving while the runtime runs.
        let shutdown = Box::pin(async {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        tokio::spawn(serve(listener, shutdown));
        self.stop = Some(tx);
        Ok(())
    }

    /// Stops serving: the service cannot be reached.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

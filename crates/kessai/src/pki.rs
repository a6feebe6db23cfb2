//! `kessai pki`: the local CA.

use std::path::Path;

use anyhow::Context;
use kessai_tls::{CaDir, Role};

pub fn init(dir: &Path) -> anyhow::Result<()> {
    let ca = CaDir::new(dir);
    ca.init().with_context(|| format!("making a CA in {}", dir.display()))?;
    println!("CA certificate: {}", ca.ca_cert().display());
    println!("CA key:         {} (mode 0600)", ca.ca_key().display());
    Ok(())
}

pub fn issue(dir: &Path, server: Option<String>, client: Option<String>, sans: &[String]) -> anyhow::Result<()> {
    let ca = CaDir::new(dir);
    let (role, name) = match (server, client) {
        (Some(name), None) => (Role::Server, name),
        (None, Some(name)) if sans.is_empty() => (Role::Client, name),
        (None, Some(_)) => anyhow::bail!("--san applies to server certificates only"),
        _ => anyhow::bail!("give exactly one of --server NAME or --client NAME"),
    };
    ca.issue(role, &name, sans).with_context(|| format!("issuing a certificate for {name}"))?;
    println!("certificate: {}", ca.cert(&name).display());
    println!("key:         {} (mode 0600)", ca.key(&name).display());
    Ok(())
}

pub fn revoke(dir: &Path, name: &str, reason: &str) -> anyhow::Result<()> {
    let ca = CaDir::new(dir);
    let Some(why) = kessai_tls::parse_reason(reason) else {
        anyhow::bail!(
            "--reason {reason:?}: key-compromise, superseded, affiliation-changed, cessation-of-operation or unspecified"
        );
    };
    let serial = ca.revoke(name, why).with_context(|| format!("revoking the certificate of {name}"))?;
    println!("revoked:         {name} (serial {serial})");
    println!("revocation list: {}", ca.crl().display());
    println!("restart the center and the stores that trust this CA: they refuse it from then on");
    Ok(())
}

//! `kessai pki`: the local CA.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kessai_tls::{CaDir, Role};

/// Where the CA's key is.
#[derive(Debug, clap::Args)]
pub struct CaKey {
    /// The CA's key, kept apart from DIR and the service keys in it (on
    /// removable or offline storage); default DIR/ca.key, with a warning.
    #[arg(long, value_name = "FILE", env = "KESSAI_CA_KEY")]
    ca_key: Option<PathBuf>,
}

impl CaKey {
    /// The CA in `dir` with this key; warns when the key sits beside the
    /// service keys.
    pub fn ca(&self, dir: &Path) -> CaDir {
        let ca = match &self.ca_key {
            Some(key) => CaDir::new(dir).with_ca_key(key),
            None => CaDir::new(dir),
        };
        if ca.ca_key_beside_service_keys() {
            eprintln!(
                "warning: the CA key {} is in {}, beside the service keys it certifies: whoever can read them can \
                 issue certificates the center and stores trust. Keep it apart: --ca-key FILE (or KESSAI_CA_KEY) on \
                 storage the services cannot read",
                ca.ca_key().display(),
                dir.display()
            );
        }
        ca
    }
}

pub fn init(ca: &CaDir) -> anyhow::Result<()> {
    ca.init().context("making a CA")?;
    println!("CA certificate: {}", ca.ca_cert().display());
    println!("CA key:         {} (mode 0600)", ca.ca_key().display());
    Ok(())
}

/// Issues a server certificate, or a client certificate for `(name, party)`.
pub fn issue(
    ca: &CaDir,
    server: Option<String>,
    client: Option<(String, String)>,
    sans: &[String],
) -> anyhow::Result<()> {
    let (role, name) = match (server, client) {
        (Some(name), None) => (Role::Server, name),
        (None, Some((name, party))) if sans.is_empty() => {
            let Some(party) = kessai_tls::Party::parse(&party) else {
                anyhow::bail!("--party {party:?}: center, store, operator, monitor or bank");
            };
            (Role::Client(party), name)
        }
        (None, Some(_)) => anyhow::bail!("--san applies to server certificates only"),
        _ => anyhow::bail!("give exactly one of --server NAME or --client NAME"),
    };
    ca.issue(role, &name, sans).with_context(|| format!("issuing a certificate for {name}"))?;
    println!("certificate: {}", ca.cert(&name).display());
    println!("key:         {} (mode 0600)", ca.key(&name).display());
    Ok(())
}

pub fn revoke(ca: &CaDir, name: &str, reason: &str) -> anyhow::Result<()> {
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

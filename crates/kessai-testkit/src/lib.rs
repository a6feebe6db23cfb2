//! Shared helpers for kessai's tests.
//!
//! Tests that need a tool from outside Rust (a Python venv with a JOSE
//! library, openssl, pcscd, PostgreSQL) find it through [`external_tool`]:
//! under `CI=true` a missing tool fails the test; elsewhere the test is
//! skipped with a printed reason. The test command (`scripts/test`)
//! installs every tool and exports the variables named here.

use std::path::PathBuf;

/// Whether we run in CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds an external tool: the path in environment variable `env_var` if
/// set, else `default_path` if it exists. `None` means "skip this test"
/// (outside CI only; in CI a missing tool panics, failing the test).
pub fn external_tool(env_var: &str, default_path: Option<&str>, what: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os(env_var).map(PathBuf::from).or_else(|| default_path.map(PathBuf::from));
    if let Some(path) = candidate.filter(|p| p.exists()) {
        return Some(path);
    }
    let reason = format!("{what} not found (set {env_var}, or run scripts/test, which installs it)");
    if in_ci() {
        // Failing loudly is the point: CI must never pass by skipping.
        #[allow(clippy::panic)]
        {
            panic!("CI=true and {reason}");
        }
    }
    eprintln!("SKIPPED: {reason}");
    None
}

/// A tool expected on PATH (e.g. `openssl`), found the same way.
pub fn tool_on_path(program: &str, env_var: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file()));
    let found = on_path.as_ref().and_then(|p| p.to_str()).map(str::to_owned);
    external_tool(env_var, found.as_deref(), program)
}

/// A fresh, empty database on the throwaway PostgreSQL cluster that
/// `scripts/with-postgres` starts (`KESSAI_TEST_DATABASE_URL`), named after
/// the test and this process. `None` means "skip" (outside CI only; under
/// `CI=true` a missing cluster fails the test).
pub async fn postgres_database(name: &str) -> Option<String> {
    use sqlx::Connection;
    let Ok(url) = std::env::var("KESSAI_TEST_DATABASE_URL") else {
        if in_ci() {
            #[allow(clippy::panic)]
            {
                panic!("CI=true but KESSAI_TEST_DATABASE_URL is unset (run under scripts/with-postgres)");
            }
        }
        eprintln!("SKIPPED: PostgreSQL tests need KESSAI_TEST_DATABASE_URL (scripts/with-postgres sets it)");
        return None;
    };
    let db = format!("kessai_{name}_{}", std::process::id());
    // A test helper: failing loudly on a broken cluster is what we want.
    #[allow(clippy::expect_used)]
    {
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connecting to the test cluster");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
            .execute(&mut admin)
            .await
            .expect("drop");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut admin).await.expect("create");
    }
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Some(format!("{base}/{db}"))
}

/// The throwaway SoftHSM2 token that `scripts/with-softhsm` makes.
#[derive(Debug, Clone)]
pub struct SoftHsm {
    /// `libsofthsm2.so`.
    pub module: PathBuf,
    pub token_label: String,
    pub user_pin: String,
}

/// The SoftHSM2 token of `scripts/with-softhsm`
/// (`KESSAI_TEST_PKCS11_{MODULE,TOKEN,PIN}`). `None` means "skip"
/// (outside CI only; under `CI=true` a missing token fails the test).
pub fn softhsm() -> Option<SoftHsm> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("KESSAI_TEST_PKCS11_MODULE"), var("KESSAI_TEST_PKCS11_TOKEN"), var("KESSAI_TEST_PKCS11_PIN")) {
        (Some(module), Some(token_label), Some(user_pin)) => {
            Some(SoftHsm { module: module.into(), token_label, user_pin })
        }
        _ => {
            if in_ci() {
                #[allow(clippy::panic)]
                {
                    panic!(
                        "CI=true but KESSAI_TEST_PKCS11_MODULE/TOKEN/PIN are unset (run under scripts/with-softhsm)"
                    );
                }
            }
            eprintln!("SKIPPED: PKCS#11 tests need a SoftHSM2 token (scripts/with-softhsm makes one)");
            None
        }
    }
}

//! Opening a fresh ledger on either backend, and building test events tersely.

use std::sync::atomic::{AtomicU64, Ordering};

use kessai_ledger::{AccountFlags, AccountKind, Currency, Ledger, NewAccount, NewTransfer, TransferFlags};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A ledger on a fresh database; the SQLite file lives as long as this value.
#[derive(Debug)]
pub struct TestLedger {
    pub ledger: Ledger,
    /// Where a second process can open the same ledger.
    pub location: Location,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone)]
pub enum Location {
    SqliteFile(std::path::PathBuf),
    PostgresSchema { url: String, schema: String },
}

impl Location {
    pub async fn open(&self) -> Ledger {
        match self {
            Location::SqliteFile(path) => Ledger::open_sqlite(path).await.unwrap(),
            Location::PostgresSchema { url, schema } => Ledger::connect_postgres(url, Some(schema)).await.unwrap(),
        }
    }
}

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// A schema name no other test (or test process) uses.
fn unique_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

impl Db {
    /// A fresh ledger, or `None` (after printing why) when PostgreSQL is not
    /// available outside CI.
    pub async fn open(self) -> Option<TestLedger> {
        match self {
            Db::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("ledger.sqlite");
                let ledger = Ledger::open_sqlite(&path).await.unwrap();
                Some(TestLedger { ledger, location: Location::SqliteFile(path), _dir: Some(dir) })
            }
            Db::Postgres => {
                let url = postgres_url()?;
                let schema = unique_schema();
                let ledger = Ledger::connect_postgres(&url, Some(&schema)).await.unwrap();
                Some(TestLedger { ledger, location: Location::PostgresSchema { url, schema }, _dir: None })
            }
        }
    }
}

pub fn postgres_url() -> Option<String> {
    match std::env::var("KESSAI_TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) if ci() => {
            panic!("CI=true but KESSAI_TEST_DATABASE_URL is unset: run tests under scripts/with-postgres")
        }
        Err(_) => {
            eprintln!("skipping PostgreSQL test: KESSAI_TEST_DATABASE_URL is unset (run under scripts/with-postgres)");
            None
        }
    }
}

pub const JPY: Currency = Currency::JPY;

pub fn account(id: u128) -> NewAccount {
    NewAccount { id, currency: JPY, kind: AccountKind::CardFloat, flags: AccountFlags::NONE, user_data_128: 0 }
}

pub trait AccountBuilder {
    fn currency(self, currency: Currency) -> Self;
    fn kind(self, kind: AccountKind) -> Self;
    fn flags(self, flags: AccountFlags) -> Self;
    fn user_data(self, user_data_128: u128) -> Self;
}

impl AccountBuilder for NewAccount {
    fn currency(self, currency: Currency) -> Self {
        NewAccount { currency, ..self }
    }
    fn kind(self, kind: AccountKind) -> Self {
        NewAccount { kind, ..self }
    }
    fn flags(self, flags: AccountFlags) -> Self {
        NewAccount { flags: self.flags | flags, ..self }
    }
    fn user_data(self, user_data_128: u128) -> Self {
        NewAccount { user_data_128, ..self }
    }
}

/// A single-phase JPY transfer.
pub fn transfer(id: u128, debit_account_id: u128, credit_account_id: u128, amount_minor: u64) -> NewTransfer {
    NewTransfer {
        id,
        debit_account_id,
        credit_account_id,
        amount_minor,
        currency: JPY,
        pending_id: 0,
        timeout_s: 0,
        user_data_128: 0,
        code: 0,
        flags: TransferFlags::NONE,
    }
}

/// Posts `amount_minor` (0: all) of pending transfer `pending_id`.
pub fn post(id: u128, pending_id: u128, amount_minor: u64) -> NewTransfer {
    NewTransfer { pending_id, flags: TransferFlags::POST_PENDING, ..transfer(id, 0, 0, amount_minor) }
}

/// Voids pending transfer `pending_id`.
pub fn void(id: u128, pending_id: u128) -> NewTransfer {
    NewTransfer { pending_id, flags: TransferFlags::VOID_PENDING, ..transfer(id, 0, 0, 0) }
}

pub trait TransferBuilder {
    fn pending(self) -> Self;
    fn timeout(self, timeout_s: u32) -> Self;
    fn linked(self) -> Self;
    fn flags(self, flags: TransferFlags) -> Self;
    fn currency(self, currency: Currency) -> Self;
    fn user_data(self, user_data_128: u128) -> Self;
    fn code(self, code: u16) -> Self;
    fn pending_id(self, pending_id: u128) -> Self;
    fn accounts(self, debit_account_id: u128, credit_account_id: u128) -> Self;
    fn amount(self, amount_minor: u64) -> Self;
}

impl TransferBuilder for NewTransfer {
    fn pending(self) -> Self {
        self.flags(TransferFlags::PENDING)
    }
    fn timeout(self, timeout_s: u32) -> Self {
        NewTransfer { timeout_s, ..self }
    }
    fn linked(self) -> Self {
        self.flags(TransferFlags::LINKED)
    }
    fn flags(self, flags: TransferFlags) -> Self {
        NewTransfer { flags: self.flags | flags, ..self }
    }
    fn currency(self, currency: Currency) -> Self {
        NewTransfer { currency, ..self }
    }
    fn user_data(self, user_data_128: u128) -> Self {
        NewTransfer { user_data_128, ..self }
    }
    fn code(self, code: u16) -> Self {
        NewTransfer { code, ..self }
    }
    fn pending_id(self, pending_id: u128) -> Self {
        NewTransfer { pending_id, ..self }
    }
    fn accounts(self, debit_account_id: u128, credit_account_id: u128) -> Self {
        NewTransfer { debit_account_id, credit_account_id, ..self }
    }
    fn amount(self, amount_minor: u64) -> Self {
        NewTransfer { amount_minor, ..self }
    }
}

/// Runs raw SQL against the ledger's database behind its back, to prove `check`
/// notices tampering. The SQL must read the same on both backends.
pub async fn tamper(location: &Location, sql: &'static str) {
    use std::str::FromStr as _;
    match location {
        Location::SqliteFile(path) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            let done = sqlx::query(sql).execute(&pool).await.unwrap();
            assert!(done.rows_affected() > 0, "tampering changed nothing: {sql}");
            pool.close().await;
        }
        Location::PostgresSchema { url, schema } => {
            let options = sqlx::postgres::PgConnectOptions::from_str(url).unwrap().options([("search_path", schema)]);
            let pool = sqlx::PgPool::connect_with(options).await.unwrap();
            let done = sqlx::query(sql).execute(&pool).await.unwrap();
            assert!(done.rows_affected() > 0, "tampering changed nothing: {sql}");
            pool.close().await;
        }
    }
}

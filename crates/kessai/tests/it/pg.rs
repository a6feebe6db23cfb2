//! A fresh database on the throwaway PostgreSQL cluster of scripts/with-postgres.

pub fn fresh_database(name: &str) -> Option<String> {
    tokio::runtime::Runtime::new().unwrap().block_on(kessai_testkit::postgres_database(name))
}

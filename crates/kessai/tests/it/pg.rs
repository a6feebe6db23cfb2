//! A fresh database on the throwaway PostgreSQL cluster of scripts/with-postgres.

pub fn fresh_database(name: &str) -> Option<String> {
    let Ok(url) = std::env::var("KESSAI_TEST_DATABASE_URL") else {
        assert!(
            !kessai_testkit::in_ci(),
            "CI=true but KESSAI_TEST_DATABASE_URL is unset (run under scripts/with-postgres)"
        );
        eprintln!("SKIPPED: PostgreSQL tests need KESSAI_TEST_DATABASE_URL (scripts/with-postgres sets it)");
        return None;
    };
    let db = format!("kessai_{name}_{}", std::process::id());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).execute(&mut admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&mut admin).await.unwrap();
    });
    Some(format!("{}/{db}", url.rsplit_once('/').unwrap().0))
}

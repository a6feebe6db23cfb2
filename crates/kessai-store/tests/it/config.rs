//! The configuration file, environment overrides and their checks.

use kessai_store::StoreConfig;

const TOML: &str = r#"
mall_id = "kessai-mall"
mall_name = "Kessai Mall"
listen = "127.0.0.1:8443"
public_url = "https://127.0.0.1:8443"
wallet_url = "http://127.0.0.1:8480"
data_dir = "/var/lib/kessai/store"
catalog = "catalog.toml"

[tls]
ca_dir = "pki"
server_name = "localhost"

[center]
party_id = "center"
url = "https://127.0.0.1:8444"

[[members]]
id = "bookshop"
name = "Kessai Books"

[[members]]
id = "record-shop"
name = "Kissa Records"
api_token_sha256 = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"

[limits]
max_body_bytes = 32768
"#;

#[test]
fn a_file_with_environment_overrides_loads() {
    let mut config = StoreConfig::from_toml(TOML).unwrap();
    config.check().unwrap();
    assert_eq!(config.limits.max_body_bytes, 32_768);
    assert_eq!(config.bill_lifetime_s, 1_800, "defaults fill the rest");
    assert_eq!(config.signing_key, std::path::PathBuf::from("mall.key"));
    config
        .apply_env(|name| match name {
            "KESSAI_STORE_LISTEN" => Some("0.0.0.0:9443".into()),
            "KESSAI_STORE_DATABASE_URL" => Some("postgres://kessai@db/store".into()),
            "KESSAI_STORE_CENTER_URL" => Some("https://center.kessai.test".into()),
            _ => None,
        })
        .unwrap();
    config.check().unwrap();
    assert_eq!(config.listen.port(), 9443);
    assert_eq!(config.database_url.as_deref(), Some("postgres://kessai@db/store"));
    assert_eq!(config.center.url, "https://center.kessai.test");
    assert_eq!(config.resolve(&config.catalog), std::path::PathBuf::from("/var/lib/kessai/store/catalog.toml"));
    let bad = config.apply_env(|n| (n == "KESSAI_STORE_LISTEN").then(|| "nowhere".into()));
    assert!(bad.is_err());
}

#[test]
fn unworkable_configurations_are_refused() {
    let cases: &[(&str, &str, &str)] = &[
        ("plain public URL", r#"public_url = "https://127.0.0.1:8443""#, r#"public_url = "http://127.0.0.1:8443""#),
        ("mall as its own member", r#"id = "bookshop""#, r#"id = "kessai-mall""#),
        ("duplicate member", r#"id = "record-shop""#, r#"id = "bookshop""#),
        ("bad token hash", r#"api_token_sha256 = "8f43"#, r#"api_token_sha256 = "zz43"#),
        ("unknown field", "catalog = ", "colour = \"red\"\ncatalog = "),
        ("bad store id", r#"mall_id = "kessai-mall""#, r#"mall_id = "Kessai Mall""#),
        ("zero body limit", "max_body_bytes = 32768", "max_body_bytes = 0"),
        ("SQLite URL where PostgreSQL is meant", "catalog = ", "database_url = \"sqlite://x\"\ncatalog = "),
    ];
    for (label, from, to) in cases {
        assert!(TOML.contains(from), "{label}: fixture");
        let text = TOML.replacen(from, to, 1);
        let refused = StoreConfig::from_toml(&text).and_then(|c| c.check());
        assert!(refused.is_err(), "{label}: accepted");
    }
}

//! The credit service provider as its own service (`kessai_csp`, seed 002
//! FIG. 6, #21): run on loopback over real mutual TLS with its own
//! directory, KEK and register, and reached the way the center reaches it
//! (`kessai_center::tokens::TokenProvider`). Its key versions are delivered
//! sealed to the bank's key and rotated; it honours a token once, for its
//! redemption or for its payback, and refuses a caller that is not its
//! client.

use std::path::Path;
use std::sync::Arc;

use kessai_api::provider::HeldFor;
use kessai_api::provider::KeyDeliveries;
use kessai_bsp::rig::BankRig;
use kessai_bsp::{KEYS_DIR, delivery_key_once};
use kessai_center::tokens::{BankLink, TokenProvider};
use kessai_core::jwe::X25519Jwk;
use kessai_core::random::SeededRandom;
use kessai_core::time::{FixedClock, Timestamp};
use kessai_core::token::{DepositToken, TokenId, TokenKey, TokenKeyring};
use kessai_csp::ProviderConfig;
pub use kessai_csp::rig::ProviderRig;
use kessai_http::party::ServiceConfig as _;
use kessai_tls::CaDir;

use crate::prepaid::jpy;
use crate::world::NOW;

const DAY: u64 = 86_400;

/// The rig, and the provider as the center reaches it (client
/// certificate `center`, or `name`).
pub trait Reach {
    fn client(&self) -> TokenProvider;
    fn client_as(&self, name: &str) -> TokenProvider;
}

impl Reach for ProviderRig {
    fn client(&self) -> TokenProvider {
        self.client_as("center")
    }

    fn client_as(&self, name: &str) -> TokenProvider {
        TokenProvider::new(&self.url, self.client_tls(name).unwrap())
    }
}

/// The bank as the center reaches it (client certificate `center`).
pub trait ReachBank {
    fn client(&self) -> BankLink;
    fn client_as(&self, name: &str) -> BankLink;
}

impl ReachBank for BankRig {
    fn client(&self) -> BankLink {
        self.client_as("center")
    }

    fn client_as(&self, name: &str) -> BankLink {
        BankLink::new(&self.url, self.client_tls(name).unwrap())
    }
}

/// The provider's key deliveries, asked for with `tls` (a bank's client
/// certificate, say).
async fn deliveries_with(rig: &ProviderRig, tls: rustls::ClientConfig) -> Result<KeyDeliveries, String> {
    let client = kessai_http::HttpsClient::new(tls, 10_000);
    let (status, body) = client.get(&format!("{}/v1/token-keys", rig.url)).await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(serde_json::from_slice(&body).unwrap())
}

/// The same, with client certificate `name` of the provider's CA.
async fn deliveries(rig: &ProviderRig, name: &str) -> Result<KeyDeliveries, String> {
    deliveries_with(rig, rig.client_tls(name).unwrap()).await
}

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_s(s)
}

fn key(version: u8, seed: u64, (from, until, redeem): (u64, u64, u64)) -> TokenKey {
    TokenKey::generate(version, (at(from), at(until), at(redeem)), &mut SeededRandom::new(seed)).unwrap()
}

/// Version 1: issuing from a day before NOW for 30 days, redeeming 400.
fn v1() -> TokenKey {
    key(1, 31, (NOW.unix_s() - DAY, NOW.unix_s() + 30 * DAY, NOW.unix_s() + 400 * DAY))
}

fn sealed_under(k: &TokenKey, id: u8, expires_at: u64) -> Vec<u8> {
    sealed_at(k, id, NOW.unix_s(), expires_at)
}

/// A token sealed under `k`, deposited at `deposited_at`.
fn sealed_at(k: &TokenKey, id: u8, deposited_at: u64, expires_at: u64) -> Vec<u8> {
    let token = DepositToken {
        token_id: TokenId([id; 16]),
        user_name: "ﾃﾞﾓ ｶｲｲﾝ".into(),
        user_id: "m-1".into(),
        amount: jpy(3_000),
        deposited_at: at(deposited_at),
        expires_at: at(expires_at),
        bank_id: "0999".into(),
        bank_account: "0005-123-1-7654321".into(),
        card_company_id: "kessai-csp".into(),
        card_ref: "last4:4242".into(),
    };
    let mut ring = TokenKeyring::new();
    ring.add(TokenKey::from_json(&k.to_json().unwrap()).unwrap()).unwrap();
    ring.seal(&token, NOW, &mut SeededRandom::new(u64::from(id))).unwrap()
}

fn tx(n: u8) -> kessai_core::ids::TransactionId {
    kessai_core::ids::TransactionId::parse(&hex::encode([n; 16])).unwrap()
}

/// A bank in a directory of its own under `dir` (its own service): its
/// delivery key, made once under its KEK, and the bank.
async fn bank_in(dir: &Path, clock: Arc<FixedClock>) -> (X25519Jwk, BankRig) {
    let rig = BankRig::start(dir, &[], clock, "").await.unwrap();
    let keys = rig.dir.join(KEYS_DIR);
    let jwk = delivery_key_once(&keys, &rig.kek).unwrap();
    assert_eq!(delivery_key_once(&keys, &rig.kek).unwrap(), jwk, "made once");
    (jwk, rig)
}

fn versions(bank: &kessai_bsp::Bank) -> Vec<u8> {
    bank.keyring().keys().map(|k| k.version).collect()
}

/// FIG. 6: the provider's key versions reach the bank sealed to its key,
/// are kept sealed under the KEK and read back at the next start; a new
/// version (rotation) arrives with the next fetch and issues from its
/// window; a version past redeeming is not delivered; another key under a
/// version held, or a delivery to another bank's key, is refused and the
/// held keys stay.
#[tokio::test]
async fn key_versions_are_delivered_sealed_to_the_bank_and_rotated() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(NOW));
    let (jwk, bank_rig) = bank_in(tmp.path(), clock.clone()).await;
    let bank = &bank_rig.bank;
    let gone = key(9, 39, (NOW.unix_s() - 90 * DAY, NOW.unix_s() - 60 * DAY, NOW.unix_s() - DAY));
    let rig = ProviderRig::start(tmp.path(), &[&v1(), &gone], Some(&jwk), clock.clone()).await.unwrap();
    let sent = deliveries(&rig, "bank").await.unwrap();
    assert_eq!(sent.deliveries.iter().map(|d| d.version).collect::<Vec<_>>(), vec![1], "v9 redeems nothing");
    assert!(sent.deliveries.iter().all(|d| d.jwe.split('.').count() == 5), "each a compact JWE");
    assert_eq!(bank.receive(&sent, &mut SeededRandom::new(2)).unwrap(), vec![1]);
    assert_eq!(
        bank.receive(&deliveries(&rig, "bank").await.unwrap(), &mut SeededRandom::new(3)).unwrap(),
        Vec::<u8>::new()
    );
    assert!(bank.keyring().keys().next().unwrap().same_as(&v1()), "the provider's very key");
    // At rest: sealed under the KEK, nothing of the key in clear.
    let file = std::fs::read(bank_rig.dir.join(KEYS_DIR).join("v1.sealed")).unwrap();
    let plain = v1().to_json().unwrap();
    assert!(!file.windows(16).any(|w| plain.windows(16).any(|p| p == w)));
    let reopened = kessai_bsp::Bank::open(&bank_rig.config, clock.clone()).await.unwrap();
    assert_eq!(versions(&reopened), vec![1]);
    assert!(kessai_http::party::read_keys(&bank_rig.dir.join(KEYS_DIR), &[9; 32]).is_err(), "another KEK");

    // Rotation: version 2 issues from day 20; the bank takes it on its
    // next fetch and seals with it from then, v1's tokens still open.
    let start2 = NOW.unix_s() + 20 * DAY;
    kessai_csp::add_key(
        &rig.dir.join(kessai_csp::KEYS_DIR),
        &rig.kek,
        Some(2),
        (at(start2), at(start2 + 30 * DAY)),
        at(start2 + 400 * DAY),
    )
    .unwrap();
    assert_eq!(bank.receive(&deliveries(&rig, "bank").await.unwrap(), &mut SeededRandom::new(4)).unwrap(), vec![2]);
    assert_eq!(versions(bank), vec![1, 2]);
    let ring = bank.keyring();
    assert_eq!(ring.issuing_until(NOW), Some(at(NOW.unix_s() + 400 * DAY)), "v1 issues now");
    assert_eq!(ring.issuing_until(at(start2)), Some(at(start2 + 400 * DAY)), "v2 from its window");

    // Another provider's key under version 1, to this bank: refused, the
    // held key kept; a delivery sealed to another bank: refused.
    let rogue = key(1, 77, (NOW.unix_s() - DAY, NOW.unix_s() + 30 * DAY, NOW.unix_s() + 400 * DAY));
    let impostor = ProviderRig::start(tmp.path(), &[&rogue], Some(&jwk), clock.clone()).await.unwrap();
    let why = bank.receive(&deliveries(&impostor, "bank").await.unwrap(), &mut SeededRandom::new(5)).unwrap_err();
    assert!(why.to_string().contains("another key under version 1"), "{why}");
    assert!(bank.keyring().keys().next().unwrap().same_as(&v1()));
    // A version another process of this bank wrote meanwhile (the CLI's
    // fetch beside a running center): taken if it is the very key.
    let other_copy = kessai_bsp::Bank::open(&bank_rig.config, clock.clone()).await.unwrap();
    assert_eq!(versions(&other_copy), vec![1, 2]);
    let start3 = NOW.unix_s() + 40 * DAY;
    kessai_csp::add_key(
        &rig.dir.join(kessai_csp::KEYS_DIR),
        &rig.kek,
        Some(3),
        (at(start3), at(start3 + DAY)),
        at(start3 + 9 * DAY),
    )
    .unwrap();
    let sent = deliveries(&rig, "bank").await.unwrap();
    assert_eq!(other_copy.receive(&sent, &mut SeededRandom::new(7)).unwrap(), vec![3]);
    assert_eq!(bank.receive(&sent, &mut SeededRandom::new(8)).unwrap(), vec![3], "the file on disk is the same key");
    let elsewhere = tempfile::tempdir().unwrap();
    let (other_jwk, _other) = bank_in(elsewhere.path(), clock.clone()).await;
    let foreign = ProviderRig::start(tmp.path(), &[&v1()], Some(&other_jwk), clock.clone()).await.unwrap();
    assert!(bank.receive(&deliveries(&foreign, "bank").await.unwrap(), &mut SeededRandom::new(6)).is_err());
    assert_eq!(versions(bank), vec![1, 2, 3]);
}

/// Only the provider's clients, by their client certificates acting as the
/// center, are served; token keys go only to a client with a delivery key.
#[tokio::test]
async fn the_provider_serves_only_its_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(NOW));
    let (jwk, _bank) = bank_in(tmp.path(), clock.clone()).await;
    let rig = ProviderRig::start(tmp.path(), &[&v1()], Some(&jwk), clock).await.unwrap();
    let token = sealed_under(&v1(), 1, NOW.unix_s() + 100 * DAY);
    // Token keys go to the bank's certificate only; the uses of tokens to
    // a center's that the provider lists.
    for name in ["center", "other-center", "stranger", "shop"] {
        let e = deliveries(&rig, name).await.unwrap_err();
        assert!(e.contains("403") && e.contains("does not act as the bank"), "{name}: {e}");
    }
    assert!(deliveries(&rig, "bank").await.is_ok());
    for (name, why) in
        [("stranger", "not a client"), ("shop", "does not act as the center"), ("bank", "not act as the center")]
    {
        let e = rig.client_as(name).redeem(&token, &tx(1), NOW).await.unwrap_err();
        assert!(e.0.contains("403") && e.0.contains(why), "{name}: {e}");
    }
    // No client certificate: the handshake fails.
    let ca = CaDir::new(rig.dir.join("ca"));
    assert!(deliveries_with(&rig, kessai_tls::client_config(&ca.ca_cert(), None).unwrap()).await.is_err());
    assert!(rig.provider.held(&TokenId([1; 16]).to_string()).await.unwrap().is_none(), "nothing entered");
}

/// A token is honoured once: for the REDEEM that gave it up (asked again,
/// the same answer, also after the provider restarts) or for its payback
/// after its expiry, never both; a tampered token, one of a version the
/// provider does not hold, a time ahead of its clock and a malformed
/// request are refused and enter nothing.
#[tokio::test]
async fn a_token_is_honoured_once_for_one_use() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(NOW));
    let mut rig = ProviderRig::start(tmp.path(), &[&v1()], None, clock.clone()).await.unwrap();
    let e = deliveries(&rig, "bank").await.unwrap_err();
    assert!(e.contains("no key registered"), "a bank without a delivery key: {e}");
    let p = rig.client();
    let expiry = NOW.unix_s() + 100 * DAY;
    let token = sealed_under(&v1(), 1, expiry);
    let first = p.redeem(&token, &tx(1), NOW).await.unwrap().unwrap();
    assert!(first.first && first.held_for == HeldFor::Redemption && first.amount == jpy(3_000));
    let again = p.redeem(&token, &tx(1), NOW).await.unwrap().unwrap();
    assert!(!again.first && again.entered_at == first.entered_at);
    let why = p.redeem(&token, &tx(2), NOW).await.unwrap().unwrap_err();
    assert!(why.contains("redeemed before"), "{why}");
    clock.set(at(expiry + DAY));
    let why = p.pay_back(&token).await.unwrap().unwrap_err();
    assert!(why.contains("redeemed before its expiry"), "{why}");
    rig.restart(clock.clone()).await.unwrap();
    let p = rig.client();
    assert!(!p.redeem(&token, &tx(1), NOW).await.unwrap().unwrap().first, "the register outlives a restart");

    // Payback: not before the expiry; then once; then no redemption.
    clock.set(NOW);
    let unredeemed = sealed_under(&v1(), 2, expiry);
    let why = p.pay_back(&unredeemed).await.unwrap().unwrap_err();
    assert!(why.contains("does not expire until"), "{why}");
    clock.set(at(expiry + 7 * DAY));
    let paid = p.pay_back(&unredeemed).await.unwrap().unwrap();
    assert!(paid.first && paid.held_for == HeldFor::Payback && paid.transaction.is_none());
    assert!(!p.pay_back(&unredeemed).await.unwrap().unwrap().first);
    let why = p.redeem(&unredeemed, &tx(3), at(expiry - 60)).await.unwrap().unwrap_err();
    assert!(why.contains("paid back"), "{why}");

    // Refusals that enter nothing.
    clock.set(NOW);
    let mut tampered = sealed_under(&v1(), 4, expiry);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let other = key(1, 99, (NOW.unix_s() - DAY, NOW.unix_s() + 30 * DAY, NOW.unix_s() + 400 * DAY));
    let v5 = key(5, 55, (NOW.unix_s() - DAY, NOW.unix_s() + 30 * DAY, NOW.unix_s() + 400 * DAY));
    let cases = [
        (tampered, NOW, "does not open"),
        (sealed_under(&other, 5, expiry), NOW, "does not open"),
        (sealed_under(&v5, 6, expiry), NOW, "no token key of version 5"),
        (sealed_under(&v1(), 8, NOW.unix_s() + 60), at(NOW.unix_s() + 60), "expired"),
    ];
    for (bytes, when, why) in cases {
        let refused = p.redeem(&bytes, &tx(9), when).await.unwrap().unwrap_err();
        assert!(refused.contains(why), "{refused} (wanted {why})");
        let id = kessai_core::token::TokenHeader::read(&bytes).unwrap().token_id.to_string();
        assert!(rig.provider.held(&id).await.unwrap().is_none(), "{why}: nothing entered");
    }
    let e = p.redeem(b"not a token", &tx(9), NOW).await.unwrap_err();
    assert!(e.0.contains("400") && e.0.contains("bad_sealed_token"), "{e}");
    // Before its deposit: refused; ahead of the provider's clock: not
    // decided now (503: the center asks again later), nothing entered.
    let early = sealed_under(&v1(), 10, expiry);
    let why = p.redeem(&early, &tx(9), at(NOW.unix_s() - 3_600)).await.unwrap().unwrap_err();
    assert!(why.contains("before its deposit"), "{why}");
    let ahead = p.redeem(&early, &tx(9), at(NOW.unix_s() + 3_600)).await.unwrap_err();
    assert!(ahead.0.contains("503") && ahead.0.contains("ahead of the provider's clock"), "{ahead}");
    assert!(rig.provider.held(&TokenId([10; 16]).to_string()).await.unwrap().is_none());

    // Another client asking for the same use, or reading the register, is
    // not answered with this client's verdict.
    let other = rig.client_as("other-center");
    let why = other.redeem(&token, &tx(1), NOW).await.unwrap_err();
    assert!(why.0.contains("403") && why.0.contains("one client name") && !why.is_down(), "{why}");
    assert!(other.held(&TokenId([1; 16])).await.unwrap().is_none());
    let held = p.held(&TokenId([1; 16])).await.unwrap().unwrap();
    assert_eq!((held.held_for, held.first), (HeldFor::Redemption, false));
    assert!(p.held(&TokenId([10; 16])).await.unwrap().is_none());
}

/// Redemptions of one token by different REDEEMs, and its payback, all at
/// once: the register takes exactly one; the others are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_uses_of_one_token_are_honoured_once() {
    let tmp = tempfile::tempdir().unwrap();
    let expiry = NOW.unix_s() + 100 * DAY;
    let clock = Arc::new(FixedClock::new(at(expiry)));
    let rig = ProviderRig::start(tmp.path(), &[&v1()], None, clock.clone()).await.unwrap();
    let token = Arc::new(sealed_under(&v1(), 1, expiry));
    let p = Arc::new(rig.client());
    let mut tasks = Vec::new();
    for n in 0..8u8 {
        let (p, token) = (Arc::clone(&p), Arc::clone(&token));
        tasks.push(tokio::spawn(async move {
            if n == 0 {
                p.pay_back(&token).await.unwrap()
            } else {
                p.redeem(&token, &tx(n), at(expiry - 1)).await.unwrap()
            }
        }));
    }
    let mut honoured = Vec::new();
    for t in tasks {
        if let Ok(h) = t.await.unwrap() {
            honoured.push(h);
        }
    }
    assert_eq!(honoured.len(), 1, "{honoured:?}");
    let held = rig.provider.held(&TokenId([1; 16]).to_string()).await.unwrap().unwrap();
    assert_eq!((held.held_for, held.transaction), (honoured[0].held_for, honoured[0].transaction.clone()));
}

/// A provider's configuration is checked before it starts: no clients, a
/// name twice, a delivery key that is not X25519, a card number as its id.
#[test]
fn a_provider_configuration_that_cannot_work_is_refused() {
    let base = |clients: &str, id: &str| {
        format!(
            "provider_id = \"{id}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"/tmp/x\"\n[tls]\nca_dir = \"ca\"\n\
             server_name = \"localhost\"\n{clients}"
        )
    };
    let good = "[[clients]]\nname = \"center\"\n";
    assert!(ProviderConfig::from_toml(&base(good, "kessai-csp")).is_ok());
    for (clients, id) in [
        ("clients = []\n", "kessai-csp"),
        ("[[clients]]\nname = \"center\"\n[[clients]]\nname = \"center\"\n", "kessai-csp"),
        (
            "[[clients]]\nname = \"center\"\ndelivery_key = { kty = \"OKP\", crv = \"Ed25519\", x = \"AAAA\" }\n",
            "kessai-csp",
        ),
        (good, "4242424242424242"),
        (good, ""),
    ] {
        assert!(ProviderConfig::from_toml(&base(clients, id)).is_err(), "{clients} {id}");
    }
}

/// A token request for deposit `entry` of the rig's pool account.
fn seal_request(entry: &str, reference: &str, token: u8, amount: u64) -> kessai_api::bank::SealRequest {
    kessai_api::bank::SealRequest {
        deposit: format!("{}/{entry}", kessai_bsp::rig::POOL_ACCOUNT),
        reference: reference.into(),
        token_id: TokenId([token; 16]).to_string(),
        amount: jpy(amount),
        user_name: "ﾃﾞﾓ ｶｲｲﾝ".into(),
        user_id: "m-1".into(),
        bank_account: "0005-123-1-7654321".into(),
        card_ref: "last4:4242".into(),
    }
}

const RF_A: &str = "RF18539007547034";
const RF_B: &str = "RF712348231";

/// The bank as its own service (seed 002, FIG. 2): it makes a token only
/// of a deposit booked to its pool account, of that amount and quoting
/// that reference, and of each deposit once (the same request again: the
/// same token; racing requests: one token), sealed under the version
/// delivered to it with every FIG. 12 field; its statement names each
/// deposit; it serves only the centers it lists; out of reach, nothing is
/// decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_makes_a_token_only_of_its_own_deposit_once() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(NOW));
    let mut rig = BankRig::start(tmp.path(), &[&v1()], clock.clone(), "").await.unwrap();
    let rf = |r: &str| kessai_bank::rf::Reference::parse(r).unwrap();
    assert_eq!(rig.bank.deposit(jpy(5_000), Some(&rf(RF_A)), "YAMADA HANAKO").await.unwrap(), 1);
    assert_eq!(rig.bank.deposit(jpy(3_000), Some(&rf(RF_B)), "SUZUKI ICHIRO").await.unwrap(), 2);
    assert!(rig.bank.deposit(jpy(0), None, "NOBODY").await.is_err(), "a deposit of nothing");
    assert!(rig.bank.deposit(jpy(10), None, "NO\u{FFFE}BODY").await.is_err(), "a remitter no statement carries");
    assert!(rig.bank.deposit(jpy(10), None, " ").await.is_err(), "no remitter");
    assert_eq!(rig.bank.register().balance().await.unwrap(), 8_000, "nothing booked");
    let link = rig.client();

    // Its statement of the day names each deposit as the center keys it.
    let day = kessai_bank::Date::of(NOW).to_string();
    let (page, next) = link.statement(&day, 0).await.unwrap();
    assert_eq!(next, None, "one page");
    let statement = kessai_bank::parse(&page).unwrap();
    let keys: Vec<_> = statement.credits.iter().map(|c| (c.entry_key.as_str(), c.amount.amount_minor())).collect();
    assert_eq!(keys, vec![("JP00KESSAIPOOL0001/D1", 5_000), ("JP00KESSAIPOOL0001/D2", 3_000)]);
    assert_eq!(statement.credits[0].reference.as_ref().map(|r| r.as_str()), Some(RF_A));
    assert!(kessai_bank::parse(&link.statement("2026-01-01", 0).await.unwrap().0).unwrap().credits.is_empty());
    let after_first = kessai_bank::parse(&link.statement(&day, 1).await.unwrap().0).unwrap();
    assert_eq!(after_first.credits.len(), 1, "the page after deposit 1");
    let bad_day = link.statement("2026-13-01", 0).await.unwrap_err();
    assert!(bad_day.0.contains("400") && bad_day.0.contains("bad_day"), "{bad_day}");

    // A token of deposit 1: every field, its deposit's time, version 1.
    let (sealed, made) = link.seal(&seal_request("D1", RF_A, 1, 5_000)).await.unwrap().unwrap();
    assert!(made.first && made.key_version == 1);
    let mut ring = TokenKeyring::new();
    ring.add(v1()).unwrap();
    let token = ring.open(&sealed, NOW).unwrap();
    assert_eq!((token.token_id, token.amount, token.deposited_at), (TokenId([1; 16]), jpy(5_000), NOW));
    assert_eq!((token.bank_id.as_str(), token.card_company_id.as_str()), ("0999", "kessai-csp"));
    assert_eq!((token.user_id.as_str(), token.card_ref.as_str()), ("m-1", "last4:4242"));
    assert_eq!(token.expires_at.unix_s(), NOW.unix_s() + 180 * DAY);
    // Asked again (an answer lost): the same token.
    let (again, repeat) = link.seal(&seal_request("D1", RF_A, 1, 5_000)).await.unwrap().unwrap();
    assert_eq!((again, repeat.first), (sealed, false));

    // Refusals: each a verdict, nothing made.
    let refused = [
        (seal_request("D1", RF_A, 2, 5_000), "made token"),
        (seal_request("D2", RF_B, 1, 3_000), "made of another deposit"),
        (seal_request("D2", RF_B, 3, 3_001), "is of"),
        (seal_request("D2", RF_A, 3, 3_000), "another reference"),
        (seal_request("D99", RF_B, 3, 3_000), "no deposit"),
        (seal_request("BANK-X", RF_B, 3, 3_000), "names no deposit"),
        (
            kessai_api::bank::SealRequest { deposit: "JP00OTHER/D2".into(), ..seal_request("D2", RF_B, 3, 3_000) },
            "names no deposit",
        ),
        (
            kessai_api::bank::SealRequest { card_ref: "4111111111111111".into(), ..seal_request("D2", RF_B, 3, 3_000) },
            "card",
        ),
    ];
    for (req, why) in refused {
        let answer = link.seal(&req).await.unwrap();
        assert!(answer.as_ref().is_err_and(|e| e.contains(why)), "{why}: {answer:?}");
    }
    assert!(rig.bank.register().made(2).await.unwrap().is_none(), "nothing made of deposit 2");

    // Only the centers it lists, by their certificates acting as the center.
    for (name, why) in [("stranger", "not a center this bank serves"), ("shop", "does not act as the center")] {
        let e = rig.client_as(name).seal(&seal_request("D2", RF_B, 3, 3_000)).await.unwrap_err();
        assert!(e.0.contains("403") && e.0.contains(why), "{name}: {e}");
        assert!(rig.client_as(name).statement(&day, 0).await.is_err());
    }
    assert!(rig.bank.register().made(2).await.unwrap().is_none());

    // Racing identical requests for deposit 2: one token, the same to all.
    let link = Arc::new(link);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let link = Arc::clone(&link);
        tasks.push(tokio::spawn(async move { link.seal(&seal_request("D2", RF_B, 3, 3_000)).await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().unwrap().unwrap());
    }
    assert_eq!(answers.iter().filter(|(_, m)| m.first).count(), 1, "made once");
    assert!(answers.iter().all(|(bytes, _)| *bytes == answers[0].0), "the same token to every caller");

    // Racing requests for one deposit asking for different tokens: one is
    // made, every other refused.
    assert_eq!(rig.bank.deposit(jpy(900), Some(&rf(RF_A)), "YAMADA HANAKO").await.unwrap(), 3);
    let mut tasks = Vec::new();
    for n in 10..18u8 {
        let link = Arc::clone(&link);
        tasks.push(tokio::spawn(async move { link.seal(&seal_request("D3", RF_A, n, 900)).await.unwrap() }));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.push(t.await.unwrap());
    }
    assert_eq!(made.iter().filter(|m| m.is_ok()).count(), 1, "{made:?}");
    assert!(made.iter().filter_map(|m| m.as_ref().err()).all(|e| e.contains("made token")), "{made:?}");

    // Out of reach: nothing decided; restarted, its register kept.
    rig.stop();
    assert!(rig.client().seal(&seal_request("D2", RF_B, 3, 3_000)).await.is_err(), "a new connection is refused");
    rig.restart(clock).await.unwrap();
    let (after, m) = rig.client().seal(&seal_request("D2", RF_B, 3, 3_000)).await.unwrap().unwrap();
    assert_eq!((after, m.first), (answers[0].0.clone(), false));
    assert_eq!(rig.bank.register().balance().await.unwrap(), 8_900);
}

/// The provider checks a token the bank made before the center issues
/// it: honoured now (its MAC under a version held, not expired) or
/// refused; either way its register enters nothing.
#[tokio::test]
async fn the_provider_checks_a_token_without_entering_it() {
    let tmp = tempfile::tempdir().unwrap();
    let rig = ProviderRig::start(tmp.path(), &[&v1()], None, Arc::new(FixedClock::new(NOW))).await.unwrap();
    let p = rig.client();
    let token = sealed_under(&v1(), 1, NOW.unix_s() + 100 * DAY);
    assert_eq!(p.check(&token).await.unwrap(), Ok(()));
    let mut tampered = token.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let other = key(1, 99, (NOW.unix_s() - DAY, NOW.unix_s() + 30 * DAY, NOW.unix_s() + 400 * DAY));
    let v5 = key(5, 55, (NOW.unix_s() - DAY, NOW.unix_s() + 30 * DAY, NOW.unix_s() + 400 * DAY));
    let expired = sealed_at(&v1(), 4, NOW.unix_s() - 2 * DAY, NOW.unix_s() - DAY);
    let cases = [
        (tampered, "does not open"),
        (sealed_under(&other, 2, NOW.unix_s() + DAY), "does not open"),
        (sealed_under(&v5, 3, NOW.unix_s() + DAY), "no token key of version 5"),
        (expired, "expired"),
    ];
    for (bytes, why) in cases {
        let refused = p.check(&bytes).await.unwrap().unwrap_err();
        assert!(refused.contains(why), "{refused} (wanted {why})");
    }
    // Deposited ahead of the provider's clock (the bank's clock ahead by
    // more than the skew allowed): not decided now, nothing entered.
    let ahead = sealed_at(&v1(), 5, NOW.unix_s() + 3_600, NOW.unix_s() + 100 * DAY);
    let e = p.check(&ahead).await.unwrap_err();
    assert!(e.0.contains("503") && e.0.contains("ahead of the provider's clock"), "{e}");
    let near = sealed_at(&v1(), 6, NOW.unix_s() + 60, NOW.unix_s() + 100 * DAY);
    assert_eq!(p.check(&near).await.unwrap(), Ok(()), "within the skew");
    assert!(p.redeem(&near, &tx(6), NOW).await.unwrap().is_ok(), "redeemed within the skew of its deposit");
    for id in [1u8, 2, 3, 4, 5] {
        assert!(rig.provider.held(&TokenId([id; 16]).to_string()).await.unwrap().is_none(), "nothing entered");
    }
    let e = rig.client_as("shop").check(&token).await.unwrap_err();
    assert!(e.0.contains("403"), "{e}");
}

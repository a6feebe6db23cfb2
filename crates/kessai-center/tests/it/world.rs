//! An in-memory world: a mall, the center's security server and keys, and
//! real emulated cards in in-process readers; a wallet that only relays.

use std::collections::BTreeMap;

use kessai_card::protocol::{CardId as ChipCardId, Currency as ChipCurrency, TransferRequest, TxId, credit_command};
use kessai_card::terminal::Terminal;
use kessai_card::transport::{InProcessReader, Reader};
use kessai_card::{Card, KeySource, MemoryStorage, Personalization, personalize};
use kessai_center::hsm::{self, HsmConfig, Pkcs11Keys};
use kessai_center::purchase::{CardRecord, CardRegistryStatus, Context, CreateInput, Settlement};
use kessai_center::security::{SecurityServer, StateKey};
use kessai_core::ids::{CardId, PartyId};
use kessai_core::jws::Verified;
use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
use kessai_core::messages::DisplayText;
use kessai_core::messages::bill::{self, Bill};
use kessai_core::random::SeededRandom;
use kessai_core::samples;
use kessai_core::time::{FixedClock, Timestamp};
use kessai_core::{Clock, Currency};
use kessai_scp03::diversify::{MasterKeys, diversify};
use kessai_scp03::{Aes128Key, CommandApdu, KeyVersion, ResponseApdu};

pub const NOW: Timestamp = Timestamp::from_unix_s(1_795_000_000);
pub const KVN: u8 = 1;

pub fn masters(seed: u8) -> MasterKeys {
    MasterKeys {
        enc: Aes128Key::new([seed; 16]),
        mac: Aes128Key::new([seed.wrapping_add(1); 16]),
        dek: Aes128Key::new([seed.wrapping_add(2); 16]),
    }
}

/// The tests' security server over `masters(0x40)` as key version 1: in
/// memory, or, with `KESSAI_TEST_SECURITY=pkcs11` (scripts/test's second
/// pass of the purchase, charge and recovery tests), the same keys in the
/// SoftHSM2 token of scripts/with-softhsm, which then computes every
/// card's keys.
pub fn security_server(state_key: StateKey) -> SecurityServer {
    if std::env::var("KESSAI_TEST_SECURITY").as_deref() == Ok("pkcs11") {
        return SecurityServer::over(Box::new(token_keys()), state_key);
    }
    SecurityServer::new(BTreeMap::from([(KVN, masters(0x40))]), state_key)
}

/// `masters(0x40)` imported once per process into the test token, under
/// labels of this process's own.
pub fn token_keys() -> std::sync::Arc<Pkcs11Keys> {
    static KEYS: std::sync::OnceLock<std::sync::Arc<Pkcs11Keys>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let (config, pin) = token_config(&format!("kessai-suite-{}", std::process::id()))
            .expect("KESSAI_TEST_SECURITY=pkcs11 needs the token of scripts/with-softhsm");
        hsm::import(&config, &pin, &BTreeMap::from([(KVN, masters(0x40))])).unwrap();
        std::sync::Arc::new(Pkcs11Keys::open(&config, &pin).unwrap())
    })
    .clone()
}

/// The test token's configuration with master keys labelled `prefix-…`,
/// and its user PIN; `None`: skip (outside CI).
pub fn token_config(prefix: &str) -> Option<(HsmConfig, cryptoki::types::AuthPin)> {
    let token = kessai_testkit::softhsm()?;
    let config = HsmConfig {
        module: token.module,
        token_label: token.token_label,
        pin_env: None,
        pin_file: None,
        label_prefix: prefix.to_owned(),
        signing_key_label: None,
    };
    Some((config, cryptoki::types::AuthPin::from(token.user_pin.as_str())))
}

pub type CardReader = InProcessReader<MemoryStorage>;

pub struct World {
    pub rng: SeededRandom,
    pub clock: FixedClock,
    pub center: PartyId,
    pub center_key: SigningKey,
    pub center_keys: KeyDirectory,
    pub mall_key: SigningKey,
    pub store_keys: KeyDirectory,
    pub security: SecurityServer,
}

impl World {
    pub fn new(seed: u64) -> World {
        let mut rng = SeededRandom::new(seed);
        let center = PartyId::parse(samples::CENTER).unwrap();
        let center_key = SigningKey::generate(&mut rng);
        let mall_key = SigningKey::generate(&mut rng);
        let mut center_keys = KeyDirectory::new();
        center_keys.insert(center.clone(), center_key.public(), Validity::always()).unwrap();
        let mut store_keys = KeyDirectory::new();
        store_keys.insert(PartyId::parse(samples::MALL).unwrap(), mall_key.public(), Validity::always()).unwrap();
        let security = security_server(StateKey::generate(&mut rng));
        World { rng, clock: FixedClock::new(NOW), center, center_key, center_keys, mall_key, store_keys, security }
    }

    pub fn ctx(&mut self) -> Context<'_, SeededRandom> {
        Context {
            security: &self.security,
            center: &self.center,
            center_key: &self.center_key,
            now: self.clock.now(),
            rng: &mut self.rng,
        }
    }

    /// The sample bill (JPY 11,360), signed by the mall and verified.
    pub fn bill(&mut self) -> (String, Verified<Bill>) {
        let (claims, b) = samples::bill(&mut self.rng, NOW).unwrap();
        let token = bill::sign(&claims.clone().with_audience(crate::center_party()), &b, &self.mall_key).unwrap();
        let verified = bill::verify(&token, &self.store_keys, &self.clock, &crate::center_party()).unwrap();
        (token, verified)
    }

    pub fn create(&mut self, card: &CardRecord) -> (Settlement, CommandApdu) {
        let (_, verified) = self.bill();
        let input = CreateInput {
            bill: &verified,
            registered_name: DisplayText::parse("Kessai Books").unwrap(),
            card_id: card.id,
            key_version: card.key_version,
            profile: kessai_core::profile::Profile::Offer,
            max_amount_minor: 1_000_000,
        };
        Settlement::create(&mut self.ctx(), input).unwrap()
    }
}

/// Registers the sample mall (signing with `mall_key`) and its member store.
pub async fn register_mall(db: &kessai_center::db::CenterDb, mall_key: &SigningKey) {
    for (id, name, mall) in
        [(samples::MALL, "Kessai Mall", None), (samples::MEMBER, "Kessai Books", Some(samples::MALL))]
    {
        let store = kessai_center::db::StoreRecord {
            id: kessai_core::ids::StoreId::parse(id).unwrap(),
            name: DisplayText::parse(name).unwrap(),
            mall: mall.map(|m| kessai_core::ids::StoreId::parse(m).unwrap()),
            notify_url: None,
            client_name: None,
            bank_account: None,
        };
        db.put_store(&store, NOW).await.unwrap();
    }
    let mall = kessai_core::ids::StoreId::parse(samples::MALL).unwrap();
    db.put_store_key(&mall, &mall_key.public(), Validity::always()).await.unwrap();
}

/// The cardholder reported card `id` lost.
pub async fn report_lost(db: &kessai_center::db::CenterDb, id: CardId) {
    let status = kessai_center::purchase::CardRegistryStatus::Lost;
    db.set_card_status(&id, status, "reported lost", NOW, crate::trail("card_status")).await.unwrap();
}

/// Registers a member (its key from `seed`) and links `cards` to it, as
/// the operator does for a registered card: the member's number.
pub async fn registered_member(c: &kessai_center::service::Center, seed: u64, cards: &[CardId]) -> String {
    let mut rng = kessai_core::random::SeededRandom::new(seed);
    let m = crate::prepaid::member(c, &mut rng).await;
    for card in cards {
        assert!(
            c.db.link_card_member(card, Some(m.id.as_str()), false, NOW, crate::trail("card_member")).await.unwrap()
        );
    }
    m.id.to_string()
}

pub fn card_id(n: u8) -> CardId {
    CardId::from_bytes([0x4B, 0x45, 0x53, 0x53, 0x41, 0x49, 0x00, n])
}

pub fn record(n: u8) -> CardRecord {
    CardRecord {
        id: card_id(n),
        key_version: KVN,
        status: CardRegistryStatus::Active,
        currency: Currency::JPY,
        max_balance_minor: 100_000,
    }
}

/// A card personalized with keys diversified from the world's masters,
/// loaded with `balance` through a real secure CREDIT.
pub fn funded_card(n: u8, balance: u64) -> Terminal<CardReader> {
    funded_card_by(n, balance, [0xF0; 16])
}

/// As [`funded_card`], its funding CREDIT under transaction id `tx`.
pub fn funded_card_by(n: u8, balance: u64, tx: [u8; 16]) -> Terminal<CardReader> {
    let id = card_id(n);
    let p = Personalization {
        card_id: ChipCardId(*id.as_bytes()),
        keys: KeySource::Diversified { master: masters(0x40), version: KeyVersion::new(KVN).unwrap() },
        currency: ChipCurrency::new("JPY").unwrap(),
        max_balance_minor: 100_000,
    };
    let card = Card::open(MemoryStorage::new(personalize(&p).unwrap().to_vec())).unwrap();
    let mut t = Terminal::new(InProcessReader::new(card));
    if balance > 0 {
        t.select().unwrap();
        let keys = diversify(&masters(0x40), id.as_bytes(), KeyVersion::new(KVN).unwrap());
        let s = t.open_session(keys, [1; 8]).unwrap();
        let request = TransferRequest {
            tx_id: TxId(tx),
            amount_minor: balance,
            counterpart: *b"FUNDING!",
            order_ref: [0; 16],
            time_unix_s: NOW.unix_s(),
        };
        let (_, r) = t.secure(s, &credit_command(&request)).unwrap();
        assert_eq!(r.sw().raw(), 0x9000, "funding credit");
    }
    t.select().unwrap();
    t
}

/// The wallet's part: relay a command to the card, return its answer.
pub fn relay(t: &mut Terminal<CardReader>, cmd: &CommandApdu) -> ResponseApdu {
    ResponseApdu::parse(&t.reader_mut().transmit(&cmd.to_bytes()).unwrap()).unwrap()
}

/// The wallet's opening of a purchase: INITIALIZE UPDATE under the
/// challenge bound to the bill and the card, relayed; the card's answer.
pub fn opening(t: &mut Terminal<CardReader>, bill_token: &str, card: CardId) -> ResponseApdu {
    let hash = kessai_core::digest::Sha256Digest::of_token(bill_token);
    let challenge = kessai_card::protocol::purchase_host_challenge(hash.as_bytes(), &ChipCardId(*card.as_bytes()));
    relay(t, &kessai_card::protocol::initialize_update_command(&challenge))
}

/// A wallet's create of a purchase in the `offer` profile, opened on card `t`.
pub fn offer_request<'a>(
    t: &mut Terminal<CardReader>,
    bill_token: &'a str,
    card: CardId,
) -> kessai_center::service::CreateRequest<'a> {
    offer_create(bill_token, card, opening(t, bill_token, card))
}

/// An opening no card gave, for a create refused before the card counts.
pub fn no_opening() -> ResponseApdu {
    ResponseApdu::parse(&[0x6a, 0x82]).unwrap()
}

/// A create in the `offer` profile with the card's `opening` answer.
pub fn offer_create(
    bill_token: &str,
    card: CardId,
    opening: ResponseApdu,
) -> kessai_center::service::CreateRequest<'_> {
    kessai_center::service::CreateRequest {
        bill: bill_token,
        card_id: card,
        profile: kessai_core::profile::Profile::Offer,
        opening,
        claim: None,
        instruction: None,
    }
}

pub fn relay_all(t: &mut Terminal<CardReader>, cmds: &[CommandApdu]) -> Vec<ResponseApdu> {
    cmds.iter().map(|c| relay(t, c)).collect()
}

pub fn balance_of(t: &mut Terminal<CardReader>) -> u64 {
    t.reader_mut().card().state().public_info().balance_minor
}

/// The wallet's relay over JSON: the reply's `apdus` to the card, the
/// card's answers back as `{"responses": [...]}`.
pub fn relay_json(t: &mut Terminal<CardReader>, reply: &serde_json::Value) -> serde_json::Value {
    let answers: Vec<String> = reply["apdus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let cmd = CommandApdu::parse(&hex::decode(h.as_str().unwrap()).unwrap()).unwrap();
            hex::encode(relay(t, &cmd).to_bytes())
        })
        .collect();
    serde_json::json!({ "responses": answers })
}

/// The access tokens the center handed out in these tests, by id, as a
/// wallet keeps them (M4). Ids are unique across tests.
static ACCESS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

/// Keeps the access token an answer carries.
pub fn keep_access(answer: &serde_json::Value) {
    let id = ["settlement_id", "update_id", "statement_id", "session_id"].iter().find_map(|k| answer[*k].as_str());
    if let (Some(id), Some(token)) = (id, answer["access_token"].as_str()) {
        ACCESS.lock().unwrap().insert(id.to_owned(), token.to_owned());
    }
}

/// The `Authorization` value for a path on a settlement, value update or
/// statement whose access token a test was handed.
pub fn access_for(path: &str) -> Option<String> {
    let path = path.split_once("/v1/").map_or(path, |(_, p)| p);
    let id = path.split('/').nth(1)?;
    ACCESS.lock().unwrap().get(id).map(|t| format!("Bearer {t}"))
}

/// GETs a path of an in-process router, with the access token of the id it
/// names if a test was handed one, and reads the JSON answer.
pub async fn get(app: &axum::Router, path: &str) -> (axum::http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = axum::http::Request::get(path);
    if let Some(bearer) = access_for(path) {
        req = req.header("authorization", bearer);
    }
    let resp = app.clone().oneshot(req.body(axum::body::Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// POSTs JSON as someone who knows the id in `path` but holds no access
/// token for it; answers the status and the error code.
pub async fn post_as_stranger(app: &axum::Router, path: &str, key: &str, body: serde_json::Value) -> (u16, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = axum::http::Request::post(path).header("content-type", "application/json").header("idempotency-key", key);
    let resp = app.clone().oneshot(req.body(axum::body::Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let v: serde_json::Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    (status, v["error"]["code"].as_str().unwrap_or_default().to_owned())
}

/// POSTs JSON to an in-process router (with an Idempotency-Key if given,
/// and the access token of the id the path names if a test was handed one)
/// and reads the JSON answer, keeping any access token it carries.
pub async fn post(
    app: &axum::Router,
    path: &str,
    key: Option<&str>,
    body: serde_json::Value,
) -> (axum::http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = axum::http::Request::post(path).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    if let Some(bearer) = access_for(path) {
        req = req.header("authorization", bearer);
    }
    let resp = app.clone().oneshot(req.body(axum::body::Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let answer = serde_json::from_slice(&bytes).unwrap();
    keep_access(&answer);
    (status, answer)
}

//! Real center processes for crash and scale tests: a local CA, a config,
//! start / kill -9 / restart, and a wallet that relays cards in this process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kessai_card::Card;
use kessai_card::storage::{Durability, FileStorage};
use kessai_card::terminal::Terminal;
use kessai_card::transport::{InProcessReader, Reader};
use kessai_core::ids::{OrderId, PartyId, StoreId};
use kessai_core::keys::SigningKey;
use kessai_core::messages::DisplayText;
use kessai_core::messages::bill::LineItem;
use kessai_core::random::SeededRandom;
use kessai_core::time::SystemClock;
use kessai_core::{Currency, Money};
use kessai_http::HttpsClient;
use kessai_merchant::{BillRequest, Merchant};
use kessai_scp03::{CommandApdu, ResponseApdu};
use serde_json::{Value, json};

use crate::{kessai, stderr};

pub type CardTerminal = Terminal<InProcessReader<FileStorage>>;

pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub ca: kessai_tls::CaDir,
    pub runtime: tokio::runtime::Runtime,
    pub wallet: HttpsClient,
    pub merchant: Merchant,
    pub rng: SeededRandom,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Deployment {
    /// A CA with the center's and the admin's certificates.
    pub fn new(seed: u64) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca");
        let ca = ca_path.to_str().unwrap();
        assert!(kessai(&["pki", "init", "--dir", ca], &[]).status.success());
        assert!(
            kessai(&["pki", "issue", "--dir", ca, "--server", "localhost", "--san", "127.0.0.1"], &[]).status.success()
        );
        for (client, party) in [("center", "center"), ("admin", "operator")] {
            assert!(kessai(&["pki", "issue", "--dir", ca, "--client", client, "--party", party], &[]).status.success());
        }
        let ca = kessai_tls::CaDir::new(ca_path);
        let wallet = HttpsClient::new(kessai_tls::client_config(&ca.ca_cert(), None).unwrap(), 5_000);
        let mut rng = SeededRandom::new(seed);
        let merchant = Merchant::new(
            StoreId::parse("kessai-mall").unwrap(),
            SigningKey::generate(&mut rng),
            PartyId::parse("center").unwrap(),
        );
        let runtime = tokio::runtime::Runtime::new().unwrap();
        Deployment { dir, ca, runtime, wallet, merchant, rng }
    }

    /// The data directory of center instance `name`.
    pub fn center_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("center-{name}"))
    }

    /// A center config listening on `port`, with a data directory of its
    /// own; its database `db_url` (`None` = SQLite in the data dir).
    /// Instances on one database get its keys with [`Deployment::provision`].
    pub fn center_config(&self, name: &str, port: u16, db_url: Option<&str>) -> PathBuf {
        let mut text = format!(
            "party_id = \"center\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://127.0.0.1:{port}\"\n\
             data_dir = \"{}\"\nkek_file = \"{}\"\ndelivery_interval_ms = 60000\n",
            self.center_dir(name).display(),
            self.kek_path().display()
        );
        if let Some(url) = db_url {
            text.push_str(&format!("database_url = \"{url}\"\n"));
        }
        text.push_str(&format!(
            "[tls]\nca_dir = \"{}\"\nserver_name = \"localhost\"\nclient_name = \"center\"\n",
            self.ca_path().display()
        ));
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `kessai center init --keys-from`: instance `config` gets the keys of
    /// instance `from`, as an operator provisions a further instance.
    pub fn provision(&self, config: &Path, from: &str) {
        let from = self.center_dir(from);
        let out = kessai(
            &["center", "init", "--config", config.to_str().unwrap(), "--keys-from", from.to_str().unwrap()],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// The center's KEK, one file for every instance of this deployment's
    /// center (as an operator provisions it to each host), outside every
    /// data directory.
    pub fn kek_path(&self) -> PathBuf {
        self.dir.path().join("secrets").join("center-kek.hex")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Issues card `n` with `value` through the CLI; returns its image.
    pub fn issue_card(&self, config: &Path, n: u8, value: u64) -> (String, PathBuf) {
        let id = format!("4b455353414900{n:02x}");
        let image = self.dir.path().join(format!("card-{n}.img"));
        let out = kessai(
            &[
                "center",
                "issue-card",
                "--config",
                config.to_str().unwrap(),
                "--out",
                image.to_str().unwrap(),
                "--card-id",
                &id,
                "--max-balance",
                "1000000",
                "--initial-value",
                &value.to_string(),
            ],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        (id, image)
    }

    /// Registers the mall and its key over the admin API.
    pub fn register_mall(&self, base: &str) {
        let admin =
            HttpsClient::new(kessai_tls::client_config(&self.ca.ca_cert(), Some((&self.ca, "admin"))).unwrap(), 5_000);
        let body = json!({ "id": "kessai-mall", "name": "Kessai Mall", "jwks": self.merchant.jwks() });
        let (status, _) =
            self.runtime.block_on(admin.post_json(&format!("{base}/v1/admin/stores"), &body, &[])).unwrap();
        assert!(status.is_success(), "registering the mall: {status}");
    }

    pub fn bill(&mut self, n: u32, amount: u64) -> String {
        let price = Money::new(amount, Currency::JPY).unwrap();
        let line = LineItem::new("item", DisplayText::parse("Item").unwrap(), 1, price).unwrap();
        let request = BillRequest {
            order_id: OrderId::parse(&format!("ord-{n}")).unwrap(),
            member: None,
            store_name: DisplayText::parse("Kessai Mall").unwrap(),
            lines: vec![line],
            lifetime_s: 3_600,
            origin: kessai_core::messages::WebOrigin::parse("https://shop.kessai.test").unwrap(),
        };
        self.merchant.sign_bill(request, &mut self.rng, &SystemClock).unwrap().token().to_owned()
    }

    /// POSTs a step; `Err` when the center could not be reached.
    /// POSTs as the wallet: with the access token of the settlement or
    /// value update the URL names, if the center handed one out (M4).
    pub fn post(&self, url: &str, key: &str, body: &Value) -> Result<(u16, Value), String> {
        let bearer = access_for(url);
        let mut headers = vec![("idempotency-key", key)];
        headers.extend(bearer.iter().map(|b| ("authorization", b.as_str())));
        let (status, bytes) =
            self.runtime.block_on(self.wallet.post_json(url, body, &headers)).map_err(|e| e.to_string())?;
        let answer = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        keep_access(&answer);
        Ok((status.as_u16(), answer))
    }

    /// GETs as the wallet, with the access token of the id the URL names.
    pub fn get(&self, url: &str) -> Result<(u16, Value), String> {
        let bearer = access_for(url);
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
        let (status, _, bytes) =
            self.runtime.block_on(self.wallet.get_with(url, &headers)).map_err(|e| e.to_string())?;
        Ok((status.as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// GETs `url` with an `Authorization` header if given; the status and
    /// the body as text.
    pub fn get_as(&self, url: &str, authorization: Option<&str>) -> (u16, String) {
        let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", *a)).collect();
        let (status, _, bytes) = self.runtime.block_on(self.wallet.get_with(url, &headers)).unwrap();
        (status.as_u16(), String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn wait_healthy(&self, port: u16) {
        for _ in 0..200 {
            if self.get(&format!("https://127.0.0.1:{port}/healthz")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the center on {port} never became healthy");
    }
}

pub struct CenterProcess {
    child: Child,
}

impl CenterProcess {
    /// Starts `kessai center run`; its log goes to the config's path with
    /// `.log` added.
    pub fn start(config: &Path) -> CenterProcess {
        let mut log = config.as_os_str().to_owned();
        log.push(".log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kessai"))
            .args(["center", "run", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        CenterProcess { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9: no shutdown, no flush.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CenterProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn open_card(image: &Path) -> CardTerminal {
    let card = Card::open(FileStorage::open(image, Durability::Fsync).unwrap()).unwrap();
    let mut t = Terminal::new(InProcessReader::new(card));
    t.select().unwrap();
    t
}

pub fn card_balance(image: &Path) -> u64 {
    let bytes = std::fs::read(image).unwrap();
    kessai_card::public_info(&bytes).unwrap().balance_minor
}

/// The wallet's relay: the reply's APDUs to the card, the answers back.
/// A wallet's create of a purchase in the `offer` profile: the session is
/// opened on the card first, under the challenge bound to the bill.
pub fn create_body(card: &mut CardTerminal, card_id: &str, bill: &str) -> Value {
    create_in(card, card_id, bill, kessai_core::profile::Profile::Offer)
}

/// As [`create_body`], in `profile`: in the second embodiment the wallet
/// reads the card's balance and counter in the clear first.
pub fn create_in(card: &mut CardTerminal, card_id: &str, bill: &str, profile: kessai_core::profile::Profile) -> Value {
    use kessai_card::protocol::{
        CardId as ChipCardId, PublicInfo, get_data_command, initialize_update_command, purchase_host_challenge,
    };
    let mut body = json!({ "bill": bill, "card_id": card_id, "profile": profile.as_str() });
    if profile != kessai_core::profile::Profile::Offer {
        let answer = card.reader_mut().transmit(&get_data_command(0xDF10).to_bytes()).unwrap();
        let info = PublicInfo::parse(&answer[..answer.len() - 2]).unwrap();
        body["card_read"] = json!({ "balance_minor": info.balance_minor, "counter": info.counter });
    }
    let id: [u8; 8] = hex::decode(card_id).unwrap().try_into().unwrap();
    let hash = kessai_core::digest::Sha256Digest::of_token(bill);
    let init = initialize_update_command(&purchase_host_challenge(hash.as_bytes(), &ChipCardId(id)));
    let answer = card.reader_mut().transmit(&init.to_bytes()).unwrap();
    body["initialize_update"] = json!(hex::encode(answer));
    body
}

/// One purchase of `bill` by the card in `image` at the center at `base`,
/// in the `offer` profile (three round trips), each step answered 200 and
/// the last `completed`; that last answer. `tag` makes its
/// Idempotency-Keys its own.
pub fn purchase_offer(d: &Deployment, base: &str, bill: &str, image: &Path, card_id: &str, tag: &str) -> Value {
    let mut card = open_card(image);
    card.select().unwrap();
    let (status, mut reply) =
        d.post(&format!("{base}/v1/settlements"), &format!("{tag}-c"), &create_body(&mut card, card_id, bill)).unwrap();
    assert_eq!(status, 200, "{reply}");
    let id = reply["settlement_id"].as_str().unwrap().to_owned();
    for step in ["balance", "complete"] {
        let url = format!("{base}/v1/settlements/{id}/{step}");
        let (status, r) = d.post(&url, &format!("{tag}-{step}"), &relay(&mut card, &reply)).unwrap();
        assert_eq!(status, 200, "{step}: {r}");
        reply = r;
    }
    assert_eq!(reply["phase"], Value::from("completed"), "{reply}");
    reply
}

pub fn relay(card: &mut CardTerminal, reply: &Value) -> Value {
    let answers: Vec<String> = reply["apdus"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let cmd = CommandApdu::parse(&hex::decode(h.as_str().unwrap()).unwrap()).unwrap();
            let answer = card.reader_mut().transmit(&cmd.to_bytes()).unwrap();
            hex::encode(ResponseApdu::parse(&answer).unwrap().to_bytes())
        })
        .collect();
    json!({ "responses": answers })
}

/// Brings open settlement `id` (as `view` shows it) to an end, as a
/// wallet's `recover` does: cancel before the DEBIT, recovery with the card
/// after. `post(path, key, body)` reaches a center however the caller does;
/// `tag` makes the Idempotency-Keys of this attempt its own.
pub fn settle(
    card: &mut CardTerminal,
    id: &str,
    tag: u32,
    view: &Value,
    mut post: impl FnMut(&str, &str, &Value) -> (u16, Value),
) -> kessai_center::purchase::Phase {
    use kessai_center::purchase::Phase;
    let phase = Phase::parse(view["phase"].as_str().unwrap()).unwrap();
    if matches!(phase, Phase::Completed | Phase::Voided) {
        return phase;
    }
    if !phase.debit_issued() {
        let (_, r) = post(&format!("/v1/settlements/{id}/cancel"), &format!("c{tag}-{id}"), &json!({}));
        return Phase::parse(r["phase"].as_str().unwrap()).unwrap();
    }
    card.select().unwrap();
    let (_, r) = post(&format!("/v1/settlements/{id}/recover"), &format!("r{tag}-{id}"), &json!({}));
    let (_, r) =
        post(&format!("/v1/settlements/{id}/recover/authenticate"), &format!("ra{tag}-{id}"), &relay(card, &r));
    let (_, mut r) = post(&format!("/v1/settlements/{id}/recover/status"), &format!("rs{tag}-{id}"), &relay(card, &r));
    if r["phase"] == "recovering_balance" {
        r = post(&format!("/v1/settlements/{id}/recover/balance"), &format!("rb{tag}-{id}"), &relay(card, &r)).1;
    }
    Phase::parse(r["phase"].as_str().unwrap_or("offered")).unwrap()
}

/// The access tokens the centers handed out in these tests, by id, as a
/// wallet keeps them (M4). Ids are unique across tests.
static ACCESS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

/// Keeps the access token an answer carries.
pub fn keep_access(answer: &Value) {
    let id = ["settlement_id", "update_id", "statement_id"].iter().find_map(|k| answer[*k].as_str());
    if let (Some(id), Some(token)) = (id, answer["access_token"].as_str()) {
        ACCESS.lock().unwrap().insert(id.to_owned(), token.to_owned());
    }
}

/// The `Authorization` value for a URL on a settlement, value update or
/// statement whose access token a test was handed.
pub fn access_for(url: &str) -> Option<String> {
    let path = url.split_once("/v1/")?.1;
    let id = path.split('/').nth(1)?;
    ACCESS.lock().unwrap().get(id).map(|t| format!("Bearer {t}"))
}

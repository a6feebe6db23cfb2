//! kessai-center's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod audit;
mod charge;
mod charge_api;
mod clearing;
mod console;
mod db;
mod failover;
mod faults;
mod hsm;
mod keys;
mod members;
mod prepaid;
mod profiles;
mod provider;
mod purchase;
mod refund;
mod service;
mod statement;
mod tls;
mod tokens;
mod world;

/// The verified certificate an in-process request carries: `admin` acts as
/// an operator, `center` as the center, any other name as a store;
/// `PARTY/NAME` names the party.
/// Operator `name` over the admin API.
pub(crate) fn operator(name: &str) -> kessai_center::console::Actor {
    kessai_center::console::Actor::api(name)
}

/// The operator a test's changes are made by.
pub(crate) fn tester() -> &'static kessai_center::console::Actor {
    static TESTER: std::sync::OnceLock<kessai_center::console::Actor> = std::sync::OnceLock::new();
    TESTER.get_or_init(|| kessai_center::console::Actor::api("test"))
}

/// The trail row of a change a test makes directly (not through the
/// admin API or the console).
pub(crate) fn trail(action: &str) -> kessai_center::db::TrailEntry {
    kessai_center::console::Actor::api("test").did(action, "test", serde_json::Value::Null, serde_json::Value::Null)
}

pub(crate) fn peer(spec: &str) -> kessai_http::PeerIdentity {
    use kessai_http::Party;
    if let Some((party, name)) = spec.split_once('/') {
        return kessai_http::PeerIdentity::new(name, Party::parse(party).expect("a party's name"));
    }
    let party = match spec {
        "admin" => Party::Operator,
        "center" => Party::Center,
        _ => Party::Store,
    };
    kessai_http::PeerIdentity::new(spec, party)
}

/// The center the tests' stores and members address their messages to.
pub(crate) fn center_party() -> kessai_core::ids::PartyId {
    kessai_core::ids::PartyId::parse(kessai_core::samples::CENTER).unwrap()
}

//! The pySim SCP03 transcripts in `shared/test-vectors/scp03`: the host side
//! and the card side must each reproduce every step byte for byte.

use kessai_scp03::handshake::{card_cryptogram, host_cryptogram, session_keys};
use kessai_scp03::{
    Aid, CardHandshake, CardIdentity, CommandApdu, HostHandshake, HostState, KeyVersion, ResponseApdu, SecurityLevel,
    SequenceCounter, StaticKeys,
};

use crate::{key, unhex};

#[derive(serde::Deserialize)]
struct Transcript {
    schema: String,
    aes_key_bits: u32,
    s_mode: u32,
    key_version: String,
    static_keys: Keys,
    security_level: String,
    host_challenge: String,
    key_diversification_data: String,
    card_challenge: String,
    sequence_counter: String,
    card_challenge_aid: String,
    derived: Derived,
    steps: Vec<Step>,
}

#[derive(serde::Deserialize)]
struct Keys {
    enc: String,
    mac: String,
    dek: String,
}

#[derive(serde::Deserialize)]
struct Derived {
    s_enc: String,
    s_mac: String,
    s_rmac: String,
    card_cryptogram: String,
    host_cryptogram: String,
}

#[derive(serde::Deserialize)]
struct Step {
    name: String,
    c_apdu_plain: Option<String>,
    c_apdu_wire: String,
    r_apdu_wire: Option<String>,
    r_plain: Option<String>,
}

const FILES: [&str; 3] = ["pysim-aes128-11", "pysim-aes128-03", "pysim-aes128-33"];

fn load(id: &str) -> Transcript {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/test-vectors/scp03");
    let path = dir.join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (shared/ must sit beside the repo)", path.display()));
    let t: Transcript = serde_json::from_str(&text).unwrap();
    assert_eq!((t.schema.as_str(), t.aes_key_bits, t.s_mode), ("scp03-kat-v1", 128, 8));
    t
}

fn static_keys(t: &Transcript) -> StaticKeys {
    StaticKeys {
        version: KeyVersion::new(unhex(&t.key_version)[0]).unwrap(),
        enc: key(&t.static_keys.enc),
        mac: key(&t.static_keys.mac),
        dek: key(&t.static_keys.dek),
    }
}

fn level(t: &Transcript) -> SecurityLevel {
    SecurityLevel::new(unhex(&t.security_level)[0]).unwrap()
}

fn s8(hex: &str) -> [u8; 8] {
    unhex(hex).try_into().unwrap()
}

#[test]
fn derived_values() {
    for id in FILES {
        let t = load(id);
        let (hc, cc) = (s8(&t.host_challenge), s8(&t.card_challenge));
        let keys = session_keys(&static_keys(&t), &hc, &cc);
        assert_eq!(keys.s_enc, key(&t.derived.s_enc), "{id}");
        assert_eq!(keys.s_mac, key(&t.derived.s_mac), "{id}");
        assert_eq!(keys.s_rmac, key(&t.derived.s_rmac), "{id}");
        assert_eq!(card_cryptogram(&keys, &hc, &cc).to_vec(), unhex(&t.derived.card_cryptogram));
        assert_eq!(host_cryptogram(&keys, &hc, &cc).to_vec(), unhex(&t.derived.host_cryptogram));
        let seq = SequenceCounter::new(u32::from_str_radix(&t.sequence_counter, 16).unwrap()).unwrap();
        let aid = Aid::new(&unhex(&t.card_challenge_aid)).unwrap();
        let challenge = kessai_scp03::handshake::pseudo_random_card_challenge(&static_keys(&t).enc, seq, &aid);
        assert_eq!(challenge, cc, "{id}: pseudo-random card challenge");
    }
}

#[test]
fn host_side_reproduces_every_step() {
    for id in FILES {
        let t = load(id);
        let handshake = HostHandshake::new(static_keys(&t), level(&t), s8(&t.host_challenge));
        // Resume from bytes between every step, as the center does.
        let handshake = match HostState::from_bytes(&HostState::Handshake(handshake).to_bytes()) {
            Ok(HostState::Handshake(h)) => h,
            other => panic!("{other:?}"),
        };
        let [iu, ea, rest @ ..] = &t.steps[..] else { panic!("{id}: too few steps") };
        assert_eq!(hex::encode(handshake.initialize_update().to_bytes()), iu.c_apdu_wire, "{id}");
        let answer = ResponseApdu::parse(&unhex(iu.r_apdu_wire.as_ref().unwrap())).unwrap();
        let opening = handshake.card_response(&answer).unwrap();
        assert_eq!(hex::encode(opening.external_authenticate.to_bytes()), ea.c_apdu_wire, "{id}");
        assert_eq!(opening.card.key_diversification_data.to_vec(), unhex(&t.key_diversification_data));
        let mut session = opening.session;
        for step in rest {
            let plain = CommandApdu::parse(&unhex(step.c_apdu_plain.as_ref().unwrap())).unwrap();
            let wire = session.wrap(&plain).unwrap();
            assert_eq!(hex::encode(wire.to_bytes()), step.c_apdu_wire, "{id} {}", step.name);
            session = match HostState::from_bytes(&HostState::Open(session).to_bytes()) {
                Ok(HostState::Open(s)) => s,
                other => panic!("{other:?}"),
            };
            if let (Some(r_wire), Some(r_plain)) = (&step.r_apdu_wire, &step.r_plain) {
                let response = ResponseApdu::parse(&unhex(r_wire)).unwrap();
                let (next, plain) = session.unwrap(&response).unwrap();
                assert_eq!(hex::encode(plain.to_bytes()), *r_plain, "{id} {}", step.name);
                session = next;
            }
        }
    }
}

#[test]
fn card_side_reproduces_every_step() {
    for id in FILES {
        let t = load(id);
        let identity = CardIdentity {
            aid: Aid::new(&unhex(&t.card_challenge_aid)).unwrap(),
            key_diversification_data: unhex(&t.key_diversification_data).try_into().unwrap(),
        };
        let seq = SequenceCounter::new(u32::from_str_radix(&t.sequence_counter, 16).unwrap()).unwrap();
        let [iu, ea, rest @ ..] = &t.steps[..] else { panic!("{id}: too few steps") };
        let cmd = CommandApdu::parse(&unhex(&iu.c_apdu_wire)).unwrap();
        let (handshake, answer) = CardHandshake::initialize_update(&static_keys(&t), &identity, seq, &cmd).unwrap();
        assert_eq!(hex::encode(answer.to_bytes()), *iu.r_apdu_wire.as_ref().unwrap(), "{id}");
        let cmd = CommandApdu::parse(&unhex(&ea.c_apdu_wire)).unwrap();
        let (mut session, ok) = handshake.external_authenticate(&cmd).unwrap();
        assert_eq!(ok.to_bytes(), vec![0x90, 0x00]);
        assert_eq!(session.level(), level(&t));
        for step in rest {
            let wire = CommandApdu::parse(&unhex(&step.c_apdu_wire)).unwrap();
            let (next, plain) = session.unwrap_command(&wire).unwrap();
            session = next;
            assert_eq!(Some(hex::encode(plain.to_bytes())), step.c_apdu_plain, "{id} {}", step.name);
            if let (Some(r_wire), Some(r_plain)) = (&step.r_apdu_wire, &step.r_plain) {
                let response = ResponseApdu::parse(&unhex(r_plain)).unwrap();
                let wrapped = session.wrap_response(&response).unwrap();
                assert_eq!(hex::encode(wrapped.to_bytes()), *r_wire, "{id} {}", step.name);
            }
        }
    }
}

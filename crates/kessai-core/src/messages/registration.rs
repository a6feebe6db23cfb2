//! The member registration (seed 003/004 FIG. 3–4, step ⑦): member → center.
//! Signed with the member's new signing key (its verification key travels
//! inside, so the signature proves the member holds it) and sent encrypted
//! to the center ([`crate::jwe`]): a nested JWT, the JWS inside a JWE.
//!
//! The issuer is the member number the center mailed with the one-time
//! activation code (step ⑥); the code is in the body, so only who received
//! the letter can register under that number.

use serde::{Deserialize, Serialize};

use super::{DisplayText, MessageError, field_error};
use crate::ids::PartyId;
use crate::jwk::{Ed25519Jwk, ParsedJwk, parse_jwk};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::{KeyDirectory, PublicKey, SigningKey, Validity};
use crate::time::Clock;

/// The JWE `typ` of a registration, and the `cty` of its content.
pub const JWE_TYP: &str = "kessai-registration+jwe";
pub const JWE_CTY: &str = "JWT";

/// Which ledger the member enters (会員原簿 or 店舗原簿).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberKind {
    General,
    Store,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::General => "general",
            MemberKind::Store => "store",
        }
    }
}

/// What the member declares: a person's, or a business's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MemberDetails {
    General { name: DisplayText, address: DisplayText, birth_date: String },
    Store { business_name: DisplayText, address: DisplayText, bank_account: DisplayText },
}

impl MemberDetails {
    pub fn kind(&self) -> MemberKind {
        match self {
            MemberDetails::General { .. } => MemberKind::General,
            MemberDetails::Store { .. } => MemberKind::Store,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RegistrationDraft", into = "RegistrationDraft")]
pub struct Registration {
    member: PartyId,
    activation_code: String,
    details: MemberDetails,
    key: Ed25519Jwk,
    parsed: ParsedKey,
}

/// The verification key, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedKey {
    public: [u8; 32],
}

/// The fields of a Registration, checked by [`Registration::new`]; also its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationDraft {
    pub member: PartyId,
    pub activation_code: String,
    pub details: MemberDetails,
    pub key: Ed25519Jwk,
}

/// Longest activation code.
const MAX_CODE_BYTES: usize = 64;

impl Registration {
    pub fn new(d: RegistrationDraft) -> Result<Registration, MessageError> {
        let code_ok = !d.activation_code.is_empty()
            && d.activation_code.len() <= MAX_CODE_BYTES
            && d.activation_code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !code_ok {
            return Err(field_error("activation_code", "1 to 64 letters, digits or hyphens"));
        }
        if let MemberDetails::General { birth_date, .. } = &d.details
            && !is_date(birth_date)
        {
            return Err(field_error("birth_date", "must be YYYY-MM-DD"));
        }
        let json = serde_json::to_vec(&d.key).map_err(|e| field_error("key", e))?;
        let ParsedJwk { public, .. } = parse_jwk(&json).map_err(|e| field_error("key", e))?;
        Ok(Registration {
            member: d.member,
            activation_code: d.activation_code,
            details: d.details,
            key: d.key,
            parsed: ParsedKey { public },
        })
    }

    pub fn member(&self) -> &PartyId {
        &self.member
    }
    pub fn activation_code(&self) -> &str {
        &self.activation_code
    }
    pub fn details(&self) -> &MemberDetails {
        &self.details
    }
    /// The verification key the member registers.
    pub fn key(&self) -> Result<PublicKey, MessageError> {
        PublicKey::from_bytes(&self.parsed.public).map_err(|e| field_error("key", e))
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return false;
    }
    let month: u32 = s[5..7].parse().unwrap_or(0);
    let day: u32 = s[8..10].parse().unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

impl TryFrom<RegistrationDraft> for Registration {
    type Error = MessageError;
    fn try_from(d: RegistrationDraft) -> Result<Self, MessageError> {
        Registration::new(d)
    }
}

impl From<Registration> for RegistrationDraft {
    fn from(r: Registration) -> Self {
        RegistrationDraft { member: r.member, activation_code: r.activation_code, details: r.details, key: r.key }
    }
}

impl MessageKind for Registration {
    const TYP: &'static str = "kessai-registration+jwt";
    const BODY: &'static str = "registration";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if claims.issuer() != &self.member {
            return Err(field_error("member", "must be the issuer of the registration").into());
        }
        Ok(())
    }
}

/// Signs a registration with the member's new key (the one it carries).
pub fn sign(claims: &Claims, registration: &Registration, key: &SigningKey) -> Result<String, JwsError> {
    if registration.parsed.public != *key.public().as_bytes() {
        return Err(JwsError::InvalidMessage("the registration must carry the key that signs it".into()));
    }
    jws::sign(claims, registration, key)
}

/// Verifies a registration with the key it carries (proof of possession):
/// the signature must be by exactly that key, for the member it names.
pub fn verify(token: &str, clock: &dyn Clock) -> Result<Verified<Registration>, JwsError> {
    let (_, payload) = jws::inspect_unverified(token)?;
    let body: Registration = serde_json::from_value(payload[<Registration as MessageKind>::BODY].clone())
        .map_err(|e| JwsError::InvalidMessage(e.to_string()))?;
    let key = body.key().map_err(JwsError::from)?;
    let mut keys = KeyDirectory::new();
    keys.insert(body.member.clone(), key, Validity::always()).map_err(|e| JwsError::InvalidMessage(e.to_string()))?;
    jws::verify(token, &keys, clock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MessageId;
    use crate::random::SeededRandom;
    use crate::time::{FixedClock, Timestamp};

    const NOW: Timestamp = Timestamp::from_unix_s(1_795_000_000);

    fn draft(key: &SigningKey) -> RegistrationDraft {
        RegistrationDraft {
            member: PartyId::parse("m-0123456789abcdef").unwrap(),
            activation_code: "K7QX-2M9P-ZT4R".into(),
            details: MemberDetails::General {
                name: DisplayText::parse("山田 花子").unwrap(),
                address: DisplayText::parse("1-2-3 Chiyoda, Tokyo").unwrap(),
                birth_date: "1990-04-01".into(),
            },
            key: Ed25519Jwk::new(key.public().as_bytes(), None, None),
        }
    }

    #[test]
    fn a_registration_verifies_only_under_the_key_it_carries_for_the_member_it_names() {
        let mut rng = SeededRandom::new(3);
        let key = SigningKey::generate(&mut rng);
        let other = SigningKey::generate(&mut rng);
        let member = PartyId::parse("m-0123456789abcdef").unwrap();
        let claims = Claims::for_lifetime(member.clone(), MessageId::generate(&mut rng), NOW, 600).unwrap();
        let r = Registration::new(draft(&key)).unwrap();
        let token = sign(&claims, &r, &key).unwrap();
        let clock = FixedClock::new(NOW);
        let v = verify(&token, &clock).unwrap();
        assert_eq!(v.message().member(), &member);
        assert_eq!(v.kid(), key.kid());
        // Signed by another key than the one it carries: refused to sign,
        // and a forged one refused to verify.
        assert!(sign(&claims, &r, &other).is_err());
        let forged = jws::sign(&claims, &r, &other).unwrap();
        assert!(verify(&forged, &clock).is_err(), "the signature must be by the carried key");
        // Another issuer than the member named.
        let stranger = Claims::for_lifetime(PartyId::parse("m-ffff").unwrap(), MessageId::generate(&mut rng), NOW, 600);
        assert!(sign(&stranger.unwrap(), &r, &key).is_err());
        assert!(Registration::new(RegistrationDraft { activation_code: "has space".into(), ..draft(&key) }).is_err());
        let bad_date = RegistrationDraft {
            details: MemberDetails::General {
                name: DisplayText::parse("A").unwrap(),
                address: DisplayText::parse("B").unwrap(),
                birth_date: "1990-13-01".into(),
            },
            ..draft(&key)
        };
        assert!(Registration::new(bad_date).is_err());
    }
}

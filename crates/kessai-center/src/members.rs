//! Members (#12; seed 003/004 FIG. 3–4): an applicant applies (steps
//! ①–⑤); the operator approves, and the member number with a one-time
//! activation code goes out of band through the outbox (step ⑥, never in
//! an HTTP answer to the applicant); the member registers (step ⑦): the
//! registration, signed with the member's new key and encrypted to the
//! center, is checked (the key it carries made the signature; the code is
//! the letter's, unused, unexpired) and the member is entered in the
//! ledger with that key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kessai_core::digest::Sha256Digest;
use kessai_core::jwe;
use kessai_core::messages::DisplayText;
use kessai_core::messages::registration::{self, JWE_CTY, JWE_TYP, MemberKind};
use kessai_core::time::Timestamp;
use kessai_http::{ApiError, ErrorCode};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::console::Actor;
use crate::db::{ApplicationRow, DbError, Entered, LetterRow, MemberRow};
use crate::service::Center;

/// How long an activation code is good for.
pub const ACTIVATION_LIFETIME_S: u64 = 14 * 86_400;
/// How long a registered key is valid (then replaced, #12 key lifecycle).
pub const MEMBER_KEY_LIFETIME_S: u64 = 2 * 365 * 86_400;
/// The activation code's alphabet (Crockford base32: no I, L, O, U).
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Why a member request was refused; each maps to a status and a code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    #[error("{0}")]
    BadApplication(String),
    #[error("no application {0}")]
    UnknownApplication(String),
    #[error("application {0} is not waiting for approval")]
    NotReceived(String),
    #[error("the registration must be a JWE for the center's encryption key: {0}")]
    NotEncrypted(String),
    #[error("the registration is refused: {0}")]
    BadRegistration(String),
    /// An unknown member number and a wrong code answer alike.
    #[error("the member number or the activation code is not right")]
    ActivationRefused,
    #[error("the activation code expired; ask for a new one")]
    CodeExpired,
    #[error("the activation code was used already")]
    CodeUsed,
    #[error("the registration is for a {letter} member, the letter was for a {asked} one")]
    KindMismatch { letter: String, asked: String },
    #[error("this registration, or this key, is registered already")]
    AlreadyRegistered,
    #[error("no unsent letter {0}")]
    UnknownLetter(String),
    #[error("no active member {0}")]
    UnknownMember(String),
    #[error("the key replacement is refused: {0}")]
    BadReplacement(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

pub fn member_api_error(e: MemberError) -> ApiError {
    let code = match &e {
        MemberError::BadApplication(_) => ErrorCode::BadApplication,
        MemberError::UnknownApplication(_) => ErrorCode::UnknownApplication,
        MemberError::NotReceived(_) => ErrorCode::NotReceived,
        MemberError::NotEncrypted(_) => ErrorCode::NotEncrypted,
        MemberError::BadRegistration(_) => ErrorCode::BadRegistration,
        MemberError::ActivationRefused => ErrorCode::ActivationRefused,
        MemberError::CodeExpired => ErrorCode::ActivationCodeExpired,
        MemberError::CodeUsed => ErrorCode::ActivationCodeUsed,
        MemberError::KindMismatch { .. } => ErrorCode::KindMismatch,
        MemberError::AlreadyRegistered => ErrorCode::AlreadyRegistered,
        MemberError::UnknownLetter(_) => ErrorCode::UnknownLetter,
        MemberError::UnknownMember(_) => ErrorCode::UnknownMember,
        MemberError::BadReplacement(_) => ErrorCode::ReplacementRefused,
        MemberError::Db(d) => return ApiError::internal(d),
    };
    ApiError::new(code, e.to_string())
}

pub use kessai_api::admin::{Approved, Letter};
pub use kessai_api::views::{ApplicationReply, MemberReply};

fn kind_of(s: &str) -> Result<MemberKind, MemberError> {
    match s {
        "general" => Ok(MemberKind::General),
        "store" => Ok(MemberKind::Store),
        other => Err(MemberError::BadApplication(format!("kind {:?} is neither general nor store", trunc(other)))),
    }
}

fn trunc(s: &str) -> String {
    s.chars().take(40).collect()
}

fn random_hex<R: kessai_core::random::Random + ?Sized>(rng: &mut R, bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A one-time activation code: 16 characters of Crockford base32 (80
/// bits), grouped by four.
fn activation_code<R: kessai_core::random::Random + ?Sized>(rng: &mut R) -> String {
    let mut raw = [0u8; 16];
    rng.fill_bytes(&mut raw);
    let chars: Vec<char> = raw.iter().map(|b| char::from(CODE_ALPHABET[usize::from(b % 32)])).collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// The code as stored: SHA-256 of its canonical form (upper case, no
/// hyphens), hex.
fn code_hash(code: &str) -> String {
    let canonical: String = code.chars().filter(|c| *c != '-').map(|c| c.to_ascii_uppercase()).collect();
    Sha256Digest::of(canonical.as_bytes()).to_string()
}

impl Center {
    /// Steps ①–⑤: an application, received for the operator to examine.
    pub async fn apply(&self, kind: &str, name: &str, contact: &str) -> Result<ApplicationReply, MemberError> {
        let kind = kind_of(kind)?;
        let text = |field: &str, s: &str| {
            DisplayText::parse(s)
                .map(|t| t.as_str().to_owned())
                .map_err(|e| MemberError::BadApplication(format!("{field}: {e}")))
        };
        let (name, contact) = (text("name", name)?, text("contact", contact)?);
        let mut rng = self.random.generator();
        let row = ApplicationRow {
            id: format!("app_{}", random_hex(rng.as_mut(), 16)),
            kind: kind.as_str().to_owned(),
            name,
            contact,
            status: "received".into(),
            created_at: self.clock.now(),
        };
        self.db.insert_application(&row).await?;
        Ok(ApplicationReply { application_id: row.id, kind, status: row.status })
    }

    /// Step ⑥, the other way: operator `by` rejects a received application
    /// for `reason`; no member number or letter is made. The decision and
    /// its trail row are written with the status, in one transaction.
    pub async fn reject_application(&self, id: &str, by: &Actor, reason: &str) -> Result<(), MemberError> {
        self.db.application(id).await?.ok_or_else(|| MemberError::UnknownApplication(trunc(id)))?;
        let trail = by.did(
            "application_rejected",
            id,
            serde_json::json!({ "status": "received" }),
            serde_json::json!({ "status": "rejected", "reason": reason }),
        );
        if !self.db.reject_application(id, &by.name, reason, self.clock.now(), trail).await? {
            return Err(MemberError::NotReceived(trunc(id)));
        }
        Ok(())
    }

    /// Step ⑥: operator `by` approves; the member number and activation
    /// code go into the outbox letter, to be sent out of band. The letter
    /// and the trail row (never the code) are written with the status.
    pub async fn approve_application(&self, id: &str, by: &Actor) -> Result<Approved, MemberError> {
        let application = self.db.application(id).await?.ok_or_else(|| MemberError::UnknownApplication(trunc(id)))?;
        let now = self.clock.now();
        let mut rng = self.random.generator();
        // A member number never reads as a payment card number: it goes
        // into deposit tokens (seed 002), which refuse one.
        let member = loop {
            let number = format!("m-{}", random_hex(rng.as_mut(), 8));
            if !kessai_core::token::holds_a_card_number(&number) {
                break number;
            }
        };
        let code = activation_code(rng.as_mut());
        let expires_at = Timestamp::from_unix_s(now.unix_s() + ACTIVATION_LIFETIME_S);
        let text = format!(
            "kessai membership ({kind} member)\n\nDear {name},\n\nYour member number: {member}\n\
             Your activation code: {code}\nValid until: {expires_at} (Unix time)\n\n\
             Register with `kessai wallet member register` (or your store's tools) within that time.\n\
             The code works once. Keep it to yourself.\n",
            kind = application.kind,
            name = application.name,
            expires_at = expires_at.unix_s(),
        );
        let letter = LetterRow {
            id: format!("ltr_{}", random_hex(rng.as_mut(), 16)),
            member: member.clone(),
            kind: application.kind.clone(),
            letter: Some(text),
            code_hash: code_hash(&code),
            expires_at,
            sent_at: None,
            used_at: None,
        };
        let trail = by.did(
            "application_approved",
            id,
            serde_json::json!({ "status": "received" }),
            serde_json::json!({ "status": "approved", "member": member, "letter_id": letter.id }),
        );
        if !self.db.approve_application(id, &letter, now, trail).await? {
            return Err(MemberError::NotReceived(trunc(id)));
        }
        Ok(Approved { application_id: application.id, member, letter_id: letter.id, expires_at })
    }

    /// A member's key reported lost: revoked at once (it verifies nothing
    /// from now on), and a new letter with a new activation code waits in
    /// the outbox, for the member to register a new key (step ⑦ again).
    pub async fn revoke_member(&self, member: &str, reason: &str, by: &Actor) -> Result<Approved, MemberError> {
        let text = DisplayText::parse(reason).map_err(|e| MemberError::BadApplication(format!("reason: {e}")))?;
        let row = self.db.member(member).await?.ok_or_else(|| MemberError::UnknownMember(trunc(member)))?;
        let now = self.clock.now();
        let mut rng = self.random.generator();
        let code = activation_code(rng.as_mut());
        let expires_at = Timestamp::from_unix_s(now.unix_s() + ACTIVATION_LIFETIME_S);
        let letter = LetterRow {
            id: format!("ltr_{}", random_hex(rng.as_mut(), 16)),
            member: row.member.clone(),
            kind: row.kind.clone(),
            letter: Some(format!(
                "kessai membership ({kind} member)\n\nYour key was revoked ({reason}).\n\n\
                 Your member number: {member}\nYour new activation code: {code}\n\
                 Valid until: {expires} (Unix time)\n\nRegister a new key with `kessai wallet member register`.\n",
                kind = row.kind,
                reason = text.as_str(),
                expires = expires_at.unix_s(),
            )),
            code_hash: code_hash(&code),
            expires_at,
            sent_at: None,
            used_at: None,
        };
        let trail = by.did(
            "member_revoked",
            member,
            serde_json::json!({ "status": row.status, "kid": row.kid }),
            serde_json::json!({ "status": "revoked", "reason": text.as_str(), "letter_id": letter.id }),
        );
        if !self.db.revoke_member(member, text.as_str(), &letter, now, trail).await? {
            return Err(MemberError::UnknownMember(trunc(member)));
        }
        tracing::warn!(member, kid = %row.kid, "member key revoked");
        Ok(Approved {
            application_id: format!("revoked:{member}"),
            member: row.member,
            letter_id: letter.id,
            expires_at,
        })
    }

    /// A member replaces its key: the replacement is signed with the
    /// current key and carries the new key's proof of possession. In one
    /// transaction the current key is retired and the new one entered.
    pub async fn replace_member_key(&self, token: &str) -> Result<MemberReply, MemberError> {
        use kessai_core::messages::key_replacement;
        let refused = |why: String| MemberError::BadReplacement(why);
        let (row, keys) = match self.signing_member(token).await? {
            Ok(found) => found,
            Err(SignerUnknown::Unreadable(why)) => return Err(refused(why)),
            Err(SignerUnknown::NotActive(member)) => return Err(MemberError::UnknownMember(trunc(&member))),
        };
        let member = row.member.clone();
        let verified = key_replacement::verify(token, &keys, self.clock.as_ref(), &self.center_id)
            .map_err(|e| refused(e.to_string()))?;
        let new_key = verified.message().new_key().map_err(|e| refused(e.to_string()))?;
        let now = self.clock.now();
        let new = MemberRow {
            kid: new_key.kid().as_str().to_owned(),
            public_key: kessai_core::base64url::encode(new_key.as_bytes()),
            not_before: now,
            not_after: Timestamp::from_unix_s(now.unix_s() + MEMBER_KEY_LIFETIME_S),
            ..row.clone()
        };
        let window = kessai_core::keys::Validity { not_before: Some(new.not_before), not_after: Some(new.not_after) };
        if row.kind == "store" {
            self.room_for_a_store_key().await?;
        }
        let store_key = (row.kind == "store").then_some((&new_key, window));
        if !self.db.replace_member_key(&new, &row.kid, store_key, now).await? {
            return Err(refused("the key it replaces is no longer the member's, or the new key was retired".into()));
        }
        tracing::info!(member, old = %row.kid, new = %new.kid, "member key replaced");
        Ok(MemberReply {
            member: new.member,
            kind: new.kind,
            kid: new.kid,
            not_before: new.not_before,
            not_after: new.not_after,
            status: new.status,
        })
    }

    /// Every store key, revoked ones too, is in the directory bills are
    /// checked with, which holds at most `MAX_REGISTRY_KEYS`: refused here
    /// rather than fail every bill later (H2).
    async fn room_for_a_store_key(&self) -> Result<(), MemberError> {
        let max = kessai_core::limits::MAX_REGISTRY_KEYS;
        if self.db.store_key_count().await?.saturating_add(1) > max {
            return Err(MemberError::BadRegistration(format!("the registry holds at most {max} store keys")));
        }
        Ok(())
    }

    /// The outbox: letters the operator has not marked sent.
    pub async fn outbox(&self) -> Result<Vec<Letter>, MemberError> {
        Ok(self
            .db
            .unsent_letters(crate::db::MAX_LIST)
            .await?
            .into_iter()
            .map(|l| Letter {
                letter_id: l.id,
                member: l.member,
                kind: l.kind,
                text: l.letter.unwrap_or_default(),
                expires_at: l.expires_at,
            })
            .collect())
    }

    /// The operator sent a letter: its text, with the code, is wiped.
    pub async fn letter_sent(&self, id: &str, by: &Actor) -> Result<(), MemberError> {
        let trail =
            by.did("letter_sent", id, serde_json::json!({ "sent": false }), serde_json::json!({ "sent": true }));
        match self.db.mark_letter_sent(id, self.clock.now(), trail).await? {
            true => Ok(()),
            false => Err(MemberError::UnknownLetter(trunc(id))),
        }
    }

    /// Step ⑦: a registration, a JWS signed with the member's new key inside
    /// a JWE to the center's encryption key.
    pub async fn register_member(&self, envelope: &str) -> Result<MemberReply, MemberError> {
        self.register_opened(&self.open_registration(envelope)?).await
    }

    /// The registration JWS inside a JWE to the center's encryption key.
    pub fn open_registration(&self, envelope: &str) -> Result<Zeroizing<String>, MemberError> {
        let key = self.security.member_encryption_key();
        let (header, inner) = jwe::decrypt(envelope, &key).map_err(|e| MemberError::NotEncrypted(e.to_string()))?;
        if header.typ.as_deref() != Some(JWE_TYP) || header.cty.as_deref() != Some(JWE_CTY) {
            return Err(MemberError::NotEncrypted(format!("typ must be {JWE_TYP} and cty {JWE_CTY}")));
        }
        let token = String::from_utf8(inner.to_vec()).map_err(|_| MemberError::BadRegistration("not a JWS".into()))?;
        Ok(Zeroizing::new(token))
    }

    /// Step ⑦ for a registration JWS already out of its JWE.
    pub async fn register_opened(&self, token: &str) -> Result<MemberReply, MemberError> {
        let verified = registration::verify(token, self.clock.as_ref())
            .map_err(|e| MemberError::BadRegistration(e.to_string()))?;
        let r = verified.message();
        let member = r.member().as_str();
        // An unknown member number and a wrong code answer alike: the
        // letter is found by the code's hash, only for that member.
        let letter = self
            .db
            .letter_with(member, &code_hash(r.activation_code()))
            .await?
            .ok_or(MemberError::ActivationRefused)?;
        let now = self.clock.now();
        if letter.used_at.is_some() {
            return Err(MemberError::CodeUsed);
        }
        if letter.expires_at < now {
            return Err(MemberError::CodeExpired);
        }
        let asked = r.details().kind().as_str();
        if asked != letter.kind {
            return Err(MemberError::KindMismatch { letter: letter.kind, asked: asked.to_owned() });
        }
        let public = r.key().map_err(|e| MemberError::BadRegistration(e.to_string()))?;
        let row = MemberRow {
            member: member.to_owned(),
            kind: asked.to_owned(),
            details: serde_json::to_string(r.details()).map_err(|e| MemberError::BadRegistration(e.to_string()))?,
            kid: verified.kid().as_str().to_owned(),
            public_key: kessai_core::base64url::encode(public.as_bytes()),
            not_before: now,
            not_after: Timestamp::from_unix_s(now.unix_s() + MEMBER_KEY_LIFETIME_S),
            status: "active".into(),
            registration_jti: verified.claims().id().as_str().to_owned(),
        };
        // A store member is also a store: its bills are signed with this key
        // (no mall; completions are read at the center until it gives a
        // notify URL).
        let store = match r.details() {
            kessai_core::messages::registration::MemberDetails::Store { business_name, bank_account, .. } => {
                let id = kessai_core::ids::StoreId::parse(member)
                    .map_err(|e| MemberError::BadRegistration(e.to_string()))?;
                if crate::service::RESERVED_STORE_IDS.contains(&id.as_str()) {
                    return Err(MemberError::BadRegistration(format!("{id} names a role")));
                }
                Some(crate::db::StoreRecord {
                    id,
                    name: business_name.clone(),
                    mall: None,
                    notify_url: None,
                    client_name: None,
                    bank_account: Some(bank_account.as_str().to_owned()),
                })
            }
            kessai_core::messages::registration::MemberDetails::General { .. } => None,
        };
        if store.is_some() {
            self.room_for_a_store_key().await?;
        }
        let window = kessai_core::keys::Validity { not_before: Some(row.not_before), not_after: Some(row.not_after) };
        let store = store.as_ref().map(|s| (s, &public, window));
        match self.db.enter_member(&row, &letter.id, store, now).await? {
            Entered::Done => {}
            Entered::CodeGone => return Err(MemberError::CodeUsed),
            Entered::Duplicate => return Err(MemberError::AlreadyRegistered),
        }
        tracing::info!(member, kid = %row.kid, kind = asked, "member registered");
        Ok(MemberReply {
            member: row.member,
            kind: row.kind,
            kid: row.kid,
            not_before: row.not_before,
            not_after: row.not_after,
            status: row.status,
        })
    }
}

/// Why the member who signed a message was not found.
#[derive(Debug)]
pub(crate) enum SignerUnknown {
    /// The token names no issuer, or the stored key cannot be read.
    Unreadable(String),
    /// No active member of that number (the number, at most 64 characters).
    NotActive(String),
}

impl Center {
    /// The active member who (by its `iss`) signed `token`, and its
    /// registered key to verify it with. Nothing is trusted before the
    /// caller verifies the token with these keys.
    pub(crate) async fn signing_member(
        &self,
        token: &str,
    ) -> Result<Result<(MemberRow, kessai_core::keys::KeyDirectory), SignerUnknown>, crate::db::DbError> {
        let (_, payload) = match kessai_core::jws::inspect_unverified(token) {
            Ok(parts) => parts,
            Err(e) => return Ok(Err(SignerUnknown::Unreadable(e.to_string()))),
        };
        let Some(member) = payload["iss"].as_str() else {
            return Ok(Err(SignerUnknown::Unreadable("no issuer".into())));
        };
        let Some(row) = self.db.member(member).await?.filter(|m| m.status == "active") else {
            return Ok(Err(SignerUnknown::NotActive(member.chars().take(64).collect())));
        };
        Ok(member_keys(&row).map(|keys| (row, keys)).map_err(SignerUnknown::Unreadable))
    }
}

/// The member's registered key, as a key directory (owner: the member).
pub(crate) fn member_keys(row: &MemberRow) -> Result<kessai_core::keys::KeyDirectory, String> {
    let mut public = [0u8; 32];
    kessai_core::base64url::decode_exact(&row.public_key, &mut public).map_err(|_| "the stored key".to_owned())?;
    let key = kessai_core::keys::PublicKey::from_bytes(&public).map_err(|e| e.to_string())?;
    let window = kessai_core::keys::Validity { not_before: Some(row.not_before), not_after: Some(row.not_after) };
    let owner = kessai_core::ids::PartyId::parse(&row.member).map_err(|e| e.to_string())?;
    let mut keys = kessai_core::keys::KeyDirectory::new();
    keys.insert(owner, key, window).map_err(|e| e.to_string())?;
    Ok(keys)
}

fn json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(ErrorCode::BadJson, format!("request body: {e}")))
}

/// The public member routes: apply, the encryption key, register.
pub fn routes(center: Arc<Center>) -> Router {
    Router::new()
        .route("/v1/members/applications", post(apply))
        .route("/v1/members/encryption-key", get(encryption_key))
        .route("/v1/members/registrations", post(register))
        .route("/v1/members/key-replacements", post(replace_key))
        .with_state(center)
}

async fn apply(State(c): State<Arc<Center>>, caller: crate::api::Caller, body: Bytes) -> Response {
    let work = async {
        let b: kessai_api::request::MemberApplication = json(&body)?;
        c.apply(&b.kind, &b.name, &b.contact).await.map_err(member_api_error)
    };
    crate::api::idempotent(&c, &caller, "member-application", &body, work).await
}

async fn encryption_key(State(c): State<Arc<Center>>) -> Json<jwe::X25519Jwk> {
    Json(c.security.member_encryption_key().public().to_jwk())
}

async fn register(State(c): State<Arc<Center>>, caller: crate::api::Caller, body: Bytes) -> Response {
    let opened = json::<kessai_api::request::SubmitRegistration>(&body)
        .and_then(|b| c.open_registration(&b.registration).map_err(member_api_error));
    let token = match opened {
        Ok(token) => token,
        Err(e) => return e.into_response(),
    };
    // A retry is known by the registration inside, not by its envelope,
    // which the wallet encrypts afresh at every attempt (a key drawn per
    // message): the same registration under the same Idempotency-Key gets
    // the stored answer. The token's digest tells nothing of its activation
    // code: the token also holds a random jti and a signature.
    let fingerprint = [&b"member-registration\n"[..], Sha256Digest::of(token.as_bytes()).as_bytes()].concat();
    let work = async { c.register_opened(&token).await.map_err(member_api_error) };
    crate::api::idempotent_by(&c, &caller, &fingerprint, work).await
}

async fn replace_key(State(c): State<Arc<Center>>, caller: crate::api::Caller, body: Bytes) -> Response {
    let work = async {
        let b: kessai_api::request::SubmitKeyReplacement = json(&body)?;
        c.replace_member_key(&b.replacement).await.map_err(member_api_error)
    };
    crate::api::idempotent(&c, &caller, "member-key-replacement", &body, work).await
}

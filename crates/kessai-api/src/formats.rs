//! What the wire's strings look like, for the OpenAPI document: a field of
//! the contract's types that travels as a string of a fixed form names its
//! form here (`#[schemars(with = "formats::Jws")]`). Each form is what the
//! center's parser accepts, no more and no less: a request the document
//! allows is not refused for its form, and one it does not allow is.

use std::borrow::Cow;

use kessai_core::limits::MAX_AMOUNT_MINOR;
use kessai_core::money::Currency;
use kessai_core::profile::Profile;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// Any whitespace a Rust `trim` removes, as a character class body.
macro_rules! space {
    () => {
        r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

/// A form: a marker type whose schema is the form. A named form is one
/// component the document refers to; an inline one is written where used.
macro_rules! form {
    ($(#[$doc:meta])* $name:ident, named, $schema:tt) => {
        form!(@ $(#[$doc])* $name, false, $schema);
    };
    ($(#[$doc:meta])* $name:ident, inline, $schema:tt) => {
        form!(@ $(#[$doc])* $name, true, $schema);
    };
    (@ $(#[$doc:meta])* $name:ident, $inline:literal, $schema:tt) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                $inline
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

form!(
    /// Lowercase hex, as the center writes it.
    Hex, named, { "type": "string", "pattern": "^([0-9a-f]{2})+$" }
);
form!(
    /// A compact JWS.
    Jws, named, {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$",
        "description": "compact JWS"
    }
);
form!(
    /// A compact JWE.
    Jwe, named, {
        "type": "string",
        "maxLength": 65000,
        "pattern": "^[A-Za-z0-9_-]+\\.\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]+$",
        "description": "compact JWE (ECDH-ES on X25519, A256GCM): header..iv.ciphertext.tag"
    }
);
form!(
    /// An IC card's id.
    CardId, named, { "type": "string", "pattern": "^[0-9a-f]{16}$", "description": "16 lowercase hex digits" }
);
form!(
    /// A settlement's id.
    SettlementId, named, { "type": "string", "pattern": "^stl_[0-9a-f]{32}$" }
);
form!(
    /// A value update's id.
    UpdateId, named, { "type": "string", "pattern": "^vup_[0-9a-f]{32}$" }
);
form!(
    /// A statement's id.
    StatementId, named, { "type": "string", "pattern": "^stm_[0-9a-f]{32}$" }
);
form!(
    /// An owed item's id.
    OwedId, named, { "type": "string", "pattern": "^owe_[0-9a-f]{32}$" }
);
form!(
    /// A store's id.
    StoreId, named, { "type": "string", "pattern": "^[a-z0-9-]{1,32}$" }
);
form!(
    /// A virtual prepaid card's id.
    PrepaidId, named, { "type": "string", "pattern": "^vpc_[0-9a-f]{32}$", "description": "a virtual prepaid card" }
);
form!(
    /// A funding's id.
    FundingId, named, { "type": "string", "pattern": "^fnd_[0-9a-f]{32}$" }
);
form!(
    /// A token session's id.
    TokenSessionId, named, { "type": "string", "pattern": "^tks_[0-9a-f]{32}$" }
);
form!(
    /// A bank deposit token's id.
    TokenId, named, { "type": "string", "pattern": "^tok_[0-9a-f]{32}$", "description": "a bank deposit token" }
);
form!(
    /// A card's response APDU, as the wallet relays it.
    ApduHex, inline, {
        "type": "string",
        "pattern": "^([0-9a-fA-F]{2})+$",
        "minLength": 4,
        "maxLength": 8192,
        "description": "a card's response APDU in hex (data, then SW1 SW2): 2 to 4096 bytes"
    }
);
form!(
    /// The access token of a settlement, value update or statement.
    AccessToken, inline, {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]{43}$",
        "description": "The access token every later request on this id carries as `Authorization: Bearer` (in the \
                        answers of its create and its own routes)."
    }
);
form!(
    /// A payment card's number.
    CardNumber, inline, {
        "type": "string",
        "pattern": "^[ -]*([0-9][ -]*){12,19}$",
        "description": "12-19 digits (spaces and dashes ignored), Luhn-checked (400 invalid_card_number otherwise); \
                        never stored"
    }
);
form!(
    /// A payment card's expiry.
    Expiry, inline, {
        "type": "string",
        "pattern": concat!("^[", space!(), "]*(0[1-9]|1[0-2])[", space!(), "]*/[", space!(), "]*([0-9]{2}|[0-9]{4})[",
            space!(), "]*$"),
        "description": "MM/YY or MM/YYYY; never stored"
    }
);
form!(
    /// A payment card's security code.
    Cvc, inline, { "type": "string", "pattern": "^[0-9]{3,4}$", "description": "never stored" }
);
form!(
    /// A line of text a person typed: a name, a contact.
    Line200, inline, {
        "type": "string",
        "maxLength": 200,
        "allOf": [
            { "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$" },
            { "pattern": concat!("[^", space!(), "]") }
        ],
        "description": "not blank, no control characters, at most 200 bytes of UTF-8"
    }
);
form!(
    /// What a member applies as.
    ApplicationKind, inline, { "type": "string", "enum": ["general", "store"] }
);

form!(
    /// A member's number.
    MemberId, named, { "type": "string", "pattern": "^[a-z0-9-]{1,32}$" }
);
form!(
    /// A payout's id.
    PayoutId, named, { "type": "string", "pattern": "^po_[0-9a-f]{32}$" }
);
form!(
    /// A key's id: its JWK thumbprint (RFC 7638).
    Kid, inline, {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$",
        "description": "the key's JWK thumbprint (base64url of 32 bytes)"
    }
);
form!(
    /// An application's or a letter's id, as an operator names it.
    RecordName, inline, { "type": "string", "pattern": "^.{1,200}$" }
);
form!(
    /// A bill's id, as its store wrote it.
    BillId, inline, { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" }
);
form!(
    /// A listing's cursor: the creation time and id of the last row seen.
    Cursor, inline, { "type": "string", "pattern": "^[0-9]{1,18}\\.stl_[0-9a-f]{32}$" }
);
form!(
    /// Where a store is told of completions.
    NotifyUrl, inline, { "type": "string", "pattern": "^https://", "maxLength": 512 }
);
form!(
    /// A store's public keys as registered.
    StoreJwks, inline, {
        "type": "object",
        "required": ["keys"],
        "properties": { "keys": { "type": "array", "maxItems": 64, "items": { "type": "object" } } }
    }
);
form!(
    /// A JWK Set as the center publishes it (RFC 7517).
    JwkSet, inline, {
        "type": "object",
        "required": ["keys"],
        "properties": { "keys": { "type": "array", "items": { "type": "object" } } }
    }
);
form!(
    /// The center's key members encrypt their registration to.
    X25519Jwk, named, {
        "type": "object",
        "required": ["kty", "crv", "x"],
        "properties": {
            "kty": { "const": "OKP" },
            "crv": { "const": "X25519" },
            "x": { "type": "string" },
            "kid": { "type": "string" },
            "use": { "const": "enc" }
        }
    }
);
form!(
    /// A reason an operator records: 1 to 500 characters, not blank.
    Reason500, inline, {
        "type": "string",
        "maxLength": 500,
        "pattern": concat!("[^", space!(), "]"),
        "description": "1 to 500 characters, not blank"
    }
);
form!(
    /// A flag that is only ever true.
    True, inline, { "const": true }
);
form!(
    /// The status a rejection leaves.
    RejectedStatus, inline, { "type": "string", "enum": ["rejected"] }
);
form!(
    /// How a prepaid card is funded.
    FundingMethod, named, { "type": "string", "enum": ["credit", "bank_transfer", "postal_transfer", "cash"] }
);
form!(
    /// Where a payout stands.
    PayoutStatus, inline, { "type": "string", "enum": ["in_transit", "settled", "failed"] }
);
form!(
    /// What a payout's line is of.
    PayoutLineKind, inline, {
        "type": "string",
        "enum": [
            "purchase",
            "prepaid_payment",
            "refund",
            "prepaid_refund",
            "refund_cancelled",
            "payout_returned",
            "opening_balance"
        ]
    }
);

form!(
    /// The liveness probe's answer.
    Alive, inline, { "const": "ok" }
);
form!(
    /// The readiness probe's answer.
    Ready, inline, { "const": "ready" }
);
form!(
    /// Metrics in the OpenMetrics text format.
    OpenMetrics, inline, { "type": "string" }
);
form!(
    /// An OpenAPI 3.1 document.
    Document, inline, { "type": "object" }
);

/// The ISO 4217 code of a supported currency.
#[derive(Debug)]
pub struct CurrencyCode;

impl JsonSchema for CurrencyCode {
    fn schema_name() -> Cow<'static, str> {
        "CurrencyCode".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let codes: Vec<&str> = Currency::codes().collect();
        json_schema!({ "type": "string", "enum": codes })
    }
}

/// An amount of at least one minor unit.
#[derive(Debug)]
pub struct PositiveMoney;

impl JsonSchema for PositiveMoney {
    fn schema_name() -> Cow<'static, str> {
        "PositiveMoney".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = Money::json_schema(generator);
        if let Some(minimum) = schema.pointer_mut("/properties/amount_minor/minimum") {
            *minimum = 1.into();
        }
        schema
    }
}

/// A purchase profile (PROTOCOL §5.1), by name.
#[derive(Debug)]
pub struct ProfileName;

impl JsonSchema for ProfileName {
    fn schema_name() -> Cow<'static, str> {
        "Profile".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = Profile::ALL.iter().map(|p| p.as_str()).collect();
        json_schema!({ "type": "string", "enum": names })
    }
}

/// An amount of a supported currency.
#[derive(Debug)]
pub struct Money;

impl JsonSchema for Money {
    fn schema_name() -> Cow<'static, str> {
        "Money".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let codes: Vec<&str> = Currency::codes().collect();
        json_schema!({
            "type": "object",
            "additionalProperties": false,
            "required": ["amount_minor", "currency"],
            "properties": {
                "amount_minor": { "type": "integer", "minimum": 0, "maximum": MAX_AMOUNT_MINOR },
                "currency": { "type": "string", "enum": codes, "description": "ISO 4217 code of a supported currency" }
            }
        })
    }
}

/// Which way a value update moves value.
#[derive(Debug)]
pub struct Direction;

impl JsonSchema for Direction {
    fn schema_name() -> Cow<'static, str> {
        "Direction".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "enum": ["credit", "debit"],
            "description": "credit: charge or refund; debit: decrease or correction"
        })
    }
}

/// Puts every named form into `generator`'s components, referred to or not
/// (a form is part of the contract a client may check its own values by).
pub fn name_every_form(generator: &mut SchemaGenerator) {
    generator.subschema_for::<Hex>();
    generator.subschema_for::<Jws>();
    generator.subschema_for::<Jwe>();
    generator.subschema_for::<CardId>();
    generator.subschema_for::<SettlementId>();
    generator.subschema_for::<UpdateId>();
    generator.subschema_for::<StatementId>();
    generator.subschema_for::<OwedId>();
    generator.subschema_for::<StoreId>();
    generator.subschema_for::<PrepaidId>();
    generator.subschema_for::<FundingId>();
    generator.subschema_for::<TokenId>();
    generator.subschema_for::<TokenSessionId>();
    generator.subschema_for::<Money>();
    generator.subschema_for::<MemberId>();
    generator.subschema_for::<PayoutId>();
}

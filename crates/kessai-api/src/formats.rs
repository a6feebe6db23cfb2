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
    generator.subschema_for::<Money>();
}

//! `GET /v1/openapi.json`. The routes, their bodies and their statuses are
//! described in `openapi.json` beside this file; the contract's
//! enumerations are not written there but generated here from
//! [`kessai_api`], the types every party is compiled against:
//!
//! - `Error`: the error shape, with every [`ErrorCode`] (name, number,
//!   status, type and meaning) in `x-error-codes` and its names as the
//!   `code` enum;
//! - `Phase`: every [`Phase`] a step answers;
//! - `Reason`: every [`Reason`] a voided settlement or value update carries.
//!
//! So a code, a phase or a reason added to the contract is in the document
//! with no second edit, and the document cannot list one the parties do not
//! know.

use std::sync::OnceLock;

use kessai_api::{ErrorCode, ErrorType, Phase, Reason};
use serde_json::{Map, Value, json};

/// The hand-described part: routes, bodies, statuses.
const ROUTES: &str = include_str!("openapi.json");

/// The document as served, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        build(ROUTES).unwrap_or_else(|why| {
            // The file is compiled in and checked by a test; this cannot
            // happen in a build that passed its tests.
            tracing::error!(%why, "the OpenAPI document could not be built");
            String::from("{}")
        })
    })
}

/// The document: `routes` with the generated schemas added.
pub fn build(routes: &str) -> Result<String, String> {
    let mut doc: Value = serde_json::from_str(routes).map_err(|e| format!("openapi.json: {e}"))?;
    let schemas = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
        .ok_or("openapi.json has no components.schemas")?;
    for (name, schema) in generated() {
        if schemas.insert(name.to_owned(), schema).is_some() {
            return Err(format!("openapi.json describes {name}, which is generated from kessai-api"));
        }
    }
    serde_json::to_string(&doc).map_err(|e| e.to_string())
}

/// The schemas generated from the contract's types.
pub fn generated() -> Vec<(&'static str, Value)> {
    vec![("Error", error_schema()), ("Phase", phase_schema()), ("Reason", reason_schema())]
}

fn error_schema() -> Value {
    let codes: Vec<Value> = ErrorCode::ALL
        .iter()
        .map(|c| {
            json!({
                "code": c.as_str(),
                "number": c.number(),
                "status": c.status(),
                "type": c.kind().as_str(),
                "description": c.description(),
            })
        })
        .collect();
    let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let types: Vec<&str> = ErrorType::ALL.iter().map(|t| t.as_str()).collect();
    let (low, high) = number_range();
    json!({
        "type": "object",
        "description": "Every refusal of every kessai party. `code` fixes the status and the type; \
                        x-error-codes lists each code with its number, status, type and meaning.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "code", "number", "message", "param"],
                "properties": {
                    "type": { "type": "string", "enum": types },
                    "code": { "type": "string", "enum": names },
                    "number": { "type": "integer", "minimum": low, "maximum": high },
                    "message": { "type": "string" },
                    "param": { "type": ["string", "null"] }
                }
            }
        },
        "x-error-codes": codes,
    })
}

fn number_range() -> (u16, u16) {
    let numbers = ErrorCode::ALL.iter().map(|c| c.number());
    (numbers.clone().min().unwrap_or(0), numbers.max().unwrap_or(0))
}

fn phase_schema() -> Value {
    let names: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
    json!({
        "type": "string",
        "description": "Where a settlement or a value update stands (PROTOCOL §5, §9).",
        "enum": names,
    })
}

fn reason_schema() -> Value {
    let mut names: Vec<&str> = Reason::LIFE.iter().map(|r| r.as_str()).collect();
    names.extend(ErrorCode::ALL.iter().map(|c| c.as_str()));
    let mut described = Map::new();
    for r in Reason::LIFE {
        described.insert(r.as_str().to_owned(), Value::String(r.description().to_owned()));
    }
    json!({
        "type": "string",
        "description": "Why a settlement or a value update ended voided: a step of its life, or the error code \
                        of the refusal that ended it.",
        "enum": names,
        "x-life-reasons": described,
    })
}

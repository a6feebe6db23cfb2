//! The center's API as an OpenAPI 3.1 document, generated from this crate:
//! the operations are the table in [`crate::routes`] (a test of the center
//! holds its router to the same table), and the schemas of their bodies
//! and replies are derived ([`schemars`]) from the types the center parses
//! and answers with. The error shape, the phases and the reasons are
//! generated from [`ErrorCode`], [`Phase`] and [`Reason`].
//!
//! So a route, a field, a code, a phase or a reason added to the contract is
//! in the document with no second edit, and the document cannot describe a
//! route the center does not serve or a field its types do not have.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::{ErrorCode, ErrorType, Phase, Reason};

/// An HTTP method the center serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// Where a parameter travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
    Header,
}

impl In {
    fn as_str(self) -> &'static str {
        match self {
            In::Path => "path",
            In::Query => "query",
            In::Header => "header",
        }
    }
}

/// How a caller proves it may use a route beyond the transport (every
/// admin route needs an operator's certificate, stated in the summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `Authorization: Bearer` with the access token the create answered.
    AccessToken,
    /// A client certificate in the name of the record's store or payee.
    StoreCertificate,
}

impl Security {
    fn name(self) -> &'static str {
        match self {
            Security::AccessToken => "accessToken",
            Security::StoreCertificate => "storeCertificate",
        }
    }
}

/// A schema in the document: the schema of a type of the contract, as
/// [`of`] (a reference to its component) or [`query`] (written out) gives
/// it.
pub type Shape = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T`: a reference to its component, which the document
/// then holds.
pub fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// The schema of query type `T`, written out (not referred to): each of
/// its properties is one parameter of the query string.
pub fn query<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    T::json_schema(generator)
}

/// One parameter of an operation.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    pub location: In,
    pub required: bool,
    pub description: Option<&'static str>,
    pub schema: Shape,
}

/// An operation's JSON request body.
#[derive(Debug)]
pub struct Body {
    pub required: bool,
    pub schema: Shape,
}

/// What an operation answers when it succeeds.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub description: &'static str,
    pub media: &'static str,
    pub schema: Shape,
}

/// One route of the center: everything the document says about it.
#[derive(Debug)]
pub struct Operation {
    pub method: Method,
    /// The path as the router matches it (`{name}` for a parameter).
    pub path: &'static str,
    pub summary: &'static str,
    pub description: Option<&'static str>,
    /// The same operation answered at another path too, for one more
    /// release: described there as deprecated.
    pub alias: Option<&'static str>,
    pub deprecated: bool,
    /// Alternatives: any one of them admits the caller.
    pub security: &'static [Security],
    /// Needs an `Idempotency-Key` header.
    pub idempotent: bool,
    pub params: &'static [Param],
    /// The query string: a type whose fields are its parameters ([`query`]).
    pub query: Option<Shape>,
    pub body: Option<Body>,
    pub reply: Reply,
    /// Every refusal status the route can answer, each with the error shape.
    pub refusals: &'static [u16],
}

impl Operation {
    /// The fields most operations leave as they are.
    pub const DEFAULT: Operation = Operation {
        method: Method::Get,
        path: "",
        summary: "",
        description: None,
        alias: None,
        deprecated: false,
        security: &[],
        idempotent: false,
        params: &[],
        query: None,
        body: None,
        reply: Reply { status: 200, description: "", media: JSON, schema: of::<()> },
        refusals: &[],
    };
}

/// The media type of every JSON body.
pub const JSON: &str = "application/json";

/// The `Idempotency-Key` header: what the center accepts.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,128}$";

/// The refusal statuses and the response component each is described by.
const REFUSALS: &[(u16, &str, &str)] = &[
    (
        400,
        "BadRequest",
        "malformed request: bad JSON, a field or id in the wrong format, a missing or bad Idempotency-Key",
    ),
    (401, "Unauthenticated", "no client certificate (admin API)"),
    (402, "PaymentRefused", "payment refused: insufficient balance, or the credit card declined"),
    (403, "Forbidden", "not allowed: not the admin's certificate, a card not active, a store not a member of the mall"),
    (404, "NotFound", "no such record (settlement, value update, card, statement, owed item, key)"),
    (409, "Conflict", "conflicts with the current state (out of order, in use, concurrent update); may be retried"),
    (413, "TooLarge", "request body larger than the limit"),
    (415, "UnsupportedMediaType", "request body without a JSON content type (admin API)"),
    (
        422,
        "Unprocessable",
        "well-formed but refused: a signed token that does not verify, an amount out of range, an Idempotency-Key \
         reused for another request",
    ),
    (429, "RateLimited", "too many requests from this client (Retry-After)"),
    (500, "Internal", "internal error (details in the log only)"),
    (
        503,
        "Unavailable",
        "the request took too long, or a service the center needs (authorizer, database) did not answer",
    ),
];

const INFO: &str = "Purchase protocol of kessai (see PROTOCOL.md §5, §7). Every POST outside /v1/admin needs an \
                    Idempotency-Key (1 to 128 printable ASCII characters, no spaces); the admin API (mutual TLS with \
                    the admin certificate) takes none. Every refusal is the error shape \
                    {\"error\":{\"type\",\"code\",\"number\",\"message\",\"param\"}}; on any route the standard layer \
                    may also answer 413 (body too large), 429 (rate limited, with Retry-After), 503 (request timeout) \
                    and 500 (internal error, details only in the log).";

/// The whole document.
pub fn document() -> Result<Value, String> {
    let settings = || {
        SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
    };
    // What a caller sends is read as serde deserializes it (a defaulted
    // field is optional); what the center answers as it serializes it.
    let mut reads = settings().for_deserialize().into_generator();
    let mut writes = settings().for_serialize().into_generator();

    let mut paths = Map::new();
    for op in crate::routes::OPERATIONS {
        let described = operation(op, &mut reads, &mut writes)?;
        let mut at = vec![(op.path, described.clone())];
        if let Some(alias) = op.alias {
            let mut old = described;
            let summary = format!("{} (the last release's path, answered for one more release)", op.summary);
            old["summary"] = summary.into();
            old["deprecated"] = true.into();
            at.push((alias, old));
        }
        for (path, described) in at {
            let entry = paths.entry(path).or_insert_with(|| json!({}));
            let item = entry.as_object_mut().ok_or("a path that is not an object")?;
            if item.insert(op.method.key().to_owned(), described).is_some() {
                return Err(format!("{} {path} is in the table twice", op.method.as_str()));
            }
        }
    }

    let mut schemas = Map::new();
    // Named whether or not a route's reply refers to them.
    for generator in [&mut reads, &mut writes] {
        generator.subschema_for::<crate::ErrorBody>();
        generator.subschema_for::<Phase>();
        generator.subschema_for::<Reason>();
        crate::formats::name_every_form(generator);
    }
    let derived = reads.take_definitions(true);
    for (name, schema) in writes.take_definitions(true) {
        if derived.get(&name).is_some_and(|read| *read != schema) {
            return Err(format!("{name} is read and written in two shapes: give each its own type"));
        }
        add(&mut schemas, &name, schema)?;
    }
    for (name, schema) in derived {
        if !schemas.contains_key(&name) {
            add(&mut schemas, &name, schema)?;
        }
    }

    let mut responses = Map::new();
    for &(status, name, description) in REFUSALS {
        let codes: Vec<&str> = ErrorCode::ALL.iter().filter(|c| c.status() == status).map(|c| c.as_str()).collect();
        let mut response = json!({
            "description": format!("{description}. Codes: {}.", codes.join(", ")),
            "content": { JSON: { "schema": { "$ref": "#/components/schemas/Error" } } },
        });
        if status == 429 {
            response["headers"] = json!({ "Retry-After": { "schema": { "type": "integer", "minimum": 1 } } });
        }
        responses.insert(name.to_owned(), response);
    }

    Ok(json!({
        "openapi": "3.1.0",
        "info": { "title": "kessai settlement center", "version": "1", "description": INFO },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "accessToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The access token of the settlement, value update or statement the path names, as \
                                    its create answered it (`access_token`). A request without it, or with another, is \
                                    answered 404 as for an id that does not exist."
                },
                "storeCertificate": {
                    "type": "mutualTLS",
                    "description": "A client certificate in the name of the settlement's store or payee (read routes \
                                    only)."
                }
            }
        }
    }))
}

fn add(schemas: &mut Map<String, Value>, name: &str, schema: Value) -> Result<(), String> {
    match schemas.insert(name.to_owned(), schema) {
        Some(_) => Err(format!("{name} is described twice (two types of one name)")),
        None => Ok(()),
    }
}

/// `schema` without the null an `Option` adds to it.
fn without_null(mut schema: Value) -> Value {
    let is_null = |v: &Value| v.get("type") == Some(&Value::from("null"));
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            schema["type"] = types[0].clone();
        }
        return schema;
    }
    let Some(Value::Array(alternatives)) = schema.get("anyOf") else { return schema };
    let kept: Vec<Value> = alternatives.iter().filter(|v| !is_null(v)).cloned().collect();
    match <[Value; 1]>::try_from(kept) {
        Ok([only]) => {
            let mut merged = only;
            if let (Some(m), Some(outer)) = (merged.as_object_mut(), schema.as_object()) {
                for (k, v) in outer.iter().filter(|(k, _)| k.as_str() != "anyOf") {
                    m.insert(k.clone(), v.clone());
                }
            }
            merged
        }
        Err(kept) => {
            schema["anyOf"] = kept.into();
            schema
        }
    }
}

fn shape(s: Shape, generator: &mut SchemaGenerator) -> Result<Value, String> {
    Ok(s(generator).to_value())
}

fn operation(op: &Operation, reads: &mut SchemaGenerator, writes: &mut SchemaGenerator) -> Result<Value, String> {
    let mut o = Map::new();
    o.insert("summary".into(), op.summary.into());
    if let Some(d) = op.description {
        o.insert("description".into(), d.into());
    }
    if op.deprecated {
        o.insert("deprecated".into(), true.into());
    }
    if !op.security.is_empty() {
        let alternatives: Vec<Value> = op.security.iter().map(|s| json!({ s.name(): [] })).collect();
        o.insert("security".into(), alternatives.into());
    }
    let mut params = Vec::new();
    for p in op.params {
        if p.location == In::Path && !op.path.contains(&format!("{{{}}}", p.name)) {
            return Err(format!("{} {}: no {{{}}} in the path", op.method.as_str(), op.path, p.name));
        }
        let mut param = json!({ "name": p.name, "in": p.location.as_str(), "schema": shape(p.schema, reads)? });
        if p.required || p.location == In::Path {
            param["required"] = true.into();
        }
        if let Some(d) = p.description {
            param["description"] = d.into();
        }
        params.push(param);
    }
    if let Some(q) = op.query {
        let schema = shape(q, reads)?;
        let required: Vec<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let properties = schema["properties"].as_object().ok_or("a query type without properties")?;
        for (name, property) in properties {
            // A parameter left out is the field's None: a query string has
            // no null.
            let mut property = without_null(property.clone());
            let description = property.as_object_mut().and_then(|p| p.remove("description"));
            let mut param = json!({ "name": name, "in": "query", "schema": property });
            if required.contains(&name.as_str()) {
                param["required"] = true.into();
            }
            if let Some(d) = description {
                param["description"] = d;
            }
            params.push(param);
        }
    }
    if op.idempotent {
        params.push(json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": true,
            "description": "1 to 128 printable ASCII characters without spaces; the same key again with the same \
                            request answers the stored response, with another request 422 idempotency_key_reused",
            "schema": { "type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN },
        }));
    }
    if !params.is_empty() {
        o.insert("parameters".into(), params.into());
    }
    if let Some(body) = &op.body {
        o.insert(
            "requestBody".into(),
            json!({ "required": body.required, "content": { JSON: { "schema": shape(body.schema, reads)? } } }),
        );
    }
    let mut responses = Map::new();
    responses.insert(
        op.reply.status.to_string(),
        json!({
            "description": op.reply.description,
            "content": { op.reply.media: { "schema": shape(op.reply.schema, writes)? } },
        }),
    );
    for status in op.refusals {
        let name = REFUSALS
            .iter()
            .find(|(s, _, _)| s == status)
            .map(|(_, name, _)| *name)
            .ok_or_else(|| format!("{} {}: no response described for {status}", op.method.as_str(), op.path))?;
        responses.insert(status.to_string(), json!({ "$ref": format!("#/components/responses/{name}") }));
    }
    o.insert("responses".into(), responses.into());
    Ok(o.into())
}

/// A schema from its JSON.
fn schema(value: Value) -> Schema {
    match value {
        Value::Object(map) => Schema::from(map),
        _ => Schema::default(),
    }
}

impl JsonSchema for crate::ErrorBody {
    fn schema_name() -> Cow<'static, str> {
        "Error".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schema(error_schema())
    }
}

impl JsonSchema for Phase {
    fn schema_name() -> Cow<'static, str> {
        "Phase".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schema(phase_schema())
    }
}

impl JsonSchema for Reason {
    fn schema_name() -> Cow<'static, str> {
        "Reason".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schema(reason_schema())
    }
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
    let numbers = ErrorCode::ALL.iter().map(|c| c.number());
    let (low, high) = (numbers.clone().min().unwrap_or(0), numbers.max().unwrap_or(0));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_builds_and_every_reference_resolves() {
        let doc = document().unwrap();
        if let Ok(path) = std::env::var("KESSAI_DUMP_OPENAPI") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 100, "{} references", refs.len());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r} is not local"));
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}

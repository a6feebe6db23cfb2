//! `GET /v1/openapi.json`: the document [`kessai_api::openapi`] generates
//! from the contract's route table and types, built once.

use std::sync::OnceLock;

/// The document as served.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        kessai_api::openapi::document()
            .and_then(|doc| serde_json::to_string(&doc).map_err(|e| e.to_string()))
            .unwrap_or_else(|why| {
                // Built from the compiled-in contract and checked by a test;
                // this cannot happen in a build that passed its tests.
                tracing::error!(%why, "the OpenAPI document could not be built");
                String::from("{}")
            })
    })
}

//! A member store's payouts in the mall's back office (#19): what the
//! center paid it, each payout's settlements, refunds and fees, as JSON
//! and as CSV for its bookkeeping. The mall asks the center over mutual
//! TLS with its own certificate (the center answers a mall for its member
//! stores only); the member proves itself to the mall as for its orders
//! (its certificate or its API token).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kessai_http::{ApiError, ErrorCode, PeerIdentity};
use serde_json::Value;

use crate::AppState;
use crate::api::require_member;
use crate::limits::MAX_PAYOUTS_ANSWER_BYTES;

/// A payout id as the center makes them: `po_` and 32 hex digits.
fn is_payout_id(id: &str) -> bool {
    id.strip_prefix("po_").is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn unavailable(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::CenterUnavailable,
        format!("the center's statement cannot be read now ({why}); retry later"),
    )
}

/// GETs `path` of the center's API as the mall: its JSON, or 404 as the
/// center answered, or 503.
async fn center(state: &AppState, path: &str) -> Result<Value, ApiError> {
    let url = format!("{}{path}", state.config.center.url);
    let (status, body) = state.center_api.get(&url).await.map_err(unavailable)?;
    if status == StatusCode::NOT_FOUND {
        return Err(ApiError::new(ErrorCode::UnknownPayout, "the center knows no such payout of this store"));
    }
    if !status.is_success() {
        return Err(unavailable(format!("it answered {status}")));
    }
    if body.len() > MAX_PAYOUTS_ANSWER_BYTES {
        return Err(unavailable("its answer is too large"));
    }
    serde_json::from_slice(&body).map_err(|e| unavailable(format!("its answer is not JSON: {e}")))
}

/// `GET /members/{member}/payouts`: the member's payouts, newest first;
/// a page for a browser (`Accept: text/html`), else the center's JSON.
pub async fn list(
    State(state): State<AppState>,
    Path(member): Path<String>,
    peer: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_member(&state, &member, peer.as_ref().map(|p| &p.0), &headers)?;
    let listing = center(&state, &format!("/v1/payouts?store={member}")).await?;
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.trim().starts_with("text/html")));
    if !wants_html {
        return Ok(axum::Json(listing).into_response());
    }
    let name = state.config.member(&member).map_or(member.clone(), |m| m.name.as_str().to_owned());
    let payouts = listing["payouts"].as_array().map(Vec::as_slice).unwrap_or_default();
    let page = crate::pages::layout(
        state.config.mall_name.as_str(),
        &format!("Payouts to {name}"),
        crate::pages::payouts(&member, payouts),
    );
    Ok(axum::response::Html(page.into_string()).into_response())
}

/// `GET /members/{member}/payouts/{id}`: one payout with its lines.
pub async fn show(
    State(state): State<AppState>,
    Path((member, id)): Path<(String, String)>,
    peer: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, ApiError> {
    require_member(&state, &member, peer.as_ref().map(|p| &p.0), &headers)?;
    Ok(axum::Json(statement(&state, &member, &id).await?))
}

/// The payout `id`, if it is `member`'s (the center would answer the mall
/// for any member store's: the store checks whose it is).
async fn statement(state: &AppState, member: &str, id: &str) -> Result<Value, ApiError> {
    if !is_payout_id(id) {
        return Err(ApiError::new(ErrorCode::UnknownPayout, "no such payout"));
    }
    let payout = center(state, &format!("/v1/payouts/{id}")).await?;
    if payout["store"].as_str() != Some(member) {
        return Err(ApiError::new(ErrorCode::UnknownPayout, "the center knows no such payout of this store"));
    }
    Ok(payout)
}

/// `GET /members/{member}/payouts.csv`: one row a payout.
pub async fn list_csv(
    State(state): State<AppState>,
    Path(member): Path<String>,
    peer: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_member(&state, &member, peer.as_ref().map(|p| &p.0), &headers)?;
    let listing = center(&state, &format!("/v1/payouts?store={member}")).await?;
    let columns = [
        "payout_id",
        "run",
        "currency",
        "gross_minor",
        "refunds_minor",
        "other_minor",
        "fees_minor",
        "amount_minor",
        "items",
        "status",
        "reason",
        "bank_reference",
        "created_at",
    ];
    let rows = listing["payouts"].as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(csv(&format!("payouts-{member}.csv"), &columns, rows.iter().map(|p| columns.map(|c| &p[c]).to_vec())))
}

/// `GET /members/{member}/payouts/{id}/csv`: one row a line of the payout.
pub async fn show_csv(
    State(state): State<AppState>,
    Path((member, id)): Path<(String, String)>,
    peer: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_member(&state, &member, peer.as_ref().map(|p| &p.0), &headers)?;
    let payout = statement(&state, &member, &id).await?;
    let columns = ["kind", "reference", "amount_minor", "fee_minor", "at"];
    let lines = payout["lines"].as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(csv(&format!("{id}.csv"), &columns, lines.iter().map(|l| columns.map(|c| &l[c]).to_vec())))
}

/// RFC 4180 text (CRLF, quoted where needed) as a download named `name`.
fn csv<'v>(name: &str, columns: &[&str], rows: impl Iterator<Item = Vec<&'v Value>>) -> Response {
    let mut out = columns.join(",");
    out.push_str("\r\n");
    for row in rows {
        let cells: Vec<String> = row.into_iter().map(cell).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    let mut response = (StatusCode::OK, out).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// One CSV cell: numbers as they are; text quoted when it holds a comma,
/// a quote or a line break, and a leading `=`, `+`, `-` or `@` defused
/// with `'` so a spreadsheet never reads it as a formula.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let s = if s.starts_with(['=', '+', '-', '@']) { format!("'{s}") } else { s.clone() };
            if s.contains([',', '"', '\r', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell(&Value::from(-500)), "-500");
        assert_eq!(cell(&Value::from("a,b")), "\"a,b\"");
        assert_eq!(cell(&Value::from("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(cell(&Value::from("=HYPERLINK(\"x\")")), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell(&Value::from("@SUM")), "'@SUM");
        assert_eq!(cell(&Value::Null), "");
        assert!(is_payout_id("po_0123456789abcdef0123456789abcdef"));
        assert!(!is_payout_id("po_../../v1/admin"));
    }
}

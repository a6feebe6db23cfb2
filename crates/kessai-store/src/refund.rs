//! Refunds: the mall asks the center, signed, to give back all or part of a
//! completed purchase (`POST /v1/refunds`). The center reverses the member
//! store's payable at once and credits the buyer's card the next time it is
//! presented; it refuses refunds that would sum past the purchase.
//!
//! The refund id is the store's: the request is sent under an
//! Idempotency-Key derived from it, so a retry (or the same refund sent
//! twice) is answered with the same refund and never pays twice.

use anyhow::{Context, bail};
use kessai_core::Money;
use kessai_core::ids::{RefundId, SettlementId};
use kessai_core::messages::DisplayText;
use kessai_core::random::OsRandom;
use kessai_core::time::{Clock as _, SystemClock};
use kessai_http::HttpsClient;

use crate::config::StoreConfig;
use crate::limits::JWKS_FETCH_TIMEOUT_MS;

/// What the operator asks.
#[derive(Debug, Clone)]
pub struct RefundOrder {
    pub refund_id: RefundId,
    pub settlement_id: SettlementId,
    pub amount: Money,
    pub reason: DisplayText,
}

/// Signs the refund with the mall's key and sends it to the center.
/// Returns the center's answer (the refund as it stands), or its error.
pub async fn request_refund(config: &StoreConfig, order: RefundOrder) -> anyhow::Result<serde_json::Value> {
    config.check()?;
    let key = crate::signing_key(config)?;
    let merchant = kessai_merchant::Merchant::new(config.mall_id.clone(), key, config.center.party_id.clone());
    let token = merchant
        .sign_refund(
            order.refund_id.clone(),
            order.settlement_id.clone(),
            order.amount,
            order.reason,
            &mut OsRandom,
            &SystemClock,
        )
        .context("signing the refund")?;
    let client = center_client(config, JWKS_FETCH_TIMEOUT_MS)?;
    let idempotency = format!("refund-{}-{}", config.mall_id, order.refund_id);
    let answer = send_signed(config, &client, "/v1/refunds", "refund", &token, &idempotency).await?;
    // What the center says is refunded of the settlement in all, kept for
    // the mall's payment claims (`crate::claim`). The refund stands at the
    // center whatever happens here: a failure is only told.
    if let Some(total) = answer["refunded_minor"].as_i64() {
        let kept = async {
            let db = crate::open_db(config).await?;
            let now = i64::try_from(SystemClock.now().unix_s())?;
            db.record_refunded(order.settlement_id.as_str(), total, now).await?;
            db.close().await;
            anyhow::Ok(())
        };
        if let Err(e) = kept.await {
            tracing::warn!(error = %e, settlement = %order.settlement_id, "the refund is made; recording it for claims failed");
            eprintln!("warning: the refund is made, but recording it for payment claims failed: {e:#}");
        }
    }
    Ok(answer)
}

/// A client of the center's API as the mall (its client certificate).
pub(crate) fn center_client(config: &StoreConfig, timeout_ms: u64) -> anyhow::Result<HttpsClient> {
    let identity = config.tls.client_name.as_deref();
    let ca_dir = kessai_tls::CaDir::new(config.resolve(&config.tls.ca_dir));
    let tls = kessai_tls::client_config(&config.trust_anchor(), identity.map(|name| (&ca_dir, name)))
        .context("TLS client configuration for the center")?;
    Ok(HttpsClient::new(tls, timeout_ms))
}

/// POSTs `{field: token}` to the center's `path` under `idempotency`: its
/// JSON answer, or its refusal as an error.
pub(crate) async fn send_signed(
    config: &StoreConfig,
    client: &HttpsClient,
    path: &str,
    field: &str,
    token: &str,
    idempotency: &str,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}{path}", config.center.url);
    let (status, body) = client
        .post_json(&url, &serde_json::json!({ field: token }), &[("idempotency-key", idempotency)])
        .await
        .with_context(|| format!("sending the {field} to {url}"))?;
    let answer: serde_json::Value = serde_json::from_slice(&body).context("the center's answer is not JSON")?;
    if !status.is_success() {
        let code = answer["error"]["code"].as_str().unwrap_or("unknown");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        bail!("the center refused the {field} ({status}, {code}): {message}");
    }
    Ok(answer)
}

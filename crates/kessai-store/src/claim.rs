//! Payment claims (代金請求, #19; seed 003/004 FIG. 9): the mall claims,
//! signed, what the center owes one of its member stores for the orders
//! paid up to a cut-off (`POST /v1/claims`). The center checks every
//! settlement against its books and answers a statement signed with its
//! key, which is verified here against the center's published keys; or it
//! refuses the whole claim, naming the settlements that differ (one
//! refunded since, say: `--amount` claims it at what is left).
//!
//! The claim id is the mall's: the request is sent under an
//! Idempotency-Key derived from it, and the center answers the same claim
//! id with the same statement, so nothing is claimed twice.

use anyhow::{Context, bail};
use kessai_core::ids::{ClaimId, SettlementId, StoreId};
use kessai_core::keys::{KeyDirectory, Validity};
use kessai_core::messages::claim::{self, ClaimLine, ClaimStatement};
use kessai_core::random::OsRandom;
use kessai_core::time::{SystemClock, Timestamp};
use kessai_core::{Currency, Money};

use crate::config::StoreConfig;
use crate::db::Db;
use crate::limits::{CENTER_API_TIMEOUT_MS, MAX_ORDERS_LISTED};

/// What the operator asks.
#[derive(Debug, Clone)]
pub struct ClaimOrder {
    pub claim_id: ClaimId,
    /// The member store whose orders are claimed.
    pub member: StoreId,
    pub cutoff: Timestamp,
    /// Settlements claimed at another amount than their order's total
    /// (what is left after a refund).
    pub amounts: Vec<(SettlementId, Money)>,
    /// Settlements left out of the claim.
    pub exclude: Vec<SettlementId>,
}

/// The lines of a claim: every paid order of `member` up to `cutoff`, at
/// its total less what the center has refunded of it (as the mall's
/// refunds recorded), unless `amounts` says otherwise, less `exclude` and
/// anything refunded whole.
pub async fn claim_lines(db: &Db, order: &ClaimOrder) -> anyhow::Result<Vec<ClaimLine>> {
    let rows = db.orders_of_member(order.member.as_str(), MAX_ORDERS_LISTED).await.context("reading the orders")?;
    let mut lines = Vec::new();
    for o in rows.iter().filter(|o| o.paid && o.paid_at.is_some_and(|at| at <= order.cutoff.unix_s() as i64)) {
        let Some(settlement) = o.settlement_id.as_deref() else { continue };
        let settlement_id = SettlementId::parse(settlement).context("a stored settlement id")?;
        if order.exclude.contains(&settlement_id) {
            continue;
        }
        let amount = match order.amounts.iter().find(|(s, _)| *s == settlement_id) {
            Some((_, amount)) => *amount,
            None => {
                let left = o.total_minor - db.refunded(settlement).await.context("reading the refunds")?;
                if left <= 0 {
                    continue;
                }
                Money::new(u64::try_from(left)?, Currency::parse(&o.currency)?)?
            }
        };
        lines.push(ClaimLine { settlement_id, amount });
    }
    if lines.is_empty() {
        bail!("{} has no paid orders up to the cut-off to claim", order.member);
    }
    Ok(lines)
}

/// Signs the claim with the mall's key, sends it to the center and
/// verifies the statement it answers with the center's keys.
pub async fn send_claim(config: &StoreConfig, db: &Db, order: ClaimOrder) -> anyhow::Result<ClaimStatement> {
    config.check()?;
    if config.member(order.member.as_str()).is_none() {
        bail!("{} is not a member store of this mall", order.member);
    }
    let lines = claim_lines(db, &order).await?;
    let key = crate::signing_key(config)?;
    let merchant = kessai_merchant::Merchant::new(config.mall_id.clone(), key, config.center.party_id.clone());
    let token = merchant
        .sign_claim(order.claim_id.clone(), order.member.clone(), order.cutoff, lines, &mut OsRandom, &SystemClock)
        .context("signing the claim")?;
    let client = crate::refund::center_client(config, CENTER_API_TIMEOUT_MS)?;
    let idempotency = format!("claim-{}-{}", config.mall_id, order.claim_id);
    let answer = crate::refund::send_signed(config, &client, "/v1/claims", "claim", &token, &idempotency).await?;
    let statement = answer["statement"].as_str().context("the center's answer has no statement")?;
    let jwks_url = format!("{}/.well-known/jwks.json", config.center.url);
    let (status, jwks) = client.get(&jwks_url).await.with_context(|| format!("fetching {jwks_url}"))?;
    if !status.is_success() {
        bail!("the center's keys: {jwks_url} answered {status}");
    }
    let mut keys = KeyDirectory::new();
    for k in kessai_core::jwk::parse_jwks(&jwks).context("the center's keys")? {
        let public = kessai_core::keys::PublicKey::from_bytes(&k.public).context("a center key")?;
        keys.insert(
            config.center.party_id.clone(),
            public,
            Validity { not_before: k.not_before, not_after: k.not_after },
        )
        .context("the center's keys")?;
    }
    let verified = claim::verify_statement(statement, &keys, &SystemClock).context("the center's statement")?;
    let s = verified.message().clone();
    if s.claim_id() != &order.claim_id || s.payee() != &order.member {
        bail!("the center's statement is not of this claim");
    }
    Ok(s)
}

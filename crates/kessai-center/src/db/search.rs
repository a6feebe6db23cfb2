//! The console's search over what the center recorded (#22 item 2):
//! charges, refunds, prepaid payments, fundings, payouts and audit
//! differences, by card, member, store, UTC time, amount and state.
//!
//! Every listing is newest first by (time, id), both fixed when the row is
//! written, and pages by the last row's place (keyset): a row written
//! while an operator pages is never skipped nor shown twice; it appears
//! where its place is. Amounts some tables keep only in a record are
//! filtered here, after the read: a page may then stop short, after
//! [`SCAN_MAX`] rows read, with the place to go on from.

use kessai_api::views::OwedReply;
use kessai_core::Money;

use super::*;
use crate::prepaid::PrepaidPayment;

/// The most rows one search page reads.
pub const SCAN_MAX: usize = 2_000;

/// What a search lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    /// Purchases with IC cards, in every phase.
    Settlements,
    /// Value updates: charges from credit cards, value given back,
    /// corrections and refunds applied, moves from prepaid cards.
    Charges,
    /// Refunds of IC card purchases (owed to the card until it is
    /// presented).
    Refunds,
    /// Refunds of prepaid payments (credited at once).
    PrepaidRefunds,
    /// Payments from virtual prepaid cards.
    PrepaidPayments,
    /// Prepaid fundings: credit, transfers, cash.
    Fundings,
    Payouts,
    /// Differences the examination of card logs found.
    Differences,
}

/// The columns every kind's query answers, and its table.
struct Shape {
    /// `id, at, card, member, store, amount, currency, state, what, record`.
    select: &'static str,
    from: &'static str,
    id: &'static str,
    at: &'static str,
    card: &'static str,
    member: &'static str,
    store: &'static str,
    state: &'static str,
}

const NONE: &str = "CAST(NULL AS TEXT)";

impl SearchKind {
    pub const ALL: [SearchKind; 8] = [
        SearchKind::Settlements,
        SearchKind::Charges,
        SearchKind::Refunds,
        SearchKind::PrepaidRefunds,
        SearchKind::PrepaidPayments,
        SearchKind::Fundings,
        SearchKind::Payouts,
        SearchKind::Differences,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SearchKind::Settlements => "settlements",
            SearchKind::Charges => "charges",
            SearchKind::Refunds => "refunds",
            SearchKind::PrepaidRefunds => "prepaid-refunds",
            SearchKind::PrepaidPayments => "prepaid-payments",
            SearchKind::Fundings => "fundings",
            SearchKind::Payouts => "payouts",
            SearchKind::Differences => "differences",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            SearchKind::Settlements => "Settlements (IC card purchases)",
            SearchKind::Charges => "Charges and value updates",
            SearchKind::Refunds => "IC card refunds",
            SearchKind::PrepaidRefunds => "Prepaid refunds",
            SearchKind::PrepaidPayments => "Prepaid payments",
            SearchKind::Fundings => "Prepaid fundings",
            SearchKind::Payouts => "Payouts",
            SearchKind::Differences => "Audit differences",
        }
    }

    pub fn parse(text: &str) -> Option<SearchKind> {
        SearchKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Which filters mean something for this kind: (card, member, store,
    /// amount).
    pub fn filters(self) -> (bool, bool, bool, bool) {
        match self {
            SearchKind::Charges | SearchKind::Refunds => (true, true, self == SearchKind::Refunds, true),
            SearchKind::Settlements | SearchKind::PrepaidRefunds | SearchKind::PrepaidPayments => {
                (true, true, true, true)
            }
            SearchKind::Fundings => (true, true, false, true),
            SearchKind::Payouts => (false, false, true, true),
            SearchKind::Differences => (true, true, false, false),
        }
    }

    fn shape(self) -> Shape {
        match self {
            SearchKind::Settlements => Shape {
                select: "s.id AS id, s.created_at AS at, s.card_id AS card, c.member AS member, s.store AS store,
                    CAST(NULL AS BIGINT) AS amount, CAST(NULL AS TEXT) AS currency, s.phase AS state,
                    s.bill_id AS what, s.record AS record",
                from: "center_settlements s LEFT JOIN center_cards c ON c.id = s.card_id",
                id: "s.id",
                at: "s.created_at",
                card: "s.card_id",
                member: "c.member",
                store: "s.store",
                state: "s.phase",
            },
            SearchKind::Charges => Shape {
                select: "u.id AS id, u.created_at AS at, u.card_id AS card, c.member AS member,
                    CAST(NULL AS TEXT) AS store, u.amount_minor AS amount, c.currency AS currency, u.phase AS state,
                    u.purpose AS what, CAST(NULL AS TEXT) AS record",
                from: "center_value_updates u LEFT JOIN center_cards c ON c.id = u.card_id",
                id: "u.id",
                at: "u.created_at",
                card: "u.card_id",
                member: "c.member",
                store: NONE,
                state: "u.phase",
            },
            SearchKind::Refunds => Shape {
                select: "o.id AS id, o.created_at AS at, o.card_id AS card, c.member AS member, o.store AS store,
                    CAST(NULL AS BIGINT) AS amount, c.currency AS currency, o.status AS state, o.reference AS what,
                    o.record AS record",
                // Owed items a store made: refunds (corrections and
                // replacements have no store).
                from: "(SELECT * FROM center_owed WHERE store IS NOT NULL) o LEFT JOIN center_cards c ON c.id = o.card_id",
                id: "o.id",
                at: "o.created_at",
                card: "o.card_id",
                member: "c.member",
                store: "o.store",
                state: "o.status",
            },
            SearchKind::PrepaidRefunds => Shape {
                select: "r.id AS id, r.created_at AS at, p.account AS card, p.member AS member, p.store AS store,
                    CAST(NULL AS BIGINT) AS amount, CAST(NULL AS TEXT) AS currency, 'applied' AS state,
                    r.payment_id AS what, r.record AS record",
                from: "center_prepaid_refunds r JOIN center_prepaid_payments p ON p.id = r.payment_id",
                id: "r.id",
                at: "r.created_at",
                card: "p.account",
                member: "p.member",
                store: "p.store",
                state: "'applied'",
            },
            SearchKind::PrepaidPayments => Shape {
                select: "id, created_at AS at, account AS card, member, store, CAST(NULL AS BIGINT) AS amount,
                    CAST(NULL AS TEXT) AS currency,
                    CASE WHEN refunded_minor > 0 THEN 'refunded' ELSE 'paid' END AS state, bill_id AS what,
                    record",
                from: "center_prepaid_payments",
                id: "id",
                at: "created_at",
                card: "account",
                member: "member",
                store: "store",
                state: "CASE WHEN refunded_minor > 0 THEN 'refunded' ELSE 'paid' END",
            },
            SearchKind::Fundings => Shape {
                select: "id, created_at AS at, account AS card, member, CAST(NULL AS TEXT) AS store,
                    amount_minor AS amount, currency, status AS state, method AS what,
                    CAST(NULL AS TEXT) AS record",
                from: "center_fundings",
                id: "id",
                at: "created_at",
                card: "account",
                member: "member",
                store: NONE,
                state: "status",
            },
            SearchKind::Payouts => Shape {
                select: "id, created_at AS at, CAST(NULL AS TEXT) AS card, CAST(NULL AS TEXT) AS member, store,
                    amount_minor AS amount, currency, status AS state, COALESCE(reason, run_id) AS what,
                    CAST(NULL AS TEXT) AS record",
                from: "center_payouts",
                id: "id",
                at: "created_at",
                card: NONE,
                member: NONE,
                store: "store",
                state: "status",
            },
            SearchKind::Differences => Shape {
                select: "d.id AS id, d.found_at AS at, d.card_id AS card, c.member AS member,
                    CAST(NULL AS TEXT) AS store, CAST(NULL AS BIGINT) AS amount, CAST(NULL AS TEXT) AS currency,
                    d.status AS state, d.kind AS what, CAST(NULL AS TEXT) AS record",
                from: "center_audit_differences d LEFT JOIN center_cards c ON c.id = d.card_id",
                id: "d.id",
                at: "d.found_at",
                card: "d.card_id",
                member: "c.member",
                store: NONE,
                state: "d.status",
            },
        }
    }

    fn sql(self) -> String {
        let s = self.shape();
        format!(
            "SELECT {select} FROM {from}
             WHERE ($1 = '' OR {card} = $1) AND ($2 = '' OR {member} = $2) AND ($3 = '' OR {store} = $3)
               AND ($4 = '' OR {state} = $4) AND {at} >= $5 AND {at} < $6
               AND ({at} < $7 OR ({at} = $7 AND {id} < $8))
             ORDER BY {at} DESC, {id} DESC LIMIT $9",
            select = s.select,
            from = s.from,
            card = s.card,
            member = s.member,
            store = s.store,
            state = s.state,
            at = s.at,
            id = s.id,
        )
    }
}

/// What to look for. Empty text and `None` mean "any".
#[derive(Debug, Clone)]
pub struct Search {
    pub kind: SearchKind,
    pub card: String,
    pub member: String,
    pub store: String,
    pub state: String,
    /// At or after (unix s).
    pub from: Option<i64>,
    /// Before (unix s).
    pub to: Option<i64>,
    /// At least, at most (minor units of `currency`).
    pub min_minor: Option<i64>,
    pub max_minor: Option<i64>,
    /// Only rows in this currency (with an amount bound: the bound's).
    pub currency: Option<Currency>,
    /// After this row of the listing's order.
    pub after: Option<ListCursor>,
    pub limit: usize,
}

/// One row found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub at: Timestamp,
    pub card: Option<String>,
    pub member: Option<String>,
    pub store: Option<String>,
    pub amount: Option<Money>,
    pub state: String,
    /// The kind's detail: a purpose, a reference, a method, a reason.
    pub what: String,
}

/// One page of a search.
#[derive(Debug, Clone)]
pub struct FoundPage {
    pub rows: Vec<Found>,
    /// Where the next page starts, if there may be more.
    pub next: Option<ListCursor>,
    /// How many rows were read to fill this page.
    pub scanned: usize,
}

fn found(kind: SearchKind, r: &sqlx::any::AnyRow) -> Result<Found, DbError> {
    let currency = r.text("currency")?.map(|c| Currency::parse(&c)).transpose().map_err(corrupt)?;
    let amount = match (kind, r.text("record")?) {
        (SearchKind::Settlements, Some(record)) => {
            Some(serde_json::from_str::<Settlement>(&record).map_err(corrupt)?.bill.amount)
        }
        (SearchKind::Refunds, Some(record)) => Some(serde_json::from_str::<OwedBody>(&record).map_err(corrupt)?.amount),
        (SearchKind::PrepaidRefunds, Some(record)) => {
            Some(serde_json::from_str::<OwedReply>(&record).map_err(corrupt)?.amount)
        }
        (SearchKind::PrepaidPayments, Some(record)) => {
            Some(serde_json::from_str::<PrepaidPayment>(&record).map_err(corrupt)?.bill.amount)
        }
        _ => match (r.int("amount")?, currency) {
            (Some(minor), Some(c)) => Some(Money::new(to_u64(minor)?, c).map_err(corrupt)?),
            _ => None,
        },
    };
    Ok(Found {
        id: r.required_text("id")?,
        at: Timestamp::from_unix_s(to_u64(r.required_int("at")?)?),
        card: r.text("card")?,
        member: r.text("member")?,
        store: r.text("store")?,
        amount,
        state: r.required_text("state")?,
        what: r.text("what")?.unwrap_or_default(),
    })
}

impl CenterDb {
    /// One page of `q`, newest first (see the module doc).
    pub async fn search(&self, q: &Search) -> Result<FoundPage, DbError> {
        let limit = q.limit.clamp(1, 200);
        // One row more than a page, to know whether another page follows.
        let batch = if q.min_minor.is_some() || q.max_minor.is_some() { 200 } else { limit + 1 };
        let sql = q.kind.sql();
        let mut place = q.after.clone();
        // The place of the page's last row, once the page is full.
        let mut full_at: Option<ListCursor> = None;
        let mut rows = Vec::new();
        let mut scanned = 0;
        let mut conn = self.read().await?;
        loop {
            let (at, id) = place.as_ref().map_or((i64::MAX, String::new()), |c| (c.created_at, c.id.clone()));
            let read = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(q.card.clone())
                .bind(q.member.clone())
                .bind(q.store.clone())
                .bind(q.state.clone())
                .bind(q.from.unwrap_or(0))
                .bind(q.to.unwrap_or(i64::MAX))
                .bind(at)
                .bind(id)
                .bind(i64::try_from(batch).unwrap_or(200))
                .fetch_all(&mut *conn)
                .await?;
            let exhausted = read.len() < batch;
            for r in &read {
                scanned += 1;
                place = Some(ListCursor { created_at: r.required_int("at")?, id: r.required_text("id")? });
                let f = found(q.kind, r)?;
                let in_currency = q.currency.is_none_or(|c| f.amount.is_some_and(|m| m.currency() == c));
                let minor =
                    f.amount.filter(|_| in_currency).map(|m| i64::try_from(m.amount_minor()).unwrap_or(i64::MAX));
                let wanted = match minor {
                    Some(m) => q.min_minor.is_none_or(|min| m >= min) && q.max_minor.is_none_or(|max| m <= max),
                    None => in_currency && q.min_minor.is_none() && q.max_minor.is_none(),
                };
                if wanted {
                    if full_at.is_some() {
                        // A row beyond the page: there is a next page.
                        return Ok(FoundPage { rows, next: full_at, scanned });
                    }
                    rows.push(f);
                    if rows.len() == limit {
                        full_at = place.clone();
                    }
                }
            }
            if exhausted {
                return Ok(FoundPage { rows, next: None, scanned });
            }
            if scanned >= SCAN_MAX {
                // Stopped reading: go on from the page's end, or from the
                // last row read if the page is not full.
                return Ok(FoundPage { rows, next: full_at.or(place), scanned });
            }
        }
    }
}

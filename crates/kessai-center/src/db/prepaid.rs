//! Virtual prepaid cards (#18): the cards, their fundings, the bank credits
//! read from statements, and the payments made from them (with their
//! delivery to stores, as for settlements).

use kessai_core::Money;
use kessai_core::ids::{FundingId, PrepaidId};
use kessai_core::messages::prepaid::FundingMethod;

use super::*;
use crate::prepaid::{FundingStatus, PrepaidPayment};

/// A virtual prepaid card as the center keeps it. Its value is its ledger
/// account's, never a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepaidCardRow {
    pub id: PrepaidId,
    pub member: String,
    pub currency: Currency,
    /// `active` or `closed`.
    pub status: String,
    /// After this, the card's value pays nothing (it can still be refunded).
    pub value_expires_at: Option<Timestamp>,
    /// Payments made from it: the last one's sequence number.
    pub payments: u64,
    pub created_at: Timestamp,
}

/// A funding: value asked for by a member's prepaid request, issued once
/// its money is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingRow {
    pub id: FundingId,
    pub member: String,
    pub request_id: String,
    pub account: PrepaidId,
    pub method: FundingMethod,
    pub amount: Money,
    pub status: FundingStatus,
    /// The payment reference (ISO 11649) a transfer or an envelope quotes.
    pub reference: Option<String>,
    /// The credit authorizer's reference (credit).
    pub authorization: Option<String>,
    /// What was received, once issued (a transfer applied from suspense may
    /// differ from `amount`).
    pub received_minor: Option<u64>,
    /// The operators who counted cash (one, or two above the limit).
    pub operators: Vec<String>,
    pub reason: Option<String>,
    /// A transfer or cash not received by then is not awaited any more.
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A credit read from a bank or postal statement, kept once per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankCreditRow {
    /// The bank's entry, unique across statements.
    pub entry_key: String,
    pub statement: String,
    /// `bank` or `postal`.
    pub source: String,
    pub booked_on: String,
    pub amount: Money,
    pub reference: Option<String>,
    pub remitter: Option<String>,
    /// `matched` (issued to its funding), `suspense` (waits for an
    /// operator), `applied` (an operator applied it to a funding),
    /// `returned` (an operator sent it back), `review` (a reversal: no
    /// money moved, an operator looks at it).
    pub status: String,
    pub funding_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: Timestamp,
}

/// How storing a prepaid payment went.
#[derive(Debug)]
pub enum PaymentStored {
    Inserted,
    /// The bill was paid from a prepaid card before: that payment.
    Existing(Box<PrepaidPayment>),
}

/// How a bank credit was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditTaken {
    Recorded,
    /// This entry was imported before: nothing changed.
    AlreadyImported,
}

fn at(s: i64) -> Result<Timestamp, DbError> {
    Ok(Timestamp::from_unix_s(to_u64(s)?))
}

fn card_row_of(r: &dyn Columns) -> Result<PrepaidCardRow, DbError> {
    Ok(PrepaidCardRow {
        id: PrepaidId::parse(&r.required_text("id")?).map_err(corrupt)?,
        member: r.required_text("member")?,
        currency: Currency::from_str(&r.required_text("currency")?).map_err(corrupt)?,
        status: r.required_text("status")?,
        value_expires_at: r.int("value_expires_at")?.map(at).transpose()?,
        payments: to_u64(r.required_int("payments")?)?,
        created_at: at(r.required_int("created_at")?)?,
    })
}

fn funding_row_of(r: &dyn Columns) -> Result<FundingRow, DbError> {
    let currency = Currency::from_str(&r.required_text("currency")?).map_err(corrupt)?;
    let method = r.required_text("method")?;
    let status = r.required_text("status")?;
    let operators: Vec<String> = serde_json::from_str(&r.required_text("operators")?).map_err(corrupt)?;
    Ok(FundingRow {
        id: FundingId::parse(&r.required_text("id")?).map_err(corrupt)?,
        member: r.required_text("member")?,
        request_id: r.required_text("request_id")?,
        account: PrepaidId::parse(&r.required_text("account")?).map_err(corrupt)?,
        method: FundingMethod::parse(&method).ok_or_else(|| corrupt(format!("funding method {method:?}")))?,
        amount: Money::new(to_u64(r.required_int("amount_minor")?)?, currency).map_err(corrupt)?,
        status: FundingStatus::parse(&status).ok_or_else(|| corrupt(format!("funding status {status:?}")))?,
        reference: r.text("reference")?,
        authorization: r.text("authorization_ref")?,
        received_minor: r.int("received_minor")?.map(to_u64).transpose()?,
        operators,
        reason: r.text("reason")?,
        expires_at: r.int("expires_at")?.map(at).transpose()?,
        created_at: at(r.required_int("created_at")?)?,
        updated_at: at(r.required_int("updated_at")?)?,
    })
}

fn credit_row_of(r: &dyn Columns) -> Result<BankCreditRow, DbError> {
    let currency = Currency::from_str(&r.required_text("currency")?).map_err(corrupt)?;
    Ok(BankCreditRow {
        entry_key: r.required_text("entry_key")?,
        statement: r.required_text("statement")?,
        source: r.required_text("source")?,
        booked_on: r.required_text("booked_on")?,
        amount: Money::new(to_u64(r.required_int("amount_minor")?)?, currency).map_err(corrupt)?,
        reference: r.text("reference")?,
        remitter: r.text("remitter")?,
        status: r.required_text("status")?,
        funding_id: r.text("funding_id")?,
        reason: r.text("reason")?,
        created_at: at(r.required_int("created_at")?)?,
    })
}

fn payment_row(r: &dyn Columns) -> Result<(PrepaidPayment, i64), DbError> {
    let p: PrepaidPayment = serde_json::from_str(&r.required_text("record")?).map_err(corrupt)?;
    Ok((p, r.required_int("version")?))
}

fn payment_only(r: &dyn Columns) -> Result<PrepaidPayment, DbError> {
    payment_row(r).map(|(p, _)| p)
}

fn insert_card(c: &PrepaidCardRow, now: Timestamp) -> Result<Stmt, DbError> {
    Ok(Stmt::new(
        "INSERT INTO center_prepaid_cards (id, member, currency, status, value_expires_at, payments, created_at,
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(c.id.as_str().to_owned())
    .bind(c.member.clone())
    .bind(c.currency.code().to_owned())
    .bind(c.status.clone())
    .bind(c.value_expires_at.map(|t| to_i64(t.unix_s())).transpose()?)
    .bind(to_i64(c.payments)?)
    .bind(to_i64(c.created_at.unix_s())?)
    .bind(to_i64(now.unix_s())?))
}

fn insert_funding(f: &FundingRow) -> Result<Stmt, DbError> {
    Ok(Stmt::new(
        "INSERT INTO center_fundings (id, member, request_id, account, method, amount_minor, currency, status,
         reference, authorization_ref, received_minor, operators, reason, expires_at, created_at, updated_at,
         issued_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
         CASE WHEN $8 IN ('issued', 'captured') THEN $16 END)",
    )
    .bind(f.id.as_str().to_owned())
    .bind(f.member.clone())
    .bind(f.request_id.clone())
    .bind(f.account.as_str().to_owned())
    .bind(f.method.as_str().to_owned())
    .bind(to_i64(f.amount.amount_minor())?)
    .bind(f.amount.currency().code().to_owned())
    .bind(f.status.as_str().to_owned())
    .bind(f.reference.clone())
    .bind(f.authorization.clone())
    .bind(f.received_minor.map(to_i64).transpose()?)
    .bind(serde_json::to_string(&f.operators).map_err(corrupt)?)
    .bind(f.reason.clone())
    .bind(f.expires_at.map(|t| to_i64(t.unix_s())).transpose()?)
    .bind(to_i64(f.created_at.unix_s())?)
    .bind(to_i64(f.updated_at.unix_s())?))
}

/// Moves a funding from `from` to what `f` holds, if it is still at `from`.
fn update_funding(f: &FundingRow, from: FundingStatus) -> Result<Stmt, DbError> {
    Ok(Stmt::new(
        "UPDATE center_fundings SET status = $1, authorization_ref = $2, received_minor = $3, operators = $4,
         reason = $5, updated_at = $6,
         issued_at = CASE WHEN issued_at IS NULL AND $1 IN ('issued', 'captured') THEN $6 ELSE issued_at END
         WHERE id = $7 AND status = $8",
    )
    .bind(f.status.as_str().to_owned())
    .bind(f.authorization.clone())
    .bind(f.received_minor.map(to_i64).transpose()?)
    .bind(serde_json::to_string(&f.operators).map_err(corrupt)?)
    .bind(f.reason.clone())
    .bind(to_i64(f.updated_at.unix_s())?)
    .bind(f.id.as_str().to_owned())
    .bind(from.as_str().to_owned()))
}

fn insert_credit(c: &BankCreditRow, now: Timestamp) -> Result<Stmt, DbError> {
    Ok(Stmt::new(
        "INSERT INTO center_bank_credits (entry_key, statement, source, booked_on, amount_minor, currency, reference,
         remitter, status, funding_id, reason, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
    )
    .bind(c.entry_key.clone())
    .bind(c.statement.clone())
    .bind(c.source.clone())
    .bind(c.booked_on.clone())
    .bind(to_i64(c.amount.amount_minor())?)
    .bind(c.amount.currency().code().to_owned())
    .bind(c.reference.clone())
    .bind(c.remitter.clone())
    .bind(c.status.clone())
    .bind(c.funding_id.clone())
    .bind(c.reason.clone())
    .bind(to_i64(now.unix_s())?))
}

/// Whether a card settlement of bill (`store`, `bill_id`) may have taken
/// money: its DEBIT was sealed. One settling it before that is refused at
/// its offer (`BillGuard`).
const CARD_PAID_SQL: &str = "SELECT id FROM center_settlements WHERE store = $1 AND bill_id = $2
     AND phase NOT IN ('authenticating', 'reading_balance', 'voided')";
const PREPAID_PAID_SQL: &str = "SELECT id FROM center_prepaid_payments WHERE store = $1 AND bill_id = $2";

/// On PostgreSQL, the lock that makes a card's hold and a prepaid payment
/// of one bill take turns (each then sees the other's commit): a
/// transaction-scoped advisory lock keyed by the bill. SQLite's one writer
/// runs writes one at a time already.
pub(crate) fn bill_lock_key(store: &StoreId, bill_id: &str) -> i64 {
    let digest = kessai_core::digest::Sha256Digest::of(format!("kessai-bill\0{store}\0{bill_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_bytes()[..8]);
    i64::from_be_bytes(bytes)
}

/// A write's check that no prepaid payment paid bill (`store`, `bill_id`):
/// made by a card's offer (the hold) in its own transaction.
#[derive(Debug, Clone)]
pub(crate) struct BillGuard {
    pub store: StoreId,
    pub bill_id: String,
}

impl BillGuard {
    pub(crate) async fn check(self, conn: &mut Exec<'_>) -> Result<(), DbError> {
        if conn.is_postgres() {
            let lock = Stmt::new("SELECT pg_advisory_xact_lock($1) IS NULL AS locked")
                .bind(bill_lock_key(&self.store, &self.bill_id));
            conn.fetch_optional(lock, |_| Ok(())).await?;
        }
        let paid = Stmt::new(PREPAID_PAID_SQL).bind(self.store.as_str().to_owned()).bind(self.bill_id);
        match conn.fetch_optional(paid, |r| r.required_text("id")).await? {
            Some(_) => Err(DbError::BillPaid),
            None => Ok(()),
        }
    }
}

impl CenterDb {
    /// Opens a prepaid card with its first funding, the books' `entries`
    /// (its account; the funding's value if issued at once) and the
    /// request's answer, in one transaction. A funding for the same member
    /// and request id already stored: that one, and nothing written.
    pub async fn open_prepaid(
        &self,
        card: &PrepaidCardRow,
        funding: &FundingRow,
        entries: Entries,
        now: Timestamp,
    ) -> Result<Option<FundingRow>, DbError> {
        self.insert_funding_with(Some(insert_card(card, now)?), funding, entries, now).await
    }

    /// Stores a funding of an existing card, as [`CenterDb::open_prepaid`].
    pub async fn fund_prepaid(
        &self,
        funding: &FundingRow,
        entries: Entries,
        now: Timestamp,
    ) -> Result<Option<FundingRow>, DbError> {
        self.insert_funding_with(None, funding, entries, now).await
    }

    async fn insert_funding_with(
        &self,
        card: Option<Stmt>,
        funding: &FundingRow,
        entries: Entries,
        now: Timestamp,
    ) -> Result<Option<FundingRow>, DbError> {
        let existing = Stmt::new(FUNDING_BY_REQUEST_SQL).bind(funding.member.clone()).bind(funding.request_id.clone());
        let insert = insert_funding(funding)?;
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                if let Some(found) = conn.fetch_optional(existing, funding_row_of).await? {
                    return Ok(Some(found));
                }
                conn.books(&entries, now_s).await?;
                if let Some(card) = card {
                    conn.execute(card).await?;
                }
                conn.execute(insert).await?;
                Ok(None)
            })
        })
        .await
    }

    pub async fn prepaid_card(&self, id: &PrepaidId) -> Result<Option<PrepaidCardRow>, DbError> {
        self.read_one(PREPAID_CARD_SQL, &[id.as_str()], card_row_of).await
    }

    /// A member's prepaid cards, oldest first.
    pub async fn prepaid_cards_of(&self, member: &str) -> Result<Vec<PrepaidCardRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, member, currency, status, value_expires_at, payments, created_at FROM center_prepaid_cards
             WHERE member = $1 ORDER BY created_at, id LIMIT $2",
        )
        .bind(member.to_owned())
        .bind(MAX_LIST)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| card_row_of(r)).collect()
    }

    pub async fn funding(&self, id: &str) -> Result<Option<FundingRow>, DbError> {
        self.read_one(FUNDING_SQL, &[id], funding_row_of).await
    }

    pub async fn funding_by_request(&self, member: &str, request_id: &str) -> Result<Option<FundingRow>, DbError> {
        self.read_one(FUNDING_BY_REQUEST_SQL, &[member, request_id], funding_row_of).await
    }

    /// The funding awaiting the money that quotes `reference`, if any.
    pub async fn funding_by_reference(&self, reference: &str) -> Result<Option<FundingRow>, DbError> {
        self.read_one(FUNDING_BY_REFERENCE_SQL, &[reference], funding_row_of).await
    }

    /// Fundings of a card (or of every card of a member when `card` is
    /// `None`), newest first.
    pub async fn fundings_of(&self, member: &str, card: Option<&PrepaidId>) -> Result<Vec<FundingRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, member, request_id, account, method, amount_minor, currency, status, reference,
             authorization_ref, received_minor, operators, reason, expires_at, created_at, updated_at
             FROM center_fundings WHERE member = $1 AND ($2 = '' OR account = $2)
             ORDER BY created_at DESC, id LIMIT $3",
        )
        .bind(member.to_owned())
        .bind(card.map(|c| c.as_str().to_owned()).unwrap_or_default())
        .bind(MAX_LIST)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| funding_row_of(r)).collect()
    }

    /// Fundings in `status`, oldest first (the operator's queues).
    pub async fn fundings_in(&self, status: FundingStatus, limit: i64) -> Result<Vec<FundingRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, member, request_id, account, method, amount_minor, currency, status, reference,
             authorization_ref, received_minor, operators, reason, expires_at, created_at, updated_at
             FROM center_fundings WHERE status = $1 ORDER BY created_at, id LIMIT $2",
        )
        .bind(status.as_str().to_owned())
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| funding_row_of(r)).collect()
    }

    /// Moves a funding from `from` to `f`'s status with the books'
    /// `entries`, in one transaction; false if it was no longer at `from`
    /// (another operator, instance or sweep moved it first: nothing
    /// written).
    pub async fn change_funding(
        &self,
        f: &FundingRow,
        from: FundingStatus,
        entries: Entries,
        now: Timestamp,
        trail: Option<TrailEntry>,
    ) -> Result<bool, DbError> {
        let check = Stmt::new("SELECT status FROM center_fundings WHERE id = $1").bind(f.id.as_str().to_owned());
        let update = update_funding(f, from)?;
        let (from, now_s) = (from.as_str(), now.unix_s());
        self.write(move |mut conn| {
            Box::pin(async move {
                // Read first, so that a lost race writes nothing (SQLite's
                // group commit) before the books.
                if conn.fetch_optional(check, |r| r.required_text("status")).await?.as_deref() != Some(from) {
                    return Ok(false);
                }
                conn.books(&entries, now_s).await?;
                if conn.execute(update).await? != 1 {
                    return Err(DbError::Conflict);
                }
                if let Some(trail) = &trail {
                    append_trail(&mut conn, trail, now).await?;
                }
                Ok(true)
            })
        })
        .await
    }

    /// Ends every funding still awaiting its money at `now` past its
    /// expiry: nothing was issued for it and nothing is. Returns how many.
    pub async fn expire_fundings(&self, now: Timestamp) -> Result<u64, DbError> {
        let expire = Stmt::new(
            "UPDATE center_fundings SET status = 'expired', reason = 'the money did not arrive in time',
             updated_at = $1 WHERE status IN ('awaiting', 'counted') AND expires_at IS NOT NULL AND expires_at < $1",
        )
        .bind(to_i64(now.unix_s())?);
        self.execute(expire).await
    }

    /// Records a bank credit with the books' `entries` and, if it matched,
    /// the funding or deposit token it issues (moved from `awaiting`), in
    /// one transaction.
    /// An entry imported before changes nothing.
    pub async fn take_bank_credit(
        &self,
        credit: &BankCreditRow,
        issues: Option<super::CreditIssues<'_>>,
        entries: Entries,
        now: Timestamp,
        trail: Option<TrailEntry>,
    ) -> Result<CreditTaken, DbError> {
        let seen =
            Stmt::new("SELECT entry_key FROM center_bank_credits WHERE entry_key = $1").bind(credit.entry_key.clone());
        let insert = insert_credit(credit, now)?;
        let issue = issues
            .map(|i| match i {
                super::CreditIssues::Funding(f) => update_funding(f, FundingStatus::Awaiting),
                super::CreditIssues::Token(t) => super::tokens::issue_token(t),
            })
            .transpose()?;
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.fetch_optional(seen, |r| r.required_text("entry_key")).await?.is_some() {
                    return Ok(CreditTaken::AlreadyImported);
                }
                conn.books(&entries, now_s).await?;
                conn.execute(insert).await?;
                if let Some(issue) = issue
                    && conn.execute(issue).await? != 1
                {
                    // Expired or issued meanwhile: the whole write goes, and
                    // the import tries this entry again.
                    return Err(DbError::Conflict);
                }
                if let Some(trail) = &trail {
                    append_trail(&mut conn, trail, now).await?;
                }
                Ok(CreditTaken::Recorded)
            })
        })
        .await
    }

    /// Bank credits in `status`, oldest first (the operator's queue).
    pub async fn bank_credits_in(&self, status: &str, limit: i64) -> Result<Vec<BankCreditRow>, DbError> {
        let rows = sqlx::query(
            "SELECT entry_key, statement, source, booked_on, amount_minor, currency, reference, remitter, status,
             funding_id, reason, created_at FROM center_bank_credits WHERE status = $1
             ORDER BY created_at, entry_key LIMIT $2",
        )
        .bind(status.to_owned())
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| credit_row_of(r)).collect()
    }

    pub async fn bank_credit(&self, entry_key: &str) -> Result<Option<BankCreditRow>, DbError> {
        self.read_one(CREDIT_SQL, &[entry_key], credit_row_of).await
    }

    /// An operator applies a credit held in suspense to a funding awaiting
    /// money: the credit `applied`, the funding issued (`f`), the books'
    /// `entries`, in one transaction; false if either moved meanwhile.
    pub async fn apply_suspense(
        &self,
        entry_key: &str,
        f: &FundingRow,
        entries: Entries,
        now: Timestamp,
        trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let check = Stmt::new(
            "SELECT c.status AS credit, f.status AS funding FROM center_bank_credits c, center_fundings f
             WHERE c.entry_key = $1 AND f.id = $2",
        )
        .bind(entry_key.to_owned())
        .bind(f.id.as_str().to_owned());
        let credit = Stmt::new(
            "UPDATE center_bank_credits SET status = 'applied', funding_id = $1, updated_at = $2
             WHERE entry_key = $3 AND status = 'suspense'",
        )
        .bind(f.id.as_str().to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(entry_key.to_owned());
        let funding = update_funding(f, FundingStatus::Awaiting)?;
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                let states = conn
                    .fetch_optional(check, |r| Ok((r.required_text("credit")?, r.required_text("funding")?)))
                    .await?;
                if states.as_ref().map(|(c, f)| (c.as_str(), f.as_str())) != Some(("suspense", "awaiting")) {
                    return Ok(false);
                }
                conn.books(&entries, now_s).await?;
                if conn.execute(credit).await? != 1 || conn.execute(funding).await? != 1 {
                    return Err(DbError::Conflict);
                }
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Marks a credit in suspense returned to its sender, with the books'
    /// `entries` and the operator's trail row, in one transaction; `false`
    /// (nothing written) if it is no longer in suspense.
    pub async fn return_suspense(
        &self,
        entry_key: &str,
        reason: &str,
        entries: Entries,
        now: Timestamp,
        trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let credit = Stmt::new(
            "UPDATE center_bank_credits SET status = 'returned', reason = $1, updated_at = $2
             WHERE entry_key = $3 AND status = 'suspense'",
        )
        .bind(reason.to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(entry_key.to_owned());
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(credit).await? != 1 {
                    return Ok(false);
                }
                conn.books(&entries, now_s).await?;
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Stores a payment from a prepaid card: unless a card settlement of
    /// the same bill may have taken money (`DbError::BillPaid`) or this bill
    /// was paid from a prepaid card before (that payment is returned), in
    /// one transaction: the books' `entries` (refused beyond the card's
    /// value), the card's payment count moved from `sequence - 1` to
    /// `sequence` (a concurrent payment from the same card: `Conflict`, run
    /// again), the payment, and the request's answer.
    pub async fn insert_prepaid_payment(
        &self,
        p: &PrepaidPayment,
        entries: Entries,
        response: Option<SavedResponse>,
        now: Timestamp,
    ) -> Result<PaymentStored, DbError> {
        let (store, bill_id) = (p.bill.store.clone(), p.bill.bill_id.as_str().to_owned());
        let lock =
            Stmt::new("SELECT pg_advisory_xact_lock($1) IS NULL AS locked").bind(bill_lock_key(&store, &bill_id));
        let card_paid = Stmt::new(CARD_PAID_SQL).bind(store.as_str().to_owned()).bind(bill_id.clone());
        let existing =
            Stmt::new("SELECT record, version FROM center_prepaid_payments WHERE store = $1 AND bill_id = $2")
                .bind(store.as_str().to_owned())
                .bind(bill_id.clone());
        let previous = to_i64(u64::from(p.sequence).saturating_sub(1))?;
        let count = Stmt::new("SELECT payments, status FROM center_prepaid_cards WHERE id = $1")
            .bind(p.account.as_str().to_owned());
        let counted = Stmt::new(
            "UPDATE center_prepaid_cards SET payments = $1, updated_at = $2
             WHERE id = $3 AND payments = $4 AND status = 'active'",
        )
        .bind(i64::from(p.sequence))
        .bind(to_i64(now.unix_s())?)
        .bind(p.account.as_str().to_owned())
        .bind(previous);
        let insert = Stmt::new(
            "INSERT INTO center_prepaid_payments (id, account, member, store, bill_id, record, version, delivered,
             delivery_due, delivery_attempts, refunded_minor, created_at) VALUES ($1, $2, $3, $4, $5, $6, 1, 0, $7, 0, 0, $8)",
        )
        .bind(p.id.as_str().to_owned())
        .bind(p.account.as_str().to_owned())
        .bind(p.member.clone())
        .bind(store.as_str().to_owned())
        .bind(bill_id)
        .bind(serde_json::to_string(p).map_err(corrupt)?)
        // The instance that stored it delivers it at once; the others'
        // sweeps take it only once this lease is over.
        .bind(to_i64(now.unix_s().saturating_add(crate::limits::DELIVERY_LEASE_S))?)
        .bind(to_i64(now.unix_s())?);
        let (save, stored) = idempotency::saving(response, now)?;
        let now_s = now.unix_s();
        let result = self
            .write(move |mut conn| {
                Box::pin(async move {
                    if conn.is_postgres() {
                        conn.fetch_optional(lock, |_| Ok(())).await?;
                    }
                    if let Some(found) = conn.fetch_optional(existing, payment_only).await? {
                        return Ok(PaymentStored::Existing(Box::new(found)));
                    }
                    if conn.fetch_optional(card_paid, |r| r.required_text("id")).await?.is_some() {
                        return Err(DbError::BillPaid);
                    }
                    let now_count = conn
                        .fetch_optional(count, |r| Ok((r.required_int("payments")?, r.required_text("status")?)))
                        .await?;
                    if now_count != Some((previous, "active".to_owned())) {
                        return Err(DbError::Conflict);
                    }
                    conn.books(&entries, now_s).await?;
                    if conn.execute(counted).await? != 1 {
                        return Err(DbError::Conflict);
                    }
                    conn.execute(insert).await?;
                    if let Some(save) = save {
                        conn.execute(save).await?;
                    }
                    Ok(PaymentStored::Inserted)
                })
            })
            .await?;
        if matches!(result, PaymentStored::Inserted) {
            stored.iter().for_each(Stored::mark);
        }
        Ok(result)
    }

    /// The payment from a prepaid card of bill (`store`, `bill_id`), if any.
    pub async fn prepaid_payment_of_bill(
        &self,
        store: &StoreId,
        bill_id: &str,
    ) -> Result<Option<PrepaidPayment>, DbError> {
        self.read_one(PAYMENT_OF_BILL_SQL, &[store.as_str(), bill_id], payment_only).await
    }

    pub async fn prepaid_payment(&self, id: &SettlementId) -> Result<Option<(PrepaidPayment, i64)>, DbError> {
        self.read_one(PAYMENT_SQL, &[id.as_str()], payment_row).await
    }

    /// Payments from a member's cards (or one card), newest first.
    pub async fn prepaid_payments_of(
        &self,
        member: &str,
        card: Option<&PrepaidId>,
    ) -> Result<Vec<PrepaidPayment>, DbError> {
        let rows = sqlx::query(
            "SELECT record, version FROM center_prepaid_payments WHERE member = $1 AND ($2 = '' OR account = $2)
             ORDER BY created_at DESC, id LIMIT $3",
        )
        .bind(member.to_owned())
        .bind(card.map(|c| c.as_str().to_owned()).unwrap_or_default())
        .bind(MAX_LIST)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| payment_only(r)).collect()
    }

    /// A store's refund of a prepaid payment, as stored (`record`), if any.
    pub async fn prepaid_refund(&self, id: &str) -> Result<Option<String>, DbError> {
        self.read_one("SELECT record FROM center_prepaid_refunds WHERE id = $1", &[id], |r| r.required_text("record"))
            .await
    }

    /// Stores a store's refund of prepaid payment `payment` (`record`,
    /// under `id`) with the books' `entries` (store payable → the prepaid
    /// card), reserving its amount against the payment in the same
    /// transaction, so refunds never sum past the payment. `Ok(Err(refunded
    /// so far))` if this one would; `Ok(Ok(false))` if this refund was
    /// stored before (nothing written).
    pub async fn insert_prepaid_refund(
        &self,
        refund: PrepaidRefundRow,
        entries: Entries,
        now: Timestamp,
    ) -> Result<Result<bool, u64>, DbError> {
        let PrepaidRefundRow { id, payment, amount_minor, purchase_minor, record } = refund;
        let (id, payment) = (id.as_str(), &payment);
        let seen = Stmt::new("SELECT id FROM center_prepaid_refunds WHERE id = $1").bind(id.to_owned());
        let refunded = Stmt::new("SELECT refunded_minor FROM center_prepaid_payments WHERE id = $1")
            .bind(payment.as_str().to_owned());
        let reserve = Stmt::new(
            "UPDATE center_prepaid_payments SET refunded_minor = refunded_minor + $1
             WHERE id = $2 AND refunded_minor + $1 <= $3",
        )
        .bind(to_i64(amount_minor)?)
        .bind(payment.as_str().to_owned())
        .bind(to_i64(purchase_minor)?);
        let insert = Stmt::new(
            "INSERT INTO center_prepaid_refunds (id, payment_id, record, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_owned())
        .bind(payment.as_str().to_owned())
        .bind(record)
        .bind(to_i64(now.unix_s())?);
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.fetch_optional(seen, |r| r.required_text("id")).await?.is_some() {
                    return Ok(Ok(false));
                }
                let so_far = conn.fetch_one(refunded, |r| to_u64(r.required_int("refunded_minor")?)).await?;
                if so_far.saturating_add(amount_minor) > purchase_minor {
                    return Ok(Err(so_far));
                }
                conn.books(&entries, now_s).await?;
                if conn.execute(reserve).await? != 1 {
                    return Err(DbError::Conflict);
                }
                conn.execute(insert).await?;
                Ok(Ok(true))
            })
        })
        .await
    }

    /// What is refunded of prepaid payment `id` so far.
    pub async fn prepaid_refunded(&self, id: &SettlementId) -> Result<u64, DbError> {
        let found = self
            .read_one("SELECT refunded_minor FROM center_prepaid_payments WHERE id = $1", &[id.as_str()], |r| {
                to_u64(r.required_int("refunded_minor")?)
            })
            .await?;
        Ok(found.unwrap_or(0))
    }

    /// Stores the store's receipt of a prepaid payment (its delivery ends).
    pub async fn prepaid_payment_receipted(&self, p: &PrepaidPayment, version: i64) -> Result<(), DbError> {
        let update = Stmt::new(
            "UPDATE center_prepaid_payments SET record = $1, version = version + 1, delivered = 1
             WHERE id = $2 AND version = $3",
        )
        .bind(serde_json::to_string(p).map_err(corrupt)?)
        .bind(p.id.as_str().to_owned())
        .bind(version);
        match self.execute(update).await? {
            1 => Ok(()),
            _ => Err(DbError::Conflict),
        }
    }

    /// Undelivered prepaid payments due for an attempt at `now`.
    pub async fn due_prepaid_deliveries(&self, now: Timestamp, limit: i64) -> Result<Vec<DuePrepaid>, DbError> {
        let rows = sqlx::query(
            "SELECT id, record, version, delivery_due, delivery_attempts FROM center_prepaid_payments
             WHERE delivered = 0 AND delivery_due <= $1 ORDER BY delivery_due, id LIMIT $2",
        )
        .bind(to_i64(now.unix_s())?)
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for r in &rows {
            match payment_row(r) {
                Ok((payment, _)) => due.push(DuePrepaid {
                    payment,
                    due: r.required_int("delivery_due")?,
                    attempts: to_u64(r.required_int("delivery_attempts")?)?,
                }),
                Err(e) => {
                    let id = r.required_text("id")?;
                    tracing::error!(payment = %id, error = %e, "undelivered prepaid payment cannot be read");
                }
            }
        }
        Ok(due)
    }

    /// Takes a due prepaid delivery until `until` (as
    /// [`CenterDb::claim_delivery`]).
    pub async fn claim_prepaid_delivery(&self, d: &DuePrepaid, until: Timestamp) -> Result<bool, DbError> {
        let claim = Stmt::new(
            "UPDATE center_prepaid_payments SET delivery_due = $1 WHERE id = $2 AND delivered = 0 AND delivery_due = $3",
        )
        .bind(to_i64(until.unix_s())?)
        .bind(d.payment.id.as_str().to_owned())
        .bind(d.due);
        Ok(self.execute(claim).await? == 1)
    }

    /// A failed attempt: due again at `next`.
    pub async fn prepaid_delivery_failed(&self, id: &SettlementId, next: Timestamp) -> Result<(), DbError> {
        let failed = Stmt::new(
            "UPDATE center_prepaid_payments SET delivery_due = $1, delivery_attempts = delivery_attempts + 1
             WHERE id = $2 AND delivered = 0",
        )
        .bind(to_i64(next.unix_s())?)
        .bind(id.as_str().to_owned());
        self.execute(failed).await?;
        Ok(())
    }
}

/// A store's refund of a prepaid payment, to store.
#[derive(Debug, Clone)]
pub struct PrepaidRefundRow {
    /// The refund's owed-item id (store, refund id).
    pub id: String,
    pub payment: SettlementId,
    pub amount_minor: u64,
    /// The payment's amount: refunds never sum past it.
    pub purchase_minor: u64,
    /// The refund as answered to the store (JSON).
    pub record: String,
}

/// An undelivered prepaid payment due for an attempt, as read.
#[derive(Debug, Clone)]
pub struct DuePrepaid {
    pub payment: PrepaidPayment,
    pub due: i64,
    pub attempts: u64,
}

const PREPAID_CARD_SQL: &str = "SELECT id, member, currency, status, value_expires_at, payments, created_at
     FROM center_prepaid_cards WHERE id = $1";
const FUNDING_SQL: &str = "SELECT id, member, request_id, account, method, amount_minor, currency, status, reference,
     authorization_ref, received_minor, operators, reason, expires_at, created_at, updated_at FROM center_fundings
     WHERE id = $1";
const FUNDING_BY_REQUEST_SQL: &str = "SELECT id, member, request_id, account, method, amount_minor, currency, status,
     reference, authorization_ref, received_minor, operators, reason, expires_at, created_at, updated_at
     FROM center_fundings WHERE member = $1 AND request_id = $2";
const FUNDING_BY_REFERENCE_SQL: &str = "SELECT id, member, request_id, account, method, amount_minor, currency,
     status, reference, authorization_ref, received_minor, operators, reason, expires_at, created_at, updated_at
     FROM center_fundings WHERE reference = $1";
const CREDIT_SQL: &str = "SELECT entry_key, statement, source, booked_on, amount_minor, currency, reference, remitter,
     status, funding_id, reason, created_at FROM center_bank_credits WHERE entry_key = $1";
const PAYMENT_OF_BILL_SQL: &str =
    "SELECT record, version FROM center_prepaid_payments WHERE store = $1 AND bill_id = $2";
const PAYMENT_SQL: &str = "SELECT record, version FROM center_prepaid_payments WHERE id = $1";

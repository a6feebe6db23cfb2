//! Bank deposit tokens (#21): each token from its request to its
//! redemption, the sessions that store and redeem tokens on cards, and the
//! credit service provider's register of tokens it honoured.

use kessai_api::TokenStatus;
use kessai_core::Money;
use kessai_core::ids::TransactionId;
use kessai_core::token::TokenId;

use super::*;
use crate::audit::BookEntry;
use crate::statement::LogKind;
use crate::token_session::TokenSession;

/// A deposit token as the center keeps it, from its request on. Its value
/// is in the books (tokens outstanding) once issued, never a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: TokenId,
    pub member: String,
    pub request_id: String,
    pub card_id: CardId,
    pub amount: Money,
    pub status: TokenStatus,
    /// What the deposit must quote (ISO 11649), unique.
    pub reference: String,
    pub refund_account: String,
    /// The refund account's holder as the member gave it, if it did.
    pub refund_holder: Option<String>,
    pub card_ref: String,
    /// The deposit is awaited until then.
    pub awaiting_until: Timestamp,
    /// The transaction id of the token's STORE TOKEN, fixed when the
    /// request is made: every session sends the same one.
    pub store_tx: TransactionId,
    /// The transaction id of its REDEEM TOKEN, fixed likewise.
    pub redeem_tx: TransactionId,
    /// The pool account's entry that paid it, once issued.
    pub entry_key: Option<String>,
    pub deposited_on: Option<String>,
    pub key_version: Option<u8>,
    pub expires_at: Option<Timestamp>,
    /// The sealed token, once issued.
    pub sealed: Option<Vec<u8>>,
    /// The card's counter at its STORE TOKEN, once stored.
    pub stored_counter: Option<u32>,
    /// The card's counter at its REDEEM TOKEN, once redeemed.
    pub redeemed_counter: Option<u32>,
    /// The time the first REDEEM TOKEN sealed for it carried: every later
    /// one carries the same (the command that left the center before the
    /// token's expiry is still that command after it).
    pub redeem_sent_at: Option<Timestamp>,
    /// Where an operator said to pay it back (a payee account as bank
    /// files carry it), when not its refund account.
    pub payback_account: Option<String>,
    /// The settlement the cardholder chose it to pay, if any (the last
    /// one: a choice holds only while its settlement waits).
    pub chosen_by: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a pool account credit issues, in the credit's transaction.
#[derive(Debug, Clone, Copy)]
pub enum CreditIssues<'a> {
    /// A funding of a virtual prepaid card, moved from `awaiting`.
    Funding(&'a FundingRow),
    /// A deposit token, moved from `awaiting` with its sealed bytes.
    Token(&'a TokenRow),
}

/// `SELECT` of every column of `center_tokens` where `$filter`.
macro_rules! select_tokens {
    ($filter:literal) => {
        concat!(
            "SELECT id, member, request_id, card_id, amount_minor, currency, status, reference, refund_account,
             card_ref, awaiting_until, store_tx, redeem_tx, entry_key, deposited_on, key_version, expires_at,
             sealed, stored_counter, redeemed_counter, redeem_sent_at, payback_account, chosen_by, refund_holder, created_at, updated_at
             FROM center_tokens WHERE ",
            $filter
        )
    };
}

fn at(s: i64) -> Result<Timestamp, DbError> {
    Ok(Timestamp::from_unix_s(to_u64(s)?))
}

fn token_row_of(r: &dyn Columns) -> Result<TokenRow, DbError> {
    let currency = Currency::from_str(&r.required_text("currency")?).map_err(corrupt)?;
    let status = r.required_text("status")?;
    let tx = |column: &str| -> Result<TransactionId, DbError> {
        let bytes = hex::decode(r.required_text(column)?).map_err(corrupt)?;
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| corrupt(format!("{column} of 16 bytes")))?;
        Ok(TransactionId::from_bytes(bytes))
    };
    let counter = |column: &str| -> Result<Option<u32>, DbError> {
        r.int(column)?.map(|c| u32::try_from(c).map_err(corrupt)).transpose()
    };
    Ok(TokenRow {
        id: TokenId::parse(&r.required_text("id")?).map_err(corrupt)?,
        member: r.required_text("member")?,
        request_id: r.required_text("request_id")?,
        card_id: CardId::parse(&r.required_text("card_id")?).map_err(corrupt)?,
        amount: Money::new(to_u64(r.required_int("amount_minor")?)?, currency).map_err(corrupt)?,
        status: TokenStatus::parse(&status).ok_or_else(|| corrupt(format!("token status {status:?}")))?,
        reference: r.required_text("reference")?,
        refund_account: r.required_text("refund_account")?,
        refund_holder: r.text("refund_holder")?,
        card_ref: r.required_text("card_ref")?,
        awaiting_until: at(r.required_int("awaiting_until")?)?,
        store_tx: tx("store_tx")?,
        redeem_tx: tx("redeem_tx")?,
        entry_key: r.text("entry_key")?,
        deposited_on: r.text("deposited_on")?,
        key_version: r.int("key_version")?.map(|v| u8::try_from(v).map_err(corrupt)).transpose()?,
        expires_at: r.int("expires_at")?.map(at).transpose()?,
        sealed: r.text("sealed")?.map(|h| hex::decode(h).map_err(corrupt)).transpose()?,
        stored_counter: counter("stored_counter")?,
        redeemed_counter: counter("redeemed_counter")?,
        redeem_sent_at: r.int("redeem_sent_at")?.map(at).transpose()?,
        payback_account: r.text("payback_account")?,
        chosen_by: r.text("chosen_by")?,
        created_at: at(r.required_int("created_at")?)?,
        updated_at: at(r.required_int("updated_at")?)?,
    })
}

fn insert_token_stmt(t: &TokenRow) -> Result<Stmt, DbError> {
    Ok(Stmt::new(
        "INSERT INTO center_tokens (id, member, request_id, card_id, amount_minor, currency, status, reference,
         refund_account, card_ref, awaiting_until, store_tx, redeem_tx, created_at, updated_at, refund_holder)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(t.id.to_string())
    .bind(t.member.clone())
    .bind(t.request_id.clone())
    .bind(t.card_id.to_string())
    .bind(to_i64(t.amount.amount_minor())?)
    .bind(t.amount.currency().code().to_owned())
    .bind(t.status.as_str().to_owned())
    .bind(t.reference.clone())
    .bind(t.refund_account.clone())
    .bind(t.card_ref.clone())
    .bind(to_i64(t.awaiting_until.unix_s())?)
    .bind(hex::encode(t.store_tx.as_bytes()))
    .bind(hex::encode(t.redeem_tx.as_bytes()))
    .bind(to_i64(t.created_at.unix_s())?)
    .bind(to_i64(t.updated_at.unix_s())?)
    .bind(t.refund_holder.clone()))
}

/// Moves an awaiting token to `issued` with what issuing made of it, if it
/// is still awaiting.
pub(super) fn issue_token(t: &TokenRow) -> Result<Stmt, DbError> {
    let sealed = t.sealed.as_ref().ok_or_else(|| corrupt("an issued token without its bytes"))?;
    Ok(Stmt::new(
        "UPDATE center_tokens SET status = 'issued', entry_key = $1, deposited_on = $2, key_version = $3,
         expires_at = $4, sealed = $5, updated_at = $6, issued_at = $6 WHERE id = $7 AND status = 'awaiting'",
    )
    .bind(t.entry_key.clone())
    .bind(t.deposited_on.clone())
    .bind(t.key_version.map(i64::from))
    .bind(t.expires_at.map(|e| to_i64(e.unix_s())).transpose()?)
    .bind(hex::encode(sealed))
    .bind(to_i64(t.updated_at.unix_s())?)
    .bind(t.id.to_string()))
}

const TOKEN_BY_REQUEST_SQL: &str = select_tokens!("member = $1 AND request_id = $2");
const TOKEN_BY_REFERENCE_SQL: &str = select_tokens!("reference = $1");
const TOKEN_SQL: &str = select_tokens!("id = $1");

impl CenterDb {
    /// Stores a new token request. One for the same member and request id
    /// already stored: that one, and nothing written.
    pub async fn insert_token(&self, t: &TokenRow) -> Result<Option<TokenRow>, DbError> {
        let existing = Stmt::new(TOKEN_BY_REQUEST_SQL).bind(t.member.clone()).bind(t.request_id.clone());
        let insert = insert_token_stmt(t)?;
        let written = self
            .write(move |mut conn| {
                Box::pin(async move {
                    if let Some(found) = conn.fetch_optional(existing, token_row_of).await? {
                        return Ok(Some(found));
                    }
                    conn.execute(insert).await?;
                    Ok(None)
                })
            })
            .await;
        match written {
            // The same request stored by another instance meanwhile.
            Err(e) if e.is_unique_violation() => {
                self.token_by_request(&t.member, &t.request_id).await?.map(Some).ok_or(e)
            }
            other => other,
        }
    }

    pub async fn token(&self, id: &TokenId) -> Result<Option<TokenRow>, DbError> {
        self.read_one(TOKEN_SQL, &[&id.to_string()], token_row_of).await
    }

    pub async fn token_by_request(&self, member: &str, request_id: &str) -> Result<Option<TokenRow>, DbError> {
        self.read_one(TOKEN_BY_REQUEST_SQL, &[member, request_id], token_row_of).await
    }

    pub async fn token_by_reference(&self, reference: &str) -> Result<Option<TokenRow>, DbError> {
        self.read_one(TOKEN_BY_REFERENCE_SQL, &[reference], token_row_of).await
    }

    /// A member's tokens, newest first.
    pub async fn tokens_of_member(&self, member: &str) -> Result<Vec<TokenRow>, DbError> {
        let rows = sqlx::query(select_tokens!("member = $1 ORDER BY created_at DESC, id LIMIT $2"))
            .bind(member.to_owned())
            .bind(MAX_LIST)
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter().map(|r| token_row_of(r)).collect()
    }

    /// A card's tokens, oldest first.
    pub async fn tokens_of_card(&self, card: &CardId) -> Result<Vec<TokenRow>, DbError> {
        let rows = sqlx::query(select_tokens!("card_id = $1 ORDER BY created_at, id LIMIT $2"))
            .bind(card.to_string())
            .bind(MAX_LIST)
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter().map(|r| token_row_of(r)).collect()
    }

    /// Ends the token requests whose deposit did not arrive by `now`.
    pub async fn lapse_tokens(&self, cutoff: Timestamp, now: Timestamp) -> Result<u64, DbError> {
        let lapse = Stmt::new(
            "UPDATE center_tokens SET status = 'lapsed', updated_at = $2 WHERE status = 'awaiting' AND awaiting_until < $1",
        )
        .bind(to_i64(cutoff.unix_s())?)
        .bind(to_i64(now.unix_s())?);
        self.execute(lapse).await
    }

    /// What the books hold of a card's tokens, as the examination of its
    /// log compares them: each token issued to it whose STORE TOKEN may
    /// have reached it (pending until the card proved it), and each REDEEM
    /// TOKEN the provider honoured.
    pub async fn token_book_entries(&self, card: &CardId) -> Result<Vec<BookEntry>, DbError> {
        let tokens = self.tokens_of_card(card).await?;
        let mut entries = Vec::new();
        for t in &tokens {
            let entry = |tx: &TransactionId, kind, counter, pending| BookEntry {
                transaction_id: hex::encode(tx.as_bytes()),
                kind,
                amount_minor: t.amount.amount_minor(),
                counter,
                pending,
                what: t.id.to_string(),
            };
            // Every issued token's STORE may have reached the card (one
            // paid back too): pending until the card proved it.
            if !matches!(t.status, TokenStatus::Awaiting | TokenStatus::Lapsed) {
                let pending = t.stored_counter.is_none();
                entries.push(entry(&t.store_tx, LogKind::TokenStored, t.stored_counter, pending));
            }
            if t.status == TokenStatus::Redeemed {
                entries.push(entry(&t.redeem_tx, LogKind::TokenRedeemed, t.redeemed_counter, false));
            }
        }
        Ok(entries)
    }

    /// Deletes token sessions opened before `before`, at most `limit`
    /// (what they did is in `center_tokens` and the owed items).
    pub async fn purge_token_sessions(&self, before: Timestamp, limit: i64) -> Result<u64, DbError> {
        let query = Stmt::new(
            "DELETE FROM center_token_sessions WHERE id IN
             (SELECT id FROM center_token_sessions WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        )
        .bind(to_i64(before.unix_s())?)
        .bind(limit);
        self.execute(query).await
    }

    /// Writes session `d` if its row is still at `version`, with `response`
    /// for its Idempotency-Key and, in the same transaction, what it did:
    /// the log records it read are collected; each token the card proved it
    /// holds is `stored` (from `issued`; one stored already stays as it
    /// is); the token the provider honoured (`redemption`) is entered in the
    /// provider's register (once, by its REDEEM transaction: another is
    /// refused), `redeemed`, and its value owed to the card with the hold
    /// (tokens outstanding → card float). A redemption written before (its
    /// answer lost) is found and not written twice.
    pub async fn update_token_session(
        &self,
        d: &TokenSession,
        version: i64,
        redemption: Option<&Redemption>,
        now: Timestamp,
        response: Option<SavedResponse>,
    ) -> Result<(), DbError> {
        let mut also = super::audit::collect_statements(&d.card_id, &d.collected, now)?;
        for (id, counter) in &d.stored {
            also.push(
                Stmt::new(
                    "UPDATE center_tokens SET status = 'stored', stored_counter = $1, updated_at = $2
                     WHERE id = $3 AND card_id = $4 AND status = 'issued'",
                )
                .bind(i64::from(*counter))
                .bind(to_i64(now.unix_s())?)
                .bind(id.to_string())
                .bind(d.card_id.to_string()),
            );
        }
        if let (crate::token_session::TokenPurpose::Redeem { token }, Some(at), false) =
            (d.purpose, d.sealed_at.filter(|_| d.phase == kessai_api::TokenSessionPhase::Sent), d.sent.is_empty())
        {
            also.push(
                Stmt::new(
                    "UPDATE center_tokens SET redeem_sent_at = COALESCE(redeem_sent_at, $1) WHERE id = $2 AND card_id = $3",
                )
                .bind(to_i64(at.unix_s())?)
                .bind(token.to_string())
                .bind(d.card_id.to_string()),
            );
        }
        let redeem = redemption.map(|r| r.statements(now)).transpose()?;
        self.update_card_session(d, version, also, redeem, now, response).await
    }
}

/// A token the provider honoured, and what it becomes: the bill of the
/// settlement it was chosen to pay, and the value owed to the card that
/// gave it up (all of it, or what it held beyond that bill).
#[derive(Debug, Clone)]
pub struct Redemption {
    pub token: TokenRow,
    /// The card's counter at its REDEEM, when known (a redemption written
    /// from the provider's register for a card that cannot answer may not
    /// know it).
    pub counter: Option<u32>,
    pub at: Timestamp,
    /// What the card is owed, with its hold (tokens outstanding → card
    /// float): none when the bill took all of the token.
    pub owed: Option<(crate::owed::Owed, crate::books::Entries)>,
    /// The settlement it pays, completed (written if its row is still at
    /// its version), and its books.
    pub paid: Option<PaidBill>,
    /// Written before, for this token's REDEEM transaction (another
    /// session finished it, or this one's answer was lost): what it did,
    /// answered again; nothing more is written.
    pub before: Option<WrittenBefore>,
}

/// What a redemption written before did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBefore {
    /// The settlement whose bill it paid.
    pub settlement_id: Option<String>,
    /// What it owes the card: the owed item and its amount.
    pub owed: Option<(String, Money)>,
}

/// A settlement a token's redemption completes.
#[derive(Debug, Clone)]
pub struct PaidBill {
    pub settlement: crate::purchase::Settlement,
    pub version: i64,
    /// Tokens outstanding → the payee's payable.
    pub books: crate::books::Entries,
}

/// The statements of a redemption's write: its checks, which read only
/// (run before the session's own row is written, so a refusal or a lost
/// race leaves the transaction clean), then its writes.
pub(super) struct RedemptionWrite {
    tx: String,
    /// The card's status, and the same locking its row on PostgreSQL (so a
    /// report of loss commits before this check or after this item, which
    /// its replacement then moves).
    card: Locked,
    /// The token's status and choice (its row locked on PostgreSQL), and
    /// the choice the redemption was made for.
    token_status: Locked,
    chosen_by: Option<String>,
    registered: Stmt,
    register: Stmt,
    /// The token `redeemed`, from `stored` (none for a redemption written
    /// before).
    token: Option<Stmt>,
    owed: Option<(Stmt, crate::books::Entries)>,
    /// Whether what it owes goes to the token's own card, and whether that
    /// card was replaced (the trail's record).
    owed_to_own_card: bool,
    replaced: Stmt,
    /// The settlement it pays: its version read (locked on PostgreSQL),
    /// the one expected, the bill's guard; its update and books.
    paid: Option<PaidWrite>,
}

/// A read, and the same read locking its row on PostgreSQL.
pub(super) struct Locked(pub(super) Stmt, pub(super) Stmt);

impl Locked {
    pub(super) fn of(conn: &Exec<'_>, l: &Locked) -> Stmt {
        if conn.is_postgres() { l.1.clone() } else { l.0.clone() }
    }
}

pub(super) struct PaidWrite {
    version: Locked,
    expected: i64,
    guard: Option<super::prepaid::BillGuard>,
    update: Stmt,
    books: crate::books::Entries,
}

impl RedemptionWrite {
    /// The checks, reading only: a redemption written now needs the token
    /// still `stored` (else another finish of the same
    /// REDEEM committed first: `Conflict`, read again), and the settlement
    /// it pays still at the version read (else `Conflict`) with its bill
    /// paid by no prepaid card; any redemption needs the provider's
    /// register to hold no other transaction for the token.
    pub(super) async fn check(&mut self, conn: &mut Exec<'_>) -> Result<(), DbError> {
        let refused = |code| DbError::BooksRefused { what: "the token's redemption", code };
        let fresh = self.token.is_some();
        // The bill's lock first, as the choice of a token takes it. A
        // prepaid payment of the bill is refused while the settlement waits
        // for the token: one that paid it means the settlement moved.
        if let Some(guard) = self.paid.as_mut().and_then(|p| p.guard.take()) {
            match guard.check(conn).await {
                Err(DbError::BillPaid) => return Err(DbError::Conflict),
                other => other?,
            }
        }
        if fresh {
            // The card's row locked (a report of its loss waits for this
            // write); its status is not checked here: the finish asked the
            // provider only for an active card, and once the provider
            // honoured the token its redemption is written, its value owed
            // to the card and following the card's replacement.
            let status = conn.fetch_optional(Locked::of(conn, &self.card), |row| row.required_text("status")).await?;
            // Owed to a card no longer active that was replaced since the
            // target was read: read again (it goes to the replacement).
            if status.as_deref() != Some("active") && self.owed_to_own_card {
                let replaced = conn.fetch_optional(self.replaced.clone(), |row| row.required_int("n")).await?;
                if replaced.unwrap_or(0) > 0 {
                    return Err(DbError::Conflict);
                }
            }
            let read = Locked::of(conn, &self.token_status);
            let token =
                conn.fetch_optional(read, |row| Ok((row.required_text("status")?, row.text("chosen_by")?))).await?;
            // Redeemed by another finish, or chosen for a settlement since
            // it was read: read again.
            // `expired`: past its expiry, its payback's account corrected,
            // not paid back; the provider honoured its REDEEM (asked before
            // the expiry, or read from its register).
            let open = token.as_ref().is_some_and(|(status, chosen)| {
                matches!(status.as_str(), "stored" | "expired") && *chosen == self.chosen_by
            });
            if !open {
                return Err(DbError::Conflict);
            }
        }
        let by = conn.fetch_optional(self.registered.clone(), |row| row.required_text("tx")).await?;
        match by {
            // The provider honoured this token for another transaction (or
            // it was paid back): nothing more is owed for it.
            Some(other) if other != self.tx => return Err(refused("token_redeemed_before")),
            None if !fresh => return Err(DbError::Conflict),
            _ => {}
        }
        if let Some(p) = &self.paid {
            let read = Locked::of(conn, &p.version);
            if conn.fetch_optional(read, |r| r.required_int("version")).await? != Some(p.expected) {
                // Cancelled or abandoned meanwhile: the caller reads again.
                return Err(DbError::Conflict);
            }
        }
        Ok(())
    }

    /// The writes, once checked: the provider's register (this token once,
    /// by its REDEEM transaction), the token `redeemed`, the settlement it
    /// pays completed with its books, and the owed item with its hold.
    pub(super) async fn write(self, conn: &mut Exec<'_>, now_s: u64) -> Result<(), DbError> {
        let Some(token) = self.token else { return Ok(()) };
        conn.execute(self.register).await?;
        let checked = |what: &str| DbError::Inconsistent(format!("the redemption's {what} changed after its check"));
        if conn.execute(token).await? != 1 {
            return Err(checked("token"));
        }
        if let Some(p) = self.paid {
            if conn.execute(p.update).await? != 1 {
                return Err(checked("settlement"));
            }
            conn.books(&p.books, now_s).await?;
        }
        if let Some((owed, hold)) = self.owed {
            conn.books(&hold, now_s).await?;
            conn.execute(owed).await?;
        }
        Ok(())
    }
}

impl Redemption {
    /// Token `token` given up by its card at `counter` (REDEEM at `at`),
    /// all of its value owed to the card.
    pub fn of(
        token: &TokenRow,
        counter: Option<u32>,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<Redemption, crate::books::BooksError> {
        let owed = Some(owed_to_card(token, token.amount, now)?);
        Ok(Redemption { token: token.clone(), counter, at, owed, paid: None, before: None })
    }

    /// Token `token`, redeemed before by this REDEEM transaction: `before`
    /// says what that redemption did.
    pub fn written_before(token: &TokenRow, counter: Option<u32>, at: Timestamp, before: WrittenBefore) -> Redemption {
        Redemption { token: token.clone(), counter, at, owed: None, paid: None, before: Some(before) }
    }

    /// The same, paying the bill of `settlement` (completed, read at
    /// `version`): what the token held beyond the bill is owed to the card.
    pub fn paying(
        token: &TokenRow,
        counter: Option<u32>,
        at: Timestamp,
        now: Timestamp,
        settlement: crate::purchase::Settlement,
        version: i64,
    ) -> Result<Redemption, crate::books::BooksError> {
        let bill = settlement.bill.amount;
        let change = token.amount.checked_sub(&bill).map_err(|_| crate::books::BooksError::Refused {
            what: "the purchase paid by a token",
            code: "exceeds_token",
        })?;
        let owed = (change.amount_minor() > 0).then(|| owed_to_card(token, change, now)).transpose()?;
        let books = crate::books::Entries::token_purchase(settlement.id.as_str(), settlement.bill.payee(), bill)?;
        let paid = Some(PaidBill { settlement, version, books });
        Ok(Redemption { token: token.clone(), counter, at, owed, paid, before: None })
    }

    fn statements(&self, now: Timestamp) -> Result<RedemptionWrite, DbError> {
        let t = &self.token;
        let tx = hex::encode(t.redeem_tx.as_bytes());
        let key_version = t.key_version.ok_or_else(|| corrupt("a stored token without its key version"))?;
        let lock = |plain: &'static str, locked: &'static str, id: String| {
            Locked(Stmt::new(plain).bind(id.clone()), Stmt::new(locked).bind(id))
        };
        let owed = match &self.owed {
            Some((owed, hold)) => Some((super::owed::insert_owed_query(owed, now)?, hold.clone())),
            None => None,
        };
        let paid = match &self.paid {
            Some(p) => Some(PaidWrite {
                version: lock(
                    "SELECT version FROM center_settlements WHERE id = $1",
                    "SELECT version FROM center_settlements WHERE id = $1 FOR UPDATE",
                    p.settlement.id.as_str().to_owned(),
                ),
                expected: p.version,
                guard: Some(super::settlements::bill_guard(&p.settlement)),
                update: super::settlements::settlement_update(&p.settlement, p.version, now)?,
                books: p.books.clone(),
            }),
            None => None,
        };
        let owed_to_own_card = self.owed.as_ref().is_some_and(|(o, _)| o.body.card_id == t.card_id);
        let replaced = Stmt::new("SELECT COUNT(*) AS n FROM center_operator_trail WHERE subject = $1 AND action = $2")
            .bind(t.card_id.to_string())
            .bind(crate::owed::CARD_REPLACED.to_owned());
        Ok(RedemptionWrite {
            owed_to_own_card,
            replaced,
            card: lock(
                "SELECT status FROM center_cards WHERE id = $1",
                "SELECT status FROM center_cards WHERE id = $1 FOR UPDATE",
                t.card_id.to_string(),
            ),
            token_status: lock(
                "SELECT status, chosen_by FROM center_tokens WHERE id = $1",
                "SELECT status, chosen_by FROM center_tokens WHERE id = $1 FOR UPDATE",
                t.id.to_string(),
            ),
            chosen_by: t.chosen_by.clone(),
            register: Stmt::new(
                "INSERT INTO center_token_redemptions (token_id, tx, key_version, amount_minor, currency, redeemed_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token_id) DO NOTHING",
            )
            .bind(t.id.to_string())
            .bind(tx.clone())
            .bind(i64::from(key_version))
            .bind(to_i64(t.amount.amount_minor())?)
            .bind(t.amount.currency().code().to_owned())
            .bind(to_i64(self.at.unix_s())?),
            registered: Stmt::new("SELECT tx FROM center_token_redemptions WHERE token_id = $1").bind(t.id.to_string()),
            token: match self.before {
                Some(_) => None,
                None => Some(
                    Stmt::new(
                        "UPDATE center_tokens SET status = 'redeemed', redeemed_counter = $1, updated_at = $2,
                         redeemed_at = $2 WHERE id = $3 AND card_id = $4 AND status IN ('stored', 'expired')",
                    )
                    .bind(self.counter.map(i64::from))
                    .bind(to_i64(now.unix_s())?)
                    .bind(t.id.to_string())
                    .bind(t.card_id.to_string()),
                ),
            },
            owed,
            paid,
            tx,
        })
    }
}

/// `amount` of token `token` owed to its card, with its hold.
fn owed_to_card(
    token: &TokenRow,
    amount: Money,
    now: Timestamp,
) -> Result<(crate::owed::Owed, crate::books::Entries), crate::books::BooksError> {
    owed_to(token, token.card_id, amount, now)
}

/// `amount` of token `token` owed to `card`, with its hold.
fn owed_to(
    token: &TokenRow,
    card: CardId,
    amount: Money,
    now: Timestamp,
) -> Result<(crate::owed::Owed, crate::books::Entries), crate::books::BooksError> {
    let mut owed = crate::owed::token_owed(token, amount, now);
    owed.body.card_id = card;
    let hold = crate::books::Entries::token_to_card_hold(&owed.id, &card, amount)?;
    Ok((owed, hold))
}

impl Redemption {
    /// The same, what it owes going to `card` instead: the replacement of
    /// a card lost before the redemption was written.
    pub fn owing_to(mut self, card: CardId, now: Timestamp) -> Result<Redemption, crate::books::BooksError> {
        if let Some((o, _)) = &self.owed {
            let amount = o.body.amount;
            self.owed = Some(owed_to(&self.token, card, amount, now)?);
        }
        Ok(self)
    }
}

impl CenterDb {
    /// Writes `r` alone (no card session): the provider honoured the
    /// token's REDEEM, recorded in its register, and the card cannot
    /// finish it.
    pub async fn write_redemption(&self, r: &Redemption, now: Timestamp) -> Result<(), DbError> {
        let w = r.statements(now)?;
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                let mut w = w;
                w.check(&mut conn).await?;
                w.write(&mut conn, now_s).await
            })
        })
        .await
    }
}

/// An expired token's payback: a line of a clearing run's bank file paying
/// its value to the refund account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaybackRow {
    pub id: String,
    pub token_id: TokenId,
    pub run_id: String,
    pub amount: Money,
    pub payee_account: String,
    pub bank_ref: String,
    /// `in_transit`, `settled` or `failed`.
    pub status: String,
    pub reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A payback row's columns, as [`payback_row`] reads them.
macro_rules! payback_columns {
    () => {
        "id, token_id, run_id, amount_minor, currency, payee_account, bank_ref, status, reason, created_at, updated_at"
    };
}
const PAYBACK_COLUMNS: &str = payback_columns!();

fn payback_row(r: &dyn Columns) -> Result<PaybackRow, DbError> {
    let currency = Currency::from_str(&r.required_text("currency")?).map_err(corrupt)?;
    Ok(PaybackRow {
        id: r.required_text("id")?,
        token_id: TokenId::parse(&r.required_text("token_id")?).map_err(corrupt)?,
        run_id: r.required_text("run_id")?,
        amount: Money::new(to_u64(r.required_int("amount_minor")?)?, currency).map_err(corrupt)?,
        payee_account: r.required_text("payee_account")?,
        bank_ref: r.required_text("bank_ref")?,
        status: r.required_text("status")?,
        reason: r.text("reason")?,
        created_at: at(r.required_int("created_at")?)?,
        updated_at: at(r.required_int("updated_at")?)?,
    })
}

/// What the provider's register holds for a token paid back (a
/// redemption holds its REDEEM transaction's id): after it, no
/// redemption of the token is honoured.
pub const PAID_BACK_IN_REGISTER: &str = "payback";

/// What paying back one token asks of the database.
#[derive(Debug, Clone)]
pub struct Payback {
    pub row: PaybackRow,
    pub key_version: u8,
    /// Tokens outstanding → payouts in transit.
    pub books: Entries,
}

impl CenterDb {
    /// Tokens a payback is due for: issued or stored and expired by
    /// `due`, or expired and not yet paid back; by id after `after`, at
    /// most `limit`.
    pub async fn tokens_to_pay_back(&self, due: Timestamp, after: &str, limit: i64) -> Result<Vec<TokenRow>, DbError> {
        let rows = sqlx::query(select_tokens!(
            "((status IN ('issued', 'stored') AND expires_at <= $1) OR status = 'expired') AND id > $2
             ORDER BY id LIMIT $3"
        ))
        .bind(to_i64(due.unix_s())?)
        .bind(after.to_owned())
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| token_row_of(r)).collect()
    }

    /// Writes each payback of run `run` (held by `holder`) in one
    /// transaction: the provider's register closed to redemptions (a token
    /// it honoured meanwhile is skipped: `false`), the token `paying_back`,
    /// the books and the payback row. Fails (nothing written) if the run
    /// is no longer held.
    pub async fn pay_back_tokens(
        &self,
        run: &str,
        holder: &str,
        paybacks: Vec<Payback>,
        now: Timestamp,
    ) -> Result<Vec<bool>, DbError> {
        let now_s = now.unix_s();
        let now_i = to_i64(now_s)?;
        let held = super::clearing::run_held(run, holder);
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.fetch_optional(held, |r| r.required_text("id")).await?.is_none() {
                    return Err(DbError::Conflict);
                }
                let mut made = Vec::with_capacity(paybacks.len());
                for p in paybacks {
                    made.push(pay_back_one(&mut conn, p, now_i, now_s).await?);
                }
                Ok(made)
            })
        })
        .await
    }

    /// Paybacks, of one run or one token or all, oldest first, at most
    /// `limit`.
    pub async fn paybacks(
        &self,
        run: Option<&str>,
        token: Option<&TokenId>,
        limit: i64,
    ) -> Result<Vec<PaybackRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAYBACK_COLUMNS} FROM center_token_paybacks WHERE ($1 = '' OR run_id = $1)
             AND ($2 = '' OR token_id = $2) ORDER BY created_at, id LIMIT $3"
        )))
        .bind(run.unwrap_or_default().to_owned())
        .bind(token.map(|t| t.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| payback_row(r)).collect()
    }

    /// Records what a bank file said of the payback quoting
    /// `event.bank_ref`, once per entry: settled (payouts in transit →
    /// bank pool, the token `paid_back`) or failed (→ tokens outstanding,
    /// the token `payback_failed`); another amount, a payback no longer in
    /// transit, or an unknown one is recorded for review with why.
    pub async fn take_payback_event(
        &self,
        event: PayoutEvent,
        amount: Option<Money>,
        now: Timestamp,
    ) -> Result<EventTaken, DbError> {
        let now_s = now.unix_s();
        let now_i = to_i64(now_s)?;
        let seen = super::clearing::event_seen(&event);
        let found =
            Stmt::new(concat!("SELECT ", payback_columns!(), " FROM center_token_paybacks WHERE bank_ref = $1"))
                .bind(event.bank_ref.clone());
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.fetch_optional(seen, |r| r.required_text("entry_key")).await?.is_some() {
                    return Ok(EventTaken::Before);
                }
                let found = conn.fetch_optional(found, payback_row).await?;
                let why = match &found {
                    None => Some("no payout or payback quotes this reference".to_owned()),
                    Some(p) if p.status != "in_transit" => {
                        Some(format!("the payback is {} already; the bank now says {}", p.status, event.status))
                    }
                    Some(p) if amount.is_some_and(|a| a != p.amount) => Some(format!(
                        "the bank says {} for payback {} of {}",
                        amount.map(|a| a.to_string()).unwrap_or_default(),
                        p.id,
                        p.amount
                    )),
                    Some(_) if event.status == "review" => event.reason.clone(),
                    Some(_) => None,
                };
                let paid = found.as_ref().map(|p| p.id.clone());
                if let Some(why) = why {
                    conn.execute(super::clearing::record_event(&event, paid, "review".into(), Some(why), now_i))
                        .await?;
                    return Ok(EventTaken::Review);
                }
                let p = found.ok_or_else(|| corrupt("a payback found and lost"))?;
                let settled = event.status == "settled";
                let (entries, token_status) = if settled {
                    (Entries::payout_settled(&p.id, p.amount), "paid_back")
                } else {
                    (Entries::token_payback_returned(&p.id, p.amount), "payback_failed")
                };
                conn.books(&entries.map_err(|e| DbError::Inconsistent(e.to_string()))?, now_s).await?;
                let moved = Stmt::new(
                    "UPDATE center_token_paybacks SET status = $2, reason = $3, updated_at = $4
                     WHERE id = $1 AND status = 'in_transit'",
                )
                .bind(p.id.clone())
                .bind(if settled { "settled" } else { "failed" }.to_owned())
                .bind(event.reason.clone())
                .bind(now_i);
                let token = Stmt::new(
                    "UPDATE center_tokens SET status = $2, updated_at = $3 WHERE id = $1 AND status = 'paying_back'",
                )
                .bind(p.token_id.to_string())
                .bind(token_status.to_owned())
                .bind(now_i);
                if conn.execute(moved).await? != 1 || conn.execute(token).await? != 1 {
                    return Err(DbError::Conflict);
                }
                let status = if settled { "settled" } else { "failed" };
                conn.execute(super::clearing::record_event(&event, paid, status.into(), event.reason.clone(), now_i))
                    .await?;
                Ok(EventTaken::Applied)
            })
        })
        .await
    }

    /// An operator's correction of where an expired token is paid back
    /// (`account`, a payee account in the form bank files carry): the
    /// token, if still as `seen`, not in transit or paid, and (still on
    /// the card) expired by `due`, is `expired`, for the next run to pay
    /// back there.
    pub async fn set_payback_account(
        &self,
        token: &TokenId,
        seen: TokenStatus,
        account: &str,
        now: Timestamp,
        due: Timestamp,
        trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let set = Stmt::new(
            "UPDATE center_tokens SET payback_account = $1, status = 'expired', updated_at = $2
             WHERE id = $3 AND status = $4 AND (status IN ('expired', 'payback_failed')
             OR (status IN ('issued', 'stored') AND expires_at <= $5))",
        )
        .bind(account.to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(token.to_string())
        .bind(seen.as_str().to_owned())
        .bind(to_i64(due.unix_s())?);
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(set).await? != 1 {
                    return Ok(false);
                }
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }
}

/// One payback in the run's transaction (see
/// [`CenterDb::pay_back_tokens`]).
async fn pay_back_one(conn: &mut Exec<'_>, p: Payback, now_i: i64, now_s: u64) -> Result<bool, DbError> {
    let r = &p.row;
    let token = r.token_id.to_string();
    // The token's row first (locked on PostgreSQL), as a redemption takes
    // it: one not payable now (redeemed, or paid back by another run) is
    // left, nothing written.
    let sql = if conn.is_postgres() {
        "SELECT status FROM center_tokens WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT status FROM center_tokens WHERE id = $1"
    };
    let status = conn.fetch_optional(Stmt::new(sql).bind(token.clone()), |row| row.required_text("status")).await?;
    if !matches!(status.as_deref(), Some("issued" | "stored" | "expired")) {
        return Ok(false);
    }
    let register = Stmt::new(
        "INSERT INTO center_token_redemptions (token_id, tx, key_version, amount_minor, currency, redeemed_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token_id) DO NOTHING",
    )
    .bind(token.clone())
    .bind(PAID_BACK_IN_REGISTER.to_owned())
    .bind(i64::from(p.key_version))
    .bind(to_i64(r.amount.amount_minor())?)
    .bind(r.amount.currency().code().to_owned())
    .bind(now_i);
    let registered = Stmt::new("SELECT tx FROM center_token_redemptions WHERE token_id = $1").bind(token.clone());
    match conn.fetch_optional(registered, |row| row.required_text("tx")).await?.as_deref() {
        // Honoured for a redemption (its token row not yet `redeemed`: a
        // card's REDEEM proven before, written again): left.
        Some(tx) if tx != PAID_BACK_IN_REGISTER => return Ok(false),
        _ => {}
    }
    let entered = conn.execute(register).await?;
    let moved = Stmt::new(
        "UPDATE center_tokens SET status = 'paying_back', updated_at = $1
         WHERE id = $2 AND status IN ('issued', 'stored', 'expired')",
    )
    .bind(now_i)
    .bind(token);
    match conn.execute(moved).await? {
        1 => {}
        // Another run paid it back meanwhile.
        _ if entered == 0 => return Ok(false),
        _ => return Err(corrupt(format!("token {} entered as paid back from no payable status", r.token_id))),
    }
    conn.books(&p.books, now_s).await?;
    let insert = Stmt::new(
        "INSERT INTO center_token_paybacks (id, token_id, run_id, amount_minor, currency, payee_account, bank_ref,
         status, reason, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_transit', NULL, $8, $8)",
    )
    .bind(r.id.clone())
    .bind(r.token_id.to_string())
    .bind(r.run_id.clone())
    .bind(to_i64(r.amount.amount_minor())?)
    .bind(r.amount.currency().code().to_owned())
    .bind(r.payee_account.clone())
    .bind(r.bank_ref.clone())
    .bind(now_i);
    conn.execute(insert).await?;
    Ok(true)
}

//! The center's schema as numbered migrations, recorded in
//! `kessai_center_schema` and applied in one transaction under a lock
//! (PostgreSQL: an advisory lock; SQLite: `BEGIN IMMEDIATE`), so instances
//! starting at once take turns and a restart applies nothing twice. A
//! released migration is never edited: changes are new migrations. A
//! database newer than this build is refused.
//!
//! Version 1 is the schema as it stood before versions were recorded; its
//! statements adopt a database an earlier build made (tables and indexes if
//! missing, columns added only if missing).

use sqlx::{AnyConnection, AnyPool};

use crate::db::DbError;

/// Version 1's tables and indexes, as an earlier build created them on every
/// start (hence IF NOT EXISTS: version 1 adopts such a database).
const BASELINE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS center_stores (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, mall TEXT, notify_url TEXT,
        client_name TEXT, bank_account TEXT, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS center_store_keys (
        kid TEXT PRIMARY KEY, store TEXT NOT NULL, public_key TEXT NOT NULL,
        not_before BIGINT, not_after BIGINT, revoked BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS center_cards (
        id TEXT PRIMARY KEY, key_version BIGINT NOT NULL, status TEXT NOT NULL,
        currency TEXT NOT NULL, max_balance_minor BIGINT NOT NULL, status_reason TEXT, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS center_settlements (
        id TEXT PRIMARY KEY, store TEXT NOT NULL, bill_id TEXT NOT NULL, card_id TEXT NOT NULL,
        phase TEXT NOT NULL, record TEXT NOT NULL, version BIGINT NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, UNIQUE (store, bill_id))",
    // By card, in the order listings want; neither column changes after
    // the insert, so no step has to move an entry. (Replaces the index on
    // (card_id, phase), which every step rewrote; dropped in `open`.)
    "CREATE INDEX IF NOT EXISTS center_settlements_card_created ON center_settlements (card_id, created_at)",
    "CREATE TABLE IF NOT EXISTS center_charges (
        id TEXT PRIMARY KEY, card_id TEXT NOT NULL, phase TEXT NOT NULL, amount_minor BIGINT NOT NULL,
        record TEXT NOT NULL, version BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS center_charges_card ON center_charges (card_id, created_at)",
    "CREATE TABLE IF NOT EXISTS center_charge_days (
        card_id TEXT NOT NULL, day BIGINT NOT NULL, charged_minor BIGINT NOT NULL, PRIMARY KEY (card_id, day))",
    "CREATE TABLE IF NOT EXISTS center_owed (
        id TEXT PRIMARY KEY, card_id TEXT NOT NULL, status TEXT NOT NULL, session TEXT, applied_by TEXT,
        store TEXT, reference TEXT NOT NULL, record TEXT NOT NULL, version BIGINT NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS center_owed_card ON center_owed (card_id, status, created_at)",
    "CREATE TABLE IF NOT EXISTS center_statements (
        id TEXT PRIMARY KEY, card_id TEXT NOT NULL, record TEXT NOT NULL, version BIGINT NOT NULL,
        created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS center_idempotency (
        key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, status BIGINT NOT NULL,
        body TEXT NOT NULL, created_at BIGINT NOT NULL)",
];

/// Migrations after the baseline, in order.
const MIGRATIONS: &[(i64, &str, &[&str])] = &[
    (
        2,
        "single-flight value update creates; the abandoned sweep's indexes",
        &[
            // A value update's create claims its id first (single flight):
            // `claimed_at` lets another request take a claim over once its
            // holder must have died.
            "CREATE TABLE IF NOT EXISTS center_create_claims (id TEXT PRIMARY KEY, claimed_at BIGINT NOT NULL)",
            // What the abandoned sweep looks for: a row enters at its insert and
            // leaves when its command is sealed.
            "CREATE INDEX IF NOT EXISTS center_settlements_opening ON center_settlements (created_at)
            WHERE phase IN ('authenticating', 'reading_balance')",
            "CREATE INDEX IF NOT EXISTS center_charges_opening ON center_charges (created_at)
            WHERE phase IN ('authenticating', 'reading_balance')",
        ],
    ),
    (
        3,
        "a value update is a value update: charges, decreases and owed items alike",
        &["ALTER TABLE center_charges RENAME TO center_value_updates"],
    ),
    (
        4,
        "state every instance shares: the authorizer's authorizations, the keys the database belongs to, delivery claims; retention of stored answers",
        &[
            "CREATE TABLE IF NOT EXISTS center_authorizations (reference TEXT PRIMARY KEY,
            charge_id TEXT NOT NULL UNIQUE, record TEXT NOT NULL, version BIGINT NOT NULL, created_at BIGINT NOT NULL)",
            // One row: the fingerprints of the key set the database was
            // created with (`crate::key_set`).
            "CREATE TABLE IF NOT EXISTS center_key_set (id BIGINT PRIMARY KEY CHECK (id = 1), kek TEXT NOT NULL,
            master_keys TEXT NOT NULL, signing_key TEXT NOT NULL, created_at BIGINT NOT NULL)",
            // Delivery is claimed through the database: a completion is due
            // for delivery at `delivery_due` (unix s); an instance takes it
            // by moving that into the future (a lease), and a failed attempt
            // moves it by the backoff of its `delivery_attempts`.
            "ALTER TABLE center_settlements ADD COLUMN delivery_due BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE center_settlements ADD COLUMN delivery_attempts BIGINT NOT NULL DEFAULT 0",
            "CREATE INDEX IF NOT EXISTS center_settlements_due ON center_settlements (delivery_due, id)
            WHERE phase = 'completed' AND delivered = 0",
            "DROP INDEX IF EXISTS center_settlements_undelivered",
            // Stored answers are purged after their retention (`limits`).
            "CREATE INDEX IF NOT EXISTS center_idempotency_created ON center_idempotency (created_at)",
            // Charge attempts, declined ones too, by card and by a keyed
            // fingerprint of the payment card number (never the number):
            // the velocity limits of `POST /v1/charges`.
            "CREATE TABLE IF NOT EXISTS center_charge_attempts (card_id TEXT NOT NULL, pan_fingerprint TEXT NOT NULL,
            at BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS center_charge_attempts_card ON center_charge_attempts (card_id, at)",
            "CREATE INDEX IF NOT EXISTS center_charge_attempts_pan ON center_charge_attempts (pan_fingerprint, at)",
            "CREATE INDEX IF NOT EXISTS center_charge_attempts_at ON center_charge_attempts (at)",
        ],
    ),
    (
        5,
        "charges authorized after the card's proof: each day's reservation is keyed by its charge; statements purged",
        &[
            // What a charge reserved of its card's daily limit, keyed by the
            // charge, so taking it and giving it back are each done once
            // (a retry, a crash between reserving and storing, the sweep).
            "CREATE TABLE IF NOT EXISTS center_charge_reservations (charge_id TEXT PRIMARY KEY,
            card_id TEXT NOT NULL, day BIGINT NOT NULL, amount_minor BIGINT NOT NULL)",
            // Creates no longer authorize, so they claim nothing.
            "DROP TABLE IF EXISTS center_create_claims",
            // Statements (a card's log, read for its holder) are purged
            // after a day (L1).
            "CREATE INDEX IF NOT EXISTS center_statements_created ON center_statements (created_at)",
        ],
    ),
    (
        6,
        "members: applications, the operator's outbox of activation letters, the member ledger, members' cards",
        &[
            // FIG. 3-4 steps 1-5: what an applicant asked, as received.
            "CREATE TABLE IF NOT EXISTS center_member_applications (id TEXT PRIMARY KEY, kind TEXT NOT NULL,
            name TEXT NOT NULL, contact TEXT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS center_member_applications_status ON center_member_applications (status, created_at)",
            // Step 6: the member number and one-time activation code, sent out
            // of band. The letter's text (with the code) is kept until the
            // operator marks it sent; the code's SHA-256 until it is used.
            // A member whose key was lost gets a new letter: the newest one
            // counts.
            "CREATE TABLE IF NOT EXISTS center_outbox (id TEXT PRIMARY KEY, application_id TEXT NOT NULL,
            member TEXT NOT NULL, kind TEXT NOT NULL, code_hash TEXT NOT NULL, letter TEXT,
            expires_at BIGINT NOT NULL, sent_at BIGINT, used_at BIGINT, created_at BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS center_outbox_member ON center_outbox (member, created_at)",
            // Step 7: the member ledger (会員原簿 / 店舗原簿), one row a member,
            // its verification key by thumbprint.
            "CREATE TABLE IF NOT EXISTS center_members (member TEXT PRIMARY KEY, kind TEXT NOT NULL,
            details TEXT NOT NULL, kid TEXT NOT NULL UNIQUE, public_key TEXT NOT NULL, not_before BIGINT NOT NULL,
            not_after BIGINT NOT NULL, status TEXT NOT NULL, registration_jti TEXT NOT NULL UNIQUE,
            created_at BIGINT NOT NULL)",
            // Keys a member no longer uses (replaced, or revoked when lost):
            // they verify nothing, and none is registered again.
            "CREATE TABLE IF NOT EXISTS center_member_retired_keys (kid TEXT PRIMARY KEY, member TEXT NOT NULL,
            public_key TEXT NOT NULL, reason TEXT NOT NULL, retired_at BIGINT NOT NULL)",
            // A card of a member: its purchases need the member's signed
            // payment instruction (FIG. 7 ①) unless the operator turned that off.
            "ALTER TABLE center_cards ADD COLUMN member TEXT",
            "ALTER TABLE center_cards ADD COLUMN instruction_required BIGINT NOT NULL DEFAULT 1",
        ],
    ),
    (
        7,
        "virtual prepaid cards: the cards, their fundings, bank credits read from statements, payments from them",
        &[
            // A member's virtual prepaid card (FIG. 5): its value is its
            // ledger account's; `payments` numbers its payments (SIG3's
            // counter), moved by compare-and-set.
            "CREATE TABLE IF NOT EXISTS center_prepaid_cards (id TEXT PRIMARY KEY, member TEXT NOT NULL,
            currency TEXT NOT NULL, status TEXT NOT NULL, value_expires_at BIGINT, payments BIGINT NOT NULL,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS center_prepaid_cards_member ON center_prepaid_cards (member, created_at)",
            // A prepaid request's funding (FIG. 12-15), one per member and
            // request id; a transfer or an envelope quotes its reference.
            "CREATE TABLE IF NOT EXISTS center_fundings (id TEXT PRIMARY KEY, member TEXT NOT NULL,
            request_id TEXT NOT NULL, account TEXT NOT NULL, method TEXT NOT NULL, amount_minor BIGINT NOT NULL,
            currency TEXT NOT NULL, status TEXT NOT NULL, reference TEXT UNIQUE, authorization_ref TEXT,
            received_minor BIGINT, operators TEXT NOT NULL, reason TEXT, expires_at BIGINT,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, UNIQUE (member, request_id))",
            "CREATE INDEX IF NOT EXISTS center_fundings_account ON center_fundings (account, created_at)",
            "CREATE INDEX IF NOT EXISTS center_fundings_status ON center_fundings (status, created_at)",
            // Each credit of an imported statement, once by the bank's
            // entry: importing a statement again changes nothing.
            "CREATE TABLE IF NOT EXISTS center_bank_credits (entry_key TEXT PRIMARY KEY, statement TEXT NOT NULL,
            source TEXT NOT NULL, booked_on TEXT NOT NULL, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL,
            reference TEXT, remitter TEXT, status TEXT NOT NULL, funding_id TEXT, reason TEXT,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS center_bank_credits_status ON center_bank_credits (status, created_at)",
            // Payments from prepaid cards (FIG. 6-7): one per bill, and
            // delivered to the store as settlements are.
            "CREATE TABLE IF NOT EXISTS center_prepaid_payments (id TEXT PRIMARY KEY, account TEXT NOT NULL,
            member TEXT NOT NULL, store TEXT NOT NULL, bill_id TEXT NOT NULL, record TEXT NOT NULL,
            version BIGINT NOT NULL, delivered BIGINT NOT NULL, delivery_due BIGINT NOT NULL,
            delivery_attempts BIGINT NOT NULL, refunded_minor BIGINT NOT NULL, created_at BIGINT NOT NULL,
            UNIQUE (store, bill_id))",
            // Stores' refunds of such payments, credited to the prepaid card
            // at once; the id is the refund's owed-item id (store, refund id).
            "CREATE TABLE IF NOT EXISTS center_prepaid_refunds (id TEXT PRIMARY KEY, payment_id TEXT NOT NULL,
            record TEXT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS center_prepaid_payments_member ON center_prepaid_payments (member, created_at)",
            "CREATE INDEX IF NOT EXISTS center_prepaid_payments_due ON center_prepaid_payments (delivery_due, id)
            WHERE delivered = 0",
        ],
    ),
    (
        8,
        "clearing: the items of stores' payables, fee schedules, clearing runs, payouts, the bank's word on them",
        &[
            // Each movement of a store's payable, recorded with its ledger
            // transfer (id: the transfer's, hex, unique as the transfer is:
            // an item is written only with a new transfer, so no index of
            // its own, which every payment would pay for); `payout_id` once
            // paid.
            "CREATE TABLE IF NOT EXISTS center_payable_items (id TEXT NOT NULL, store TEXT NOT NULL,
            currency TEXT NOT NULL, kind TEXT NOT NULL, reference TEXT NOT NULL, amount_minor BIGINT NOT NULL,
            at BIGINT NOT NULL, payout_id TEXT)",
            // The one index a new item enters: what a run looks for (open
            // items by store, up to its cutoff) and a claim (by settlement).
            "CREATE INDEX IF NOT EXISTS center_payable_items_open
            ON center_payable_items (store, currency, reference, at) WHERE payout_id IS NULL",
            "CREATE INDEX IF NOT EXISTS center_payable_items_payout ON center_payable_items (payout_id, at)
            WHERE payout_id IS NOT NULL",
            "CREATE TABLE IF NOT EXISTS center_store_fees (store TEXT NOT NULL, currency TEXT NOT NULL,
            percent_bp BIGINT NOT NULL, fixed_minor BIGINT NOT NULL, updated_at BIGINT NOT NULL,
            PRIMARY KEY (store, currency))",
            // One row a run (id from its cutoff), claimed under a lease.
            "CREATE TABLE IF NOT EXISTS center_clearing_runs (id TEXT PRIMARY KEY, cutoff BIGINT NOT NULL,
            status TEXT NOT NULL, claimed_by TEXT NOT NULL, claimed_until BIGINT NOT NULL, created_at BIGINT NOT NULL,
            finished_at BIGINT)",
            // One payout a run, store and currency.
            "CREATE TABLE IF NOT EXISTS center_payouts (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, store TEXT NOT NULL,
            currency TEXT NOT NULL, gross_minor BIGINT NOT NULL, refunds_minor BIGINT NOT NULL,
            other_minor BIGINT NOT NULL, fees_minor BIGINT NOT NULL, amount_minor BIGINT NOT NULL, items BIGINT NOT NULL,
            fee_bp BIGINT NOT NULL, fee_fixed_minor BIGINT NOT NULL, payee_account TEXT NOT NULL,
            bank_ref TEXT NOT NULL UNIQUE, status TEXT NOT NULL, reason TEXT, created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL, UNIQUE (run_id, store, currency))",
            "CREATE INDEX IF NOT EXISTS center_payouts_store ON center_payouts (store, created_at)",
            // Each entry of a bank's file about payouts, taken once.
            "CREATE TABLE IF NOT EXISTS center_payout_events (entry_key TEXT PRIMARY KEY, file TEXT NOT NULL,
            bank_ref TEXT NOT NULL, payout_id TEXT, status TEXT NOT NULL, reason TEXT, created_at BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS center_payout_events_status ON center_payout_events (status, created_at)",
        ],
    ),
    (
        9,
        "payment claims: stores paid on claim, items a claim took, the claims and their statements",
        &[
            // The accepted claim that took an item (its key), if any.
            "ALTER TABLE center_payable_items ADD COLUMN claim_id TEXT",
            // `scheduled` (every run pays it) or `on_claim`.
            "CREATE TABLE IF NOT EXISTS center_store_settings (store TEXT PRIMARY KEY, payout_mode TEXT NOT NULL,
            updated_at BIGINT NOT NULL)",
            // One row a claim (the signing store and its claim id), with the
            // hash of what it asked and the center's signed statement.
            "CREATE TABLE IF NOT EXISTS center_claims (id TEXT PRIMARY KEY, claim_id TEXT NOT NULL,
            payee TEXT NOT NULL, request_hash TEXT NOT NULL, statement TEXT NOT NULL, created_at BIGINT NOT NULL)",
        ],
    ),
    (
        10,
        "purchase profiles a store accepts",
        &[
            // `offer,confirmed,direct` (kessai_core::profile::Profiles);
            // NULL: every profile.
            "ALTER TABLE center_store_settings ADD COLUMN purchase_profiles TEXT",
        ],
    ),
    (
        11,
        "card logs collected, and the differences their examination found",
        &[
            // One row per log record a card reported (a statement's pages):
            // the same record again adds nothing; a card telling another
            // story for one counter adds a row, which the audit names.
            "CREATE TABLE IF NOT EXISTS center_card_log (card_id TEXT NOT NULL, counter BIGINT NOT NULL,
            digest TEXT NOT NULL, kind TEXT NOT NULL, transaction_id TEXT NOT NULL, amount_minor BIGINT NOT NULL,
            counterpart TEXT NOT NULL, time_unix_s BIGINT NOT NULL, balance_after_minor BIGINT NOT NULL,
            collected_at BIGINT NOT NULL, PRIMARY KEY (card_id, counter, digest))",
            // A difference stays open until an operator resolves it; the
            // same difference found again is the same row.
            "CREATE TABLE IF NOT EXISTS center_audit_differences (id TEXT PRIMARY KEY, card_id TEXT NOT NULL,
            kind TEXT NOT NULL, counter BIGINT NOT NULL, transaction_id TEXT NOT NULL, detail TEXT NOT NULL,
            found_at BIGINT NOT NULL, status TEXT NOT NULL, resolved_by TEXT, resolved_at BIGINT, note TEXT,
            UNIQUE (card_id, kind, counter, transaction_id))",
            "CREATE INDEX IF NOT EXISTS center_audit_open ON center_audit_differences (status, found_at)",
        ],
    ),
    (
        12,
        "who rejected a member application, when and why",
        &[
            // One row per application an operator rejected, written with the
            // application's status in one transaction.
            "CREATE TABLE IF NOT EXISTS center_application_decisions (application_id TEXT PRIMARY KEY,
            decided_by TEXT NOT NULL, decided_at BIGINT NOT NULL, note TEXT NOT NULL)",
        ],
    ),
    (
        13,
        "the console's operators, their sessions, and the trail of their changes",
        &[
            // An operator's password: Argon2id (m = 19 MiB, t = 2, p = 1)
            // of it under its own salt, both hex.
            "CREATE TABLE IF NOT EXISTS center_operators (name TEXT PRIMARY KEY, role TEXT NOT NULL,
            salt TEXT NOT NULL, hash TEXT NOT NULL, created_at BIGINT NOT NULL, disabled_at BIGINT)",
            // A session is found by the SHA-256 of its token; the token
            // itself is only in the operator's cookie.
            "CREATE TABLE IF NOT EXISTS center_console_sessions (digest TEXT PRIMARY KEY, operator TEXT NOT NULL,
            role TEXT NOT NULL, certificate TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)",
            // Append-only (see `trail_guards`); each row chains to the one
            // before it by digest.
            "CREATE TABLE IF NOT EXISTS center_operator_trail (seq BIGINT PRIMARY KEY, at BIGINT NOT NULL,
            operator TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,
            before_json TEXT NOT NULL, after_json TEXT NOT NULL, previous TEXT NOT NULL, digest TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS center_operator_trail_subject ON center_operator_trail (subject, seq)",
        ],
    ),
    (
        14,
        "failed console logins, by operator",
        &[
            // Failures since `first_at` (a window); `locked_until` once
            // there were too many in one window.
            "CREATE TABLE IF NOT EXISTS center_login_failures (operator TEXT PRIMARY KEY, failures BIGINT NOT NULL,
            first_at BIGINT NOT NULL, locked_until BIGINT NOT NULL)",
        ],
    ),
    (
        15,
        "when a funding's value was issued",
        &[
            // The column `issued_at` (added first, if missing: see
            // `migrate`) is set once, when the value reaches the card (a
            // capture later does not move it): the day statistics count
            // it on. Rows issued before: their last change, the best there
            // is.
            "UPDATE center_fundings SET issued_at = updated_at
            WHERE issued_at IS NULL AND status IN ('issued', 'captured')",
        ],
    ),
    (
        16,
        "bank deposit tokens, the sessions that store and redeem them, and the provider's register",
        &[
            // One row per token from its request on; `sealed` (hex) once
            // issued. The reference is what the deposit quotes; the STORE
            // and REDEEM transaction ids are fixed at the request.
            "CREATE TABLE IF NOT EXISTS center_tokens (id TEXT PRIMARY KEY, member TEXT NOT NULL,
            request_id TEXT NOT NULL, card_id TEXT NOT NULL, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL,
            status TEXT NOT NULL, reference TEXT NOT NULL, refund_account TEXT NOT NULL, card_ref TEXT NOT NULL,
            awaiting_until BIGINT NOT NULL, store_tx TEXT NOT NULL, redeem_tx TEXT NOT NULL, entry_key TEXT,
            deposited_on TEXT, key_version BIGINT, expires_at BIGINT, sealed TEXT, stored_counter BIGINT,
            redeemed_counter BIGINT, redeem_sent_at BIGINT, issued_at BIGINT, redeemed_at BIGINT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL)",
            "CREATE UNIQUE INDEX IF NOT EXISTS center_tokens_request ON center_tokens (member, request_id)",
            "CREATE UNIQUE INDEX IF NOT EXISTS center_tokens_reference ON center_tokens (reference)",
            "CREATE INDEX IF NOT EXISTS center_tokens_card ON center_tokens (card_id, status)",
            "CREATE INDEX IF NOT EXISTS center_tokens_awaiting ON center_tokens (status, awaiting_until)",
            // The statistics count tokens by the day they were issued or
            // redeemed.
            "CREATE INDEX IF NOT EXISTS center_tokens_issued ON center_tokens (currency, issued_at)",
            "CREATE INDEX IF NOT EXISTS center_tokens_redeemed ON center_tokens (currency, redeemed_at)",
            "CREATE TABLE IF NOT EXISTS center_token_sessions (id TEXT PRIMARY KEY, card_id TEXT NOT NULL,
            record TEXT NOT NULL, version BIGINT NOT NULL, created_at BIGINT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS center_token_sessions_created ON center_token_sessions (created_at)",
            // The credit service provider's register: each token it
            // honoured, once, with the transaction that redeemed it.
            "CREATE TABLE IF NOT EXISTS center_token_redemptions (token_id TEXT PRIMARY KEY, tx TEXT NOT NULL,
            key_version BIGINT NOT NULL, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL,
            redeemed_at BIGINT NOT NULL)",
        ],
    ),
    (
        17,
        "paybacks of expired bank deposit tokens; settlements paid by a token",
        &[
            // Clearing runs find the tokens past their expiry.
            "CREATE INDEX IF NOT EXISTS center_tokens_expiring ON center_tokens (status, expires_at)",
            // One row a payback: a clearing run's bank file line paying an
            // expired token's value to its refund account.
            "CREATE TABLE IF NOT EXISTS center_token_paybacks (id TEXT PRIMARY KEY, token_id TEXT NOT NULL,
            run_id TEXT NOT NULL, amount_minor BIGINT NOT NULL, currency TEXT NOT NULL, payee_account TEXT NOT NULL,
            bank_ref TEXT NOT NULL UNIQUE, status TEXT NOT NULL, reason TEXT, created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL, UNIQUE (run_id, token_id))",
            "CREATE INDEX IF NOT EXISTS center_token_paybacks_token ON center_token_paybacks (token_id, created_at)",
            // The abandoned sweep also ends a settlement left waiting for a
            // token's redemption (`paying_by_token`).
            "CREATE INDEX IF NOT EXISTS center_settlements_unsealed ON center_settlements (created_at)
            WHERE phase IN ('authenticating', 'reading_balance', 'paying_by_token')",
            "DROP INDEX IF EXISTS center_settlements_opening",
        ],
    ),
];

/// The newest version this build knows.
pub(crate) const NEWEST: i64 = 17;

const _: () = assert!(MIGRATIONS[MIGRATIONS.len() - 1].0 == NEWEST);

/// Brings the schema up to date (see the module doc).
pub(crate) async fn migrate(pool: &AnyPool, sqlite: bool) -> Result<(), DbError> {
    let mut tx = pool.begin_with(if sqlite { "BEGIN IMMEDIATE" } else { "BEGIN" }).await?;
    if !sqlite {
        // Any fixed number: it names "the kessai center's migration" among
        // advisory locks (the ledger's is another).
        sqlx::query("SELECT pg_advisory_xact_lock(417572027)").execute(&mut *tx).await?;
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS kessai_center_schema (version BIGINT NOT NULL PRIMARY KEY, description TEXT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let current: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM kessai_center_schema")
        .fetch_one(&mut *tx)
        .await?;
    if current > NEWEST {
        return Err(DbError::SchemaTooNew { found: current, known: NEWEST });
    }
    if current < 1 {
        for statement in BASELINE {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        add_delivered_column(&mut tx, sqlite).await?;
        add_column(&mut tx, sqlite, "center_settlements", "refunded_minor BIGINT NOT NULL DEFAULT 0").await?;
        add_column(&mut tx, sqlite, "center_charges", "decreased_minor BIGINT NOT NULL DEFAULT 0").await?;
        add_column(&mut tx, sqlite, "center_charges", "purpose TEXT NOT NULL DEFAULT 'charge'").await?;
        record(&mut tx, 1, "registry, settlements, value updates, owed items, idempotency").await?;
    }
    for (version, description, statements) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        if *version == 15 {
            add_column(&mut tx, sqlite, "center_fundings", "issued_at BIGINT").await?;
        }
        if *version == 17 {
            // Where an operator said to pay the token back (a bank
            // account with its holder), when not its refund account.
            add_column(&mut tx, sqlite, "center_tokens", "payback_account TEXT").await?;
            // The settlement whose bill the cardholder chose the token to
            // pay (its redemption completes it while it waits).
            add_column(&mut tx, sqlite, "center_tokens", "chosen_by TEXT").await?;
            // The refund account's holder the member gave, if any.
            add_column(&mut tx, sqlite, "center_tokens", "refund_holder TEXT").await?;
        }
        for statement in *statements {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        if *version == 8 {
            open_payables(&mut tx, sqlite).await?;
        }
        if *version == 13 {
            trail_guards(&mut tx, sqlite).await?;
        }
        record(&mut tx, *version, description).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Schema v13: the database itself refuses to change or remove a row of
/// the operator trail, whoever asks.
async fn trail_guards(conn: &mut AnyConnection, sqlite: bool) -> Result<(), DbError> {
    let statements: &[&str] = if sqlite {
        &[
            "CREATE TRIGGER IF NOT EXISTS center_operator_trail_no_update BEFORE UPDATE ON center_operator_trail
             BEGIN SELECT RAISE(ABORT, 'the operator trail is append-only'); END",
            "CREATE TRIGGER IF NOT EXISTS center_operator_trail_no_delete BEFORE DELETE ON center_operator_trail
             BEGIN SELECT RAISE(ABORT, 'the operator trail is append-only'); END",
        ]
    } else {
        &[
            "CREATE OR REPLACE FUNCTION center_operator_trail_append_only() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'the operator trail is append-only'; END $$",
            "CREATE OR REPLACE TRIGGER center_operator_trail_no_change BEFORE UPDATE OR DELETE OR TRUNCATE
             ON center_operator_trail FOR EACH STATEMENT EXECUTE FUNCTION center_operator_trail_append_only()",
        ]
    };
    for statement in statements {
        sqlx::query(*statement).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Schema v8: what stores were owed before payable items were recorded
/// becomes one item each (`opening_balance`, at 0, so the first run pays
/// it): the payable's posted credits less its posted and pending debits,
/// read from the ledger's tables in this transaction.
async fn open_payables(conn: &mut AnyConnection, sqlite: bool) -> Result<(), DbError> {
    let ledger_sql = if sqlite {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'accounts'"
    } else {
        "SELECT CAST(to_regclass('accounts') AS TEXT) AS name"
    };
    let ledger: Option<Option<String>> = sqlx::query_scalar(ledger_sql).fetch_optional(&mut *conn).await?;
    if ledger.flatten().is_none() {
        // No books yet: nothing was owed.
        return Ok(());
    }
    let stores: Vec<String> =
        sqlx::query_scalar("SELECT id FROM center_stores ORDER BY id").fetch_all(&mut *conn).await?;
    let currencies: Vec<String> = sqlx::query_scalar(
        "SELECT currency FROM center_cards UNION SELECT currency FROM center_prepaid_cards ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    if stores.is_empty() {
        return Ok(());
    }
    for store in &stores {
        let Ok(id) = kessai_core::ids::StoreId::parse(store) else { continue };
        for currency in &currencies {
            let Ok(c) = kessai_core::Currency::parse(currency) else { continue };
            let mut open: i64 = 0;
            for account in crate::books::store_payable_ids(&id, c) {
                let row: Option<(i64, i64, i64)> = sqlx::query_as(
                    "SELECT credits_posted_minor, debits_posted_minor, debits_pending_minor FROM accounts WHERE id = $1",
                )
                .bind(account.to_be_bytes().to_vec())
                .fetch_optional(&mut *conn)
                .await?;
                if let Some((credits, debits, pending)) = row {
                    open = open.saturating_add(credits).saturating_sub(debits).saturating_sub(pending);
                }
            }
            if open != 0 {
                sqlx::query(
                    "INSERT INTO center_payable_items (id, store, currency, kind, reference, amount_minor, at)
                     SELECT $1, $2, $3, 'opening_balance', 'before clearing', $4, 0
                     WHERE NOT EXISTS (SELECT 1 FROM center_payable_items WHERE id = $1 AND store = $2)",
                )
                .bind(format!("opening:{store}/{currency}"))
                .bind(store.clone())
                .bind(currency.clone())
                .bind(open)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

async fn record(conn: &mut AnyConnection, version: i64, description: &str) -> Result<(), DbError> {
    sqlx::query("INSERT INTO kessai_center_schema (version, description) VALUES ($1, $2)")
        .bind(version)
        .bind(description.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn add_column(conn: &mut AnyConnection, sqlite: bool, table: &str, column: &str) -> Result<(), DbError> {
    let add = if sqlite {
        format!("ALTER TABLE {table} ADD COLUMN {column}")
    } else {
        format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}")
    };
    // `table` and `column` are constants of this module, never input.
    match sqlx::query(sqlx::AssertSqlSafe(add)).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        // SQLite has no IF NOT EXISTS for columns: a second start meets it.
        Err(sqlx::Error::Database(e)) if sqlite && e.message().contains("duplicate column") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Schema v2: `delivered` (1 once the store's receipt is stored), so the
/// delivery sweep finds every undelivered completion however many
/// settlements there are. Added to databases made before it. Indexed only
/// where the sweep looks (completed, undelivered), so a step before
/// completion changes no entry of it; this replaces the index on (phase,
/// delivered, updated_at), which every step rewrote.
async fn add_delivered_column(conn: &mut AnyConnection, sqlite: bool) -> Result<(), DbError> {
    add_column(conn, sqlite, "center_settlements", "delivered BIGINT NOT NULL DEFAULT 0").await?;
    for statement in [
        "CREATE INDEX IF NOT EXISTS center_settlements_undelivered ON center_settlements (updated_at, id)
         WHERE phase = 'completed' AND delivered = 0",
        "DROP INDEX IF EXISTS center_settlements_delivery",
        "DROP INDEX IF EXISTS center_settlements_card",
    ] {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    Ok(())
}

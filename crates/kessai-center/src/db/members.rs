//! Members (#12): applications, the operator's outbox of activation
//! letters, and the member ledger.

use super::*;

/// An application as received (FIG. 3–4 steps ①–⑤).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRow {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub contact: String,
    pub status: String,
    pub created_at: Timestamp,
}

/// A letter of the outbox (step ⑥): the member number and activation code,
/// as the operator prints or mails it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterRow {
    pub id: String,
    pub member: String,
    pub kind: String,
    /// The letter's text, until the operator marks it sent.
    pub letter: Option<String>,
    pub code_hash: String,
    pub expires_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub used_at: Option<Timestamp>,
}

/// A member as entered in the ledger (step ⑦).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub member: String,
    pub kind: String,
    /// The declared details, as JSON.
    pub details: String,
    pub kid: String,
    /// The verification key, base64url.
    pub public_key: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub status: String,
    pub registration_jti: String,
}

/// Why a member could not be entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entered {
    Done,
    /// The activation code was used meanwhile (or expired).
    CodeGone,
    /// This registration (its `jti`), or this key, is entered already.
    Duplicate,
}

fn member_row(r: &dyn Columns) -> Result<MemberRow, DbError> {
    Ok(MemberRow {
        member: r.required_text("member")?,
        kind: r.required_text("kind")?,
        details: r.required_text("details")?,
        kid: r.required_text("kid")?,
        public_key: r.required_text("public_key")?,
        not_before: Timestamp::from_unix_s(to_u64(r.required_int("not_before")?)?),
        not_after: Timestamp::from_unix_s(to_u64(r.required_int("not_after")?)?),
        status: r.required_text("status")?,
        registration_jti: r.required_text("registration_jti")?,
    })
}

const LETTER_COLUMNS: &str = "id, member, kind, letter, code_hash, expires_at, sent_at, used_at";

fn letter_row(r: &dyn Columns) -> Result<LetterRow, DbError> {
    let at = |name: &str| -> Result<Option<Timestamp>, DbError> {
        r.int(name)?.map(|s| Ok(Timestamp::from_unix_s(to_u64(s)?))).transpose()
    };
    Ok(LetterRow {
        id: r.required_text("id")?,
        member: r.required_text("member")?,
        kind: r.required_text("kind")?,
        letter: r.text("letter")?,
        code_hash: r.required_text("code_hash")?,
        expires_at: Timestamp::from_unix_s(to_u64(r.required_int("expires_at")?)?),
        sent_at: at("sent_at")?,
        used_at: at("used_at")?,
    })
}

fn application_row(r: &sqlx::any::AnyRow) -> Result<ApplicationRow, DbError> {
    Ok(ApplicationRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        contact: r.try_get("contact")?,
        status: r.try_get("status")?,
        created_at: Timestamp::from_unix_s(to_u64(r.try_get("created_at")?)?),
    })
}

impl CenterDb {
    pub async fn insert_application(&self, a: &ApplicationRow) -> Result<(), DbError> {
        let insert = Stmt::new(
            "INSERT INTO center_member_applications (id, kind, name, contact, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(a.id.clone())
        .bind(a.kind.clone())
        .bind(a.name.clone())
        .bind(a.contact.clone())
        .bind(a.status.clone())
        .bind(to_i64(a.created_at.unix_s())?);
        self.execute(insert).await.map(|_| ())
    }

    /// Applications in `status`, oldest first, at most `limit`.
    pub async fn applications(&self, status: &str, limit: i64) -> Result<Vec<ApplicationRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, kind, name, contact, status, created_at FROM center_member_applications
             WHERE status = $1 ORDER BY created_at, id LIMIT $2",
        )
        .bind(status.to_owned())
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ApplicationRow {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    name: r.try_get("name")?,
                    contact: r.try_get("contact")?,
                    status: r.try_get("status")?,
                    created_at: Timestamp::from_unix_s(to_u64(r.try_get("created_at")?)?),
                })
            })
            .collect()
    }

    pub async fn application(&self, id: &str) -> Result<Option<ApplicationRow>, DbError> {
        let row = sqlx::query(
            "SELECT id, kind, name, contact, status, created_at FROM center_member_applications WHERE id = $1",
        )
        .bind(id.to_owned())
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.as_ref().map(application_row).transpose()
    }

    /// Approves a received application and puts its letter in the outbox,
    /// in one transaction. `false` if it was no longer `received`.
    pub async fn approve_application(
        &self,
        id: &str,
        letter: &LetterRow,
        now: Timestamp,
        trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let approve = Stmt::new(
            "UPDATE center_member_applications SET status = 'approved' WHERE id = $1 AND status = 'received'",
        )
        .bind(id.to_owned());
        let insert = Stmt::new(
            "INSERT INTO center_outbox (id, application_id, member, kind, code_hash, letter, expires_at, sent_at,
             used_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8)",
        )
        .bind(letter.id.clone())
        .bind(id.to_owned())
        .bind(letter.member.clone())
        .bind(letter.kind.clone())
        .bind(letter.code_hash.clone())
        .bind(letter.letter.clone())
        .bind(to_i64(letter.expires_at.unix_s())?)
        .bind(to_i64(now.unix_s())?);
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(approve).await? != 1 {
                    return Ok(false);
                }
                conn.execute(insert).await?;
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Rejects a received application, recording who, when and why.
    /// `false` if it was no longer `received` (approved or rejected).
    pub async fn reject_application(
        &self,
        id: &str,
        by: &str,
        note: &str,
        now: Timestamp,
        trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let reject = Stmt::new(
            "UPDATE center_member_applications SET status = 'rejected' WHERE id = $1 AND status = 'received'",
        )
        .bind(id.to_owned());
        let record = Stmt::new(
            "INSERT INTO center_application_decisions (application_id, decided_by, decided_at, note)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_owned())
        .bind(by.to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(note.to_owned());
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(reject).await? != 1 {
                    return Ok(false);
                }
                conn.execute(record).await?;
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Letters not yet marked sent, oldest first.
    pub async fn unsent_letters(&self, limit: i64) -> Result<Vec<LetterRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LETTER_COLUMNS} FROM center_outbox WHERE sent_at IS NULL ORDER BY created_at, id LIMIT $1"
        )))
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| letter_row(r)).collect()
    }

    /// The operator sent the letter: its text (with the code) is wiped.
    /// `false` if there is no such unsent letter.
    pub async fn mark_letter_sent(&self, id: &str, now: Timestamp, trail: TrailEntry) -> Result<bool, DbError> {
        let sent = Stmt::new("UPDATE center_outbox SET sent_at = $1, letter = NULL WHERE id = $2 AND sent_at IS NULL")
            .bind(to_i64(now.unix_s())?)
            .bind(id.to_owned());
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(sent).await? != 1 {
                    return Ok(false);
                }
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The letter of member number `member` whose code hashes to
    /// `code_hash`, if any.
    pub async fn letter_with(&self, member: &str, code_hash: &str) -> Result<Option<LetterRow>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LETTER_COLUMNS} FROM center_outbox WHERE member = $1 AND code_hash = $2"
        )))
        .bind(member.to_owned())
        .bind(code_hash.to_owned())
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.map(|r| letter_row(&r)).transpose()
    }

    /// The letters of member number `member`, newest first.
    pub async fn letters_of(&self, member: &str) -> Result<Vec<LetterRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LETTER_COLUMNS} FROM center_outbox WHERE member = $1 ORDER BY created_at DESC, id"
        )))
        .bind(member.to_owned())
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| letter_row(r)).collect()
    }

    /// Enters a member and uses its activation code (letter `letter`), in
    /// one transaction: the code only if still unused and unexpired at
    /// `now`; a member whose key was revoked is entered again with its new
    /// key; a key ever retired is never entered again.
    pub async fn enter_member(
        &self,
        m: &MemberRow,
        letter: &str,
        store: Option<(&StoreRecord, &PublicKey, Validity)>,
        now: Timestamp,
    ) -> Result<Entered, DbError> {
        // A store member is also a store, whose bills its key signs.
        let store_statements = match store {
            Some((record, key, window)) => {
                vec![
                    super::registry::store_query(record, now)?,
                    super::registry::store_key_query(&record.id, key, window)?,
                ]
            }
            None => Vec::new(),
        };
        let is_store = !store_statements.is_empty();
        let use_code = Stmt::new(
            "UPDATE center_outbox SET used_at = $1 WHERE id = $2 AND member = $3 AND used_at IS NULL
             AND expires_at >= $1",
        )
        .bind(to_i64(now.unix_s())?)
        .bind(letter.to_owned())
        .bind(m.member.clone());
        let retired = Stmt::new("SELECT kid FROM center_member_retired_keys WHERE kid = $1").bind(m.kid.clone());
        let insert = Stmt::new(
            "INSERT INTO center_members (member, kind, details, kid, public_key, not_before, not_after, status,
             registration_jti, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (member) DO UPDATE SET details = $3, kid = $4, public_key = $5, not_before = $6,
             not_after = $7, status = $8, registration_jti = $9 WHERE center_members.status = 'revoked'",
        )
        .bind(m.member.clone())
        .bind(m.kind.clone())
        .bind(m.details.clone())
        .bind(m.kid.clone())
        .bind(m.public_key.clone())
        .bind(to_i64(m.not_before.unix_s())?)
        .bind(to_i64(m.not_after.unix_s())?)
        .bind(m.status.clone())
        .bind(m.registration_jti.clone())
        .bind(to_i64(now.unix_s())?);
        let entered = self
            .write(move |mut conn| {
                Box::pin(async move {
                    if conn.execute(use_code).await? != 1 {
                        return Ok(Entered::CodeGone);
                    }
                    if conn.fetch_optional(retired, |r| r.required_text("kid")).await?.is_some()
                        || conn.execute(insert).await? != 1
                    {
                        // The code was used and nobody entered: undone with
                        // the transaction.
                        return Err(DbError::Conflict);
                    }
                    for statement in store_statements {
                        conn.execute(statement).await?;
                    }
                    Ok(Entered::Done)
                })
            })
            .await;
        if is_store && matches!(entered, Ok(Entered::Done)) {
            self.forget_store_keys();
        }
        match entered {
            Err(DbError::Conflict) => Ok(Entered::Duplicate),
            Err(e) if e.is_unique_violation() => Ok(Entered::Duplicate),
            other => other,
        }
    }

    pub async fn member(&self, member: &str) -> Result<Option<MemberRow>, DbError> {
        // On every prepaid payment's and instruction's path: on SQLite a
        // read on the calling thread.
        self.read_one(
            "SELECT member, kind, details, kid, public_key, not_before, not_after, status, registration_jti
             FROM center_members WHERE member = $1",
            &[member],
            member_row,
        )
        .await
    }

    /// Links card `card` to `member` (or unlinks it), and whether its
    /// purchases need the member's payment instruction. `false` if there
    /// is no such card, or it is not active (lost or blocked: its link is
    /// kept as it was).
    /// The trail row records the link before and after; `now` is its time.
    pub async fn link_card_member(
        &self,
        card: &CardId,
        member: Option<&str>,
        required: bool,
        now: Timestamp,
        mut trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let before =
            Stmt::new("SELECT member, instruction_required FROM center_cards WHERE id = $1").bind(card.to_string());
        // Only an active card's link changes: a lost or blocked card keeps
        // the member it had when it was reported, which is whom its value
        // may go to (`Center::replace_card`).
        let link = Stmt::new(
            "UPDATE center_cards SET member = $1, instruction_required = $2 WHERE id = $3 AND status = 'active'",
        )
        .bind(member.map(str::to_owned))
        .bind(i64::from(required))
        .bind(card.to_string());
        self.write(move |mut conn| {
            Box::pin(async move {
                let Some(was) = conn.fetch_optional(before, linked_row).await? else { return Ok(false) };
                if conn.execute(link).await? != 1 {
                    return Ok(false);
                }
                trail.before = was.to_string();
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The IC cards linked to `member` (at most `MAX_LIST`), and whether
    /// each one's purchases need the member's instruction.
    pub async fn cards_of_member(&self, member: &str) -> Result<Vec<(CardId, bool)>, DbError> {
        let rows =
            sqlx::query("SELECT id, instruction_required FROM center_cards WHERE member = $1 ORDER BY id LIMIT $2")
                .bind(member.to_owned())
                .bind(MAX_LIST)
                .fetch_all(&mut *self.read().await?)
                .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let required: i64 = r.try_get("instruction_required")?;
                Ok((CardId::parse(&id).map_err(corrupt)?, required != 0))
            })
            .collect()
    }

    /// The member a card belongs to, and whether its purchases need the
    /// member's instruction.
    pub async fn card_member(&self, card: &CardId) -> Result<Option<(String, bool)>, DbError> {
        // On every purchase's balance step: on SQLite read on the calling
        // thread (`read_one`).
        const CARD_MEMBER_SQL: &str = "SELECT member, instruction_required FROM center_cards WHERE id = $1";
        let decode = |r: &dyn super::Columns| {
            let member = r.text("member")?;
            let required = r.required_int("instruction_required")?;
            Ok(member.map(|m| (m, required != 0)))
        };
        Ok(self.read_one(CARD_MEMBER_SQL, &[&card.to_string()], decode).await?.flatten())
    }

    /// The operator revokes a member's key (reported lost): the member is
    /// `revoked`, its key retired, and a new letter (a new activation code)
    /// waits in the outbox, in one transaction. `false` if the member was
    /// not active.
    pub async fn revoke_member(
        &self,
        member: &str,
        reason: &str,
        letter: &LetterRow,
        now: Timestamp,
        trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let now_i = to_i64(now.unix_s())?;
        let revoke = Stmt::new("UPDATE center_members SET status = 'revoked' WHERE member = $1 AND status = 'active'")
            .bind(member.to_owned());
        let retire = Stmt::new(
            "INSERT INTO center_member_retired_keys (kid, member, public_key, reason, retired_at)
             SELECT kid, member, public_key, $1, $2 FROM center_members WHERE member = $3",
        )
        .bind(reason.to_owned())
        .bind(now_i)
        .bind(member.to_owned());
        // A store member's key signs its bills: those are refused from now on.
        let store_key = Stmt::new(
            "UPDATE center_store_keys SET revoked = 1
             WHERE kid = (SELECT kid FROM center_members WHERE member = $1) AND store = $1",
        )
        .bind(member.to_owned());
        // An earlier letter not used yet is void from now on.
        let void = Stmt::new("UPDATE center_outbox SET used_at = $1 WHERE member = $2 AND used_at IS NULL")
            .bind(now_i)
            .bind(member.to_owned());
        let insert = Stmt::new(
            "INSERT INTO center_outbox (id, application_id, member, kind, code_hash, letter, expires_at, sent_at,
             used_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8)",
        )
        .bind(letter.id.clone())
        .bind(format!("revoked:{member}"))
        .bind(member.to_owned())
        .bind(letter.kind.clone())
        .bind(letter.code_hash.clone())
        .bind(letter.letter.clone())
        .bind(to_i64(letter.expires_at.unix_s())?)
        .bind(now_i);
        let done = self
            .write(move |mut conn| {
                Box::pin(async move {
                    if conn.execute(revoke).await? != 1 {
                        return Ok(false);
                    }
                    conn.execute(retire).await?;
                    conn.execute(store_key).await?;
                    conn.execute(void).await?;
                    conn.execute(insert).await?;
                    append_trail(&mut conn, &trail, now).await?;
                    Ok(true)
                })
            })
            .await;
        self.forget_store_keys();
        done
    }

    /// A member's key `old_kid` replaced by the key of `new` (the member's
    /// row as it will stand), with `old_kid` retired, in one transaction.
    /// `false` if `old_kid` is not the member's active key any more (a
    /// replay, a race) or the new key was ever retired.
    pub async fn replace_member_key(
        &self,
        new: &MemberRow,
        old_kid: &str,
        store_key: Option<(&PublicKey, Validity)>,
        now: Timestamp,
    ) -> Result<bool, DbError> {
        let now_i = to_i64(now.unix_s())?;
        // A store member's bills follow its key: the new one added, the old
        // one revoked, in the same transaction.
        let mut store_statements = Vec::new();
        if let Some((key, window)) = store_key {
            let id = StoreId::parse(&new.member).map_err(|e| DbError::Corrupt(e.to_string()))?;
            store_statements.push(super::registry::store_key_query(&id, key, window)?);
            store_statements.push(
                Stmt::new("UPDATE center_store_keys SET revoked = 1 WHERE kid = $1 AND store = $2")
                    .bind(old_kid.to_owned())
                    .bind(new.member.clone()),
            );
        }
        let is_store = !store_statements.is_empty();
        let retired = Stmt::new("SELECT kid FROM center_member_retired_keys WHERE kid = $1").bind(new.kid.clone());
        let retire = Stmt::new(
            "INSERT INTO center_member_retired_keys (kid, member, public_key, reason, retired_at)
             SELECT kid, member, public_key, 'replaced', $1 FROM center_members
             WHERE member = $2 AND kid = $3 AND status = 'active'",
        )
        .bind(now_i)
        .bind(new.member.clone())
        .bind(old_kid.to_owned());
        let update = Stmt::new(
            "UPDATE center_members SET kid = $1, public_key = $2, not_before = $3, not_after = $4
             WHERE member = $5 AND kid = $6 AND status = 'active'",
        )
        .bind(new.kid.clone())
        .bind(new.public_key.clone())
        .bind(to_i64(new.not_before.unix_s())?)
        .bind(to_i64(new.not_after.unix_s())?)
        .bind(new.member.clone())
        .bind(old_kid.to_owned());
        let done = self
            .write(move |mut conn| {
                Box::pin(async move {
                    if conn.fetch_optional(retired, |r| r.required_text("kid")).await?.is_some()
                        || conn.execute(retire).await? != 1
                    {
                        return Ok(false);
                    }
                    if conn.execute(update).await? != 1 {
                        return Err(DbError::Conflict);
                    }
                    for statement in store_statements {
                        conn.execute(statement).await?;
                    }
                    Ok(true)
                })
            })
            .await;
        if is_store {
            self.forget_store_keys();
        }
        match done {
            Err(DbError::Conflict) => Ok(false),
            Err(e) if e.is_unique_violation() => Ok(false),
            other => other,
        }
    }
}

/// A card's member link as a trail row's JSON.
fn linked_row(r: &dyn Columns) -> Result<serde_json::Value, DbError> {
    let member = r.text("member")?;
    let required = r.int("instruction_required")?.unwrap_or(1) != 0;
    Ok(serde_json::json!({ "member": member, "instruction_required": required }))
}

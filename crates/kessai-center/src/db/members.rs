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
    pub async fn approve_application(&self, id: &str, letter: &LetterRow, now: Timestamp) -> Result<bool, DbError> {
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
    pub async fn mark_letter_sent(&self, id: &str, now: Timestamp) -> Result<bool, DbError> {
        let sent = Stmt::new("UPDATE center_outbox SET sent_at = $1, letter = NULL WHERE id = $2 AND sent_at IS NULL")
            .bind(to_i64(now.unix_s())?)
            .bind(id.to_owned());
        Ok(self.execute(sent).await? == 1)
    }

    /// The letter that gave member number `member`.
    pub async fn letter_for(&self, member: &str) -> Result<Option<LetterRow>, DbError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {LETTER_COLUMNS} FROM center_outbox WHERE member = $1")))
                .bind(member.to_owned())
                .fetch_optional(&mut *self.read().await?)
                .await?;
        row.map(|r| letter_row(&r)).transpose()
    }

    /// Enters a member and uses its activation code, in one transaction:
    /// the code only if still unused and unexpired at `now`.
    pub async fn enter_member(&self, m: &MemberRow, now: Timestamp) -> Result<Entered, DbError> {
        let use_code = Stmt::new(
            "UPDATE center_outbox SET used_at = $1 WHERE member = $2 AND used_at IS NULL AND expires_at >= $1",
        )
        .bind(to_i64(now.unix_s())?)
        .bind(m.member.clone());
        let insert = Stmt::new(
            "INSERT INTO center_members (member, kind, details, kid, public_key, not_before, not_after, status,
             registration_jti, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
                    conn.execute(insert).await?;
                    Ok(Entered::Done)
                })
            })
            .await;
        match entered {
            Err(e) if e.is_unique_violation() => Ok(Entered::Duplicate),
            other => other,
        }
    }

    pub async fn member(&self, member: &str) -> Result<Option<MemberRow>, DbError> {
        let row = sqlx::query(
            "SELECT member, kind, details, kid, public_key, not_before, not_after, status, registration_jti
             FROM center_members WHERE member = $1",
        )
        .bind(member.to_owned())
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.map(|r| {
            Ok(MemberRow {
                member: r.try_get("member")?,
                kind: r.try_get("kind")?,
                details: r.try_get("details")?,
                kid: r.try_get("kid")?,
                public_key: r.try_get("public_key")?,
                not_before: Timestamp::from_unix_s(to_u64(r.try_get("not_before")?)?),
                not_after: Timestamp::from_unix_s(to_u64(r.try_get("not_after")?)?),
                status: r.try_get("status")?,
                registration_jti: r.try_get("registration_jti")?,
            })
        })
        .transpose()
    }

    /// Links card `card` to `member` (or unlinks it), and whether its
    /// purchases need the member's payment instruction. `false` if there
    /// is no such card.
    pub async fn link_card_member(&self, card: &CardId, member: Option<&str>, required: bool) -> Result<bool, DbError> {
        let link = Stmt::new("UPDATE center_cards SET member = $1, instruction_required = $2 WHERE id = $3")
            .bind(member.map(str::to_owned))
            .bind(i64::from(required))
            .bind(card.to_string());
        Ok(self.execute(link).await? == 1)
    }

    /// The member a card belongs to, and whether its purchases need the
    /// member's instruction.
    pub async fn card_member(&self, card: &CardId) -> Result<Option<(String, bool)>, DbError> {
        let row = sqlx::query("SELECT member, instruction_required FROM center_cards WHERE id = $1")
            .bind(card.to_string())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let member: Option<String> = row.try_get("member")?;
        let required: i64 = row.try_get("instruction_required")?;
        Ok(member.map(|m| (m, required != 0)))
    }
}

//! The operator's console (#22): operator accounts and their roles, login
//! sessions, and the trail of every change an operator made.
//!
//! The trail is append-only: the database refuses to update or delete a
//! row of it (a trigger), and each row carries the SHA-256 of the row
//! before it with its own fields, so a row removed or changed behind the
//! database's back breaks the chain that [`CenterDb::check_trail`] walks.
//! A change and its trail row are written in one transaction.

use kessai_core::digest::Sha256Digest;

use super::*;

/// An operator's role: what the console lets it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Works the queues: letters sent, cash counted, bank credits applied.
    Operator,
    /// Decides: approves and rejects applications, as well as what an
    /// operator does.
    Approver,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Approver];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may do what `needed` may.
    pub fn may(self, needed: Role) -> bool {
        self >= needed
    }
}

/// An operator account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub name: String,
    pub role: Role,
    /// The Argon2id salt and hash of its password.
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
    pub disabled: bool,
}

/// A login session, found by the digest of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub operator: String,
    pub role: Role,
    /// The client certificate's name it was opened under.
    pub certificate: String,
    pub expires_at: Timestamp,
}

/// One change an operator made: who, what, on what, before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailEntry {
    pub operator: String,
    /// The role it acted in (`api` for the admin API, which has no login).
    pub role: String,
    pub action: String,
    /// What was changed (an application id, a card id, …).
    pub subject: String,
    /// JSON of the part that changed, before and after; `null` for none.
    pub before: String,
    pub after: String,
}

/// A row of the trail as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailRow {
    pub seq: i64,
    pub at: Timestamp,
    pub entry: TrailEntry,
    pub digest: String,
}

/// The trail's first row chains to this.
const GENESIS: &str = "kessai-operator-trail";

/// The digest of a trail row: its fields after the digest before it.
fn trail_digest(previous: &str, seq: i64, at: Timestamp, e: &TrailEntry) -> String {
    let mut input = Vec::new();
    for field in [
        previous,
        &seq.to_string(),
        &at.unix_s().to_string(),
        &e.operator,
        &e.role,
        &e.action,
        &e.subject,
        &e.before,
        &e.after,
    ] {
        input.extend_from_slice(&(field.len() as u64).to_be_bytes());
        input.extend_from_slice(field.as_bytes());
    }
    hex::encode(Sha256Digest::of(&input).as_bytes())
}

fn trail_row(r: &dyn Columns) -> Result<TrailRow, DbError> {
    Ok(TrailRow {
        seq: r.required_int("seq")?,
        at: Timestamp::from_unix_s(u64::try_from(r.required_int("at")?).map_err(corrupt)?),
        entry: TrailEntry {
            operator: r.required_text("operator")?,
            role: r.required_text("role")?,
            action: r.required_text("action")?,
            subject: r.required_text("subject")?,
            before: r.required_text("before_json")?,
            after: r.required_text("after_json")?,
        },
        digest: r.required_text("digest")?,
    })
}

fn last_link(r: &dyn Columns) -> Result<(i64, String), DbError> {
    Ok((r.required_int("seq")?, r.required_text("digest")?))
}

/// Appends `entry` to the trail inside the transaction `conn`, after the
/// row before it (serialized on PostgreSQL by an advisory lock, on SQLite
/// by its one writer).
pub(crate) async fn append_trail(conn: &mut Exec<'_>, entry: &TrailEntry, now: Timestamp) -> Result<(), DbError> {
    if conn.is_postgres() {
        // Any fixed number: "the operator trail" among advisory locks.
        conn.execute(Stmt::new("SELECT pg_advisory_xact_lock(417572028)")).await?;
    }
    let last = conn
        .fetch_optional(Stmt::new("SELECT seq, digest FROM center_operator_trail ORDER BY seq DESC LIMIT 1"), last_link)
        .await?;
    let (seq, previous) = match last {
        Some((seq, digest)) => (seq + 1, digest),
        None => (1, GENESIS.to_owned()),
    };
    let digest = trail_digest(&previous, seq, now, entry);
    let insert = Stmt::new(
        "INSERT INTO center_operator_trail (seq, at, operator, role, action, subject, before_json, after_json,
         previous, digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(seq)
    .bind(to_i64(now.unix_s())?)
    .bind(entry.operator.clone())
    .bind(entry.role.clone())
    .bind(entry.action.clone())
    .bind(entry.subject.clone())
    .bind(entry.before.clone())
    .bind(entry.after.clone())
    .bind(previous)
    .bind(digest);
    conn.execute(insert).await?;
    Ok(())
}

fn operator_row(r: &dyn Columns) -> Result<OperatorRow, DbError> {
    let role = r.required_text("role")?;
    Ok(OperatorRow {
        name: r.required_text("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("unknown role {role:?}")))?,
        salt: hex::decode(r.required_text("salt")?).map_err(corrupt)?,
        hash: hex::decode(r.required_text("hash")?).map_err(corrupt)?,
        disabled: r.int("disabled_at")?.is_some(),
    })
}

fn session_row(r: &dyn Columns) -> Result<SessionRow, DbError> {
    let role = r.required_text("role")?;
    Ok(SessionRow {
        operator: r.required_text("operator")?,
        role: Role::parse(&role).ok_or_else(|| corrupt(format!("unknown role {role:?}")))?,
        certificate: r.required_text("certificate")?,
        expires_at: Timestamp::from_unix_s(u64::try_from(r.required_int("expires_at")?).map_err(corrupt)?),
    })
}

impl CenterDb {
    /// Adds operator `name`, or gives it a new role and password (enabled
    /// again), recording the change in the trail as done by `by`.
    pub async fn put_operator(&self, row: &OperatorRow, by: &str, now: Timestamp) -> Result<(), DbError> {
        let before = self.operator(&row.name).await?;
        let upsert = Stmt::new(
            "INSERT INTO center_operators (name, role, salt, hash, created_at, disabled_at)
             VALUES ($1, $2, $3, $4, $5, NULL)
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, salt = excluded.salt, hash = excluded.hash,
             disabled_at = NULL",
        )
        .bind(row.name.clone())
        .bind(row.role.as_str().to_owned())
        .bind(hex::encode(&row.salt))
        .bind(hex::encode(&row.hash))
        .bind(to_i64(now.unix_s())?);
        let entry = TrailEntry {
            operator: by.to_owned(),
            role: "cli".into(),
            action: "operator_put".into(),
            subject: row.name.clone(),
            before: before
                .map(|b| serde_json::json!({ "role": b.role.as_str(), "disabled": b.disabled }).to_string())
                .unwrap_or_else(|| "null".into()),
            after: serde_json::json!({ "role": row.role.as_str(), "disabled": false }).to_string(),
        };
        self.write(move |mut conn| {
            Box::pin(async move {
                conn.execute(upsert).await?;
                append_trail(&mut conn, &entry, now).await
            })
        })
        .await
    }

    /// Disables operator `name`'s login and ends its sessions, recording the
    /// change in the trail as done by `by`. `false` if there is no such
    /// enabled operator.
    pub async fn disable_operator(&self, name: &str, by: &str, now: Timestamp) -> Result<bool, DbError> {
        let disable = Stmt::new("UPDATE center_operators SET disabled_at = $1 WHERE name = $2 AND disabled_at IS NULL")
            .bind(to_i64(now.unix_s())?)
            .bind(name.to_owned());
        let end = Stmt::new("DELETE FROM center_console_sessions WHERE operator = $1").bind(name.to_owned());
        let entry = TrailEntry {
            operator: by.to_owned(),
            role: "cli".into(),
            action: "operator_disabled".into(),
            subject: name.to_owned(),
            before: serde_json::json!({ "disabled": false }).to_string(),
            after: serde_json::json!({ "disabled": true }).to_string(),
        };
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(disable).await? != 1 {
                    return Ok(false);
                }
                conn.execute(end).await?;
                append_trail(&mut conn, &entry, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Until when operator `name` may not log in (too many failed logins),
    /// if that is after `now`.
    pub async fn login_locked(&self, name: &str, now: Timestamp) -> Result<Option<Timestamp>, DbError> {
        let until: Option<i64> =
            sqlx::query_scalar("SELECT locked_until FROM center_login_failures WHERE operator = $1")
                .bind(name.to_owned())
                .fetch_optional(&mut *self.read().await?)
                .await?;
        let now = to_i64(now.unix_s())?;
        Ok(until.filter(|until| *until > now).map(|until| Timestamp::from_unix_s(until.unsigned_abs())))
    }

    /// Counts a login attempt of operator `name` before its password is
    /// checked, in one statement (attempts at once each count): attempts
    /// within `window_s` of the first add up; the `max`th locks the
    /// operator out for `lock_s` from now. The attempts counted so far in
    /// the window, this one included, and the lock's end if one holds.
    pub async fn login_attempt(
        &self,
        name: &str,
        now: Timestamp,
        (window_s, max, lock_s): (u64, i64, u64),
    ) -> Result<(i64, Option<Timestamp>), DbError> {
        let at = to_i64(now.unix_s())?;
        let until = to_i64(now.unix_s() + lock_s)?;
        let count = Stmt::new(
            "INSERT INTO center_login_failures (operator, failures, first_at, locked_until) VALUES ($1, 1, $2, 0)
             ON CONFLICT (operator) DO UPDATE SET
               failures = CASE WHEN center_login_failures.first_at < $3 THEN 1
                          ELSE center_login_failures.failures + 1 END,
               locked_until = CASE WHEN center_login_failures.first_at >= $3
                                    AND center_login_failures.failures + 1 = $4 THEN $5
                              ELSE center_login_failures.locked_until END,
               first_at = CASE WHEN center_login_failures.first_at < $3 THEN $2
                          ELSE center_login_failures.first_at END",
        )
        .bind(name.to_owned())
        .bind(at)
        .bind(at - to_i64(window_s)?)
        .bind(max)
        .bind(until);
        let read = Stmt::new("SELECT failures, locked_until FROM center_login_failures WHERE operator = $1")
            .bind(name.to_owned());
        let row = self
            .write(move |mut conn| {
                Box::pin(async move {
                    conn.execute(count).await?;
                    conn.fetch_optional(read, |r| Ok((r.required_int("failures")?, r.required_int("locked_until")?)))
                        .await
                })
            })
            .await?;
        let (attempts, locked) = row.unwrap_or((1, 0));
        Ok((attempts, (locked > at).then(|| Timestamp::from_unix_s(locked.unsigned_abs()))))
    }

    /// Forgets operator `name`'s failed logins (it logged in).
    pub async fn login_succeeded(&self, name: &str) -> Result<(), DbError> {
        let forget = Stmt::new("DELETE FROM center_login_failures WHERE operator = $1").bind(name.to_owned());
        self.execute(forget).await.map(drop)
    }

    /// Operator `name`'s account, if any.
    pub async fn operator(&self, name: &str) -> Result<Option<OperatorRow>, DbError> {
        let row = sqlx::query("SELECT name, role, salt, hash, disabled_at FROM center_operators WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        row.as_ref().map(|r| operator_row(r)).transpose()
    }

    /// Opens a session under the digest of its token.
    pub async fn open_session(&self, digest: &str, s: &SessionRow, now: Timestamp) -> Result<(), DbError> {
        let insert = Stmt::new(
            "INSERT INTO center_console_sessions (digest, operator, role, certificate, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(digest.to_owned())
        .bind(s.operator.clone())
        .bind(s.role.as_str().to_owned())
        .bind(s.certificate.clone())
        .bind(to_i64(now.unix_s())?)
        .bind(to_i64(s.expires_at.unix_s())?);
        self.execute(insert).await.map(drop)
    }

    /// The session whose token has digest `digest`, if it has not expired.
    pub async fn session(&self, digest: &str, now: Timestamp) -> Result<Option<SessionRow>, DbError> {
        // The role is the account's as it stands now: a role changed or an
        // account disabled takes effect on the next request.
        let row = sqlx::query(
            "SELECT s.operator AS operator, o.role AS role, s.certificate AS certificate, s.expires_at AS expires_at
             FROM center_console_sessions s JOIN center_operators o ON o.name = s.operator
             WHERE s.digest = $1 AND s.expires_at > $2 AND o.disabled_at IS NULL",
        )
        .bind(digest.to_owned())
        .bind(to_i64(now.unix_s())?)
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.as_ref().map(|r| session_row(r)).transpose()
    }

    /// Ends a session, and every session that has expired.
    pub async fn close_session(&self, digest: &str, now: Timestamp) -> Result<(), DbError> {
        let delete = Stmt::new("DELETE FROM center_console_sessions WHERE digest = $1 OR expires_at <= $2")
            .bind(digest.to_owned())
            .bind(to_i64(now.unix_s())?);
        self.execute(delete).await.map(drop)
    }

    /// Appends `entry` to the trail on its own (a change that wrote
    /// nothing else, or whose own write is elsewhere).
    pub async fn record_trail(&self, entry: TrailEntry, now: Timestamp) -> Result<(), DbError> {
        self.write(move |mut conn| Box::pin(async move { append_trail(&mut conn, &entry, now).await })).await
    }

    /// The trail, newest first: at most `limit` rows before `before` (a
    /// sequence number), optionally of one subject.
    pub async fn trail(
        &self,
        subject: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TrailRow>, DbError> {
        const COLUMNS: &str = "SELECT seq, at, operator, role, action, subject, before_json, after_json, digest
             FROM center_operator_trail";
        let before = before.unwrap_or(i64::MAX);
        let limit = limit.clamp(1, MAX_LIST);
        let mut conn = self.read().await?;
        let rows = match subject {
            Some(subject) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{COLUMNS} WHERE subject = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
                )))
                .bind(subject.to_owned())
                .bind(before)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!("{COLUMNS} WHERE seq < $1 ORDER BY seq DESC LIMIT $2")))
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await?
            }
        };
        rows.iter().map(|r| trail_row(r)).collect()
    }

    /// Walks the whole trail from its first row: `Ok(rows)` if every row's
    /// digest follows from the row before it, else the first sequence
    /// number that does not.
    pub async fn check_trail(&self) -> Result<Result<i64, i64>, DbError> {
        let rows = sqlx::query(
            "SELECT seq, at, operator, role, action, subject, before_json, after_json, previous, digest
             FROM center_operator_trail ORDER BY seq",
        )
        .fetch_all(&mut *self.read().await?)
        .await?;
        let mut previous = GENESIS.to_owned();
        let mut expected_seq = 1;
        for r in &rows {
            let row = trail_row(r)?;
            let stated: String = r.try_get("previous")?;
            if row.seq != expected_seq
                || stated != previous
                || trail_digest(&previous, row.seq, row.at, &row.entry) != row.digest
            {
                return Ok(Err(row.seq));
            }
            previous = row.digest;
            expected_seq += 1;
        }
        Ok(Ok(expected_seq - 1))
    }
}

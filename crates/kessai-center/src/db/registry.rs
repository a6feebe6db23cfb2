//! The registry: stores, their signing keys, and cards.

use super::*;
use kessai_core::profile::Profiles;

/// What a purchase's create reads: the store and the profiles it accepts,
/// the card, the highest counter of the card's log the center holds.
pub type PurchaseReads = (Option<(StoreRecord, Profiles)>, Option<CardRecord>, Option<u32>);

/// A store as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRecord {
    pub id: StoreId,
    pub name: DisplayText,
    /// The mall this store is a member of, if any.
    pub mall: Option<StoreId>,
    /// Where completions (SIG3) are delivered, over mutual TLS.
    pub notify_url: Option<String>,
    /// The name in the store's mutual-TLS client certificate.
    pub client_name: Option<String>,
    pub bank_account: Option<String>,
}

impl CenterDb {
    /// Adds or updates a store.
    pub async fn put_store(&self, s: &StoreRecord, now: Timestamp) -> Result<(), DbError> {
        self.put_store_with_keys(s, &[], now, None).await
    }

    /// Adds or updates a store and, in the same transaction, its signing
    /// keys: the store and its keys, or neither.
    pub async fn put_store_with_keys(
        &self,
        s: &StoreRecord,
        keys: &[(PublicKey, Validity)],
        now: Timestamp,
        trail: Option<TrailEntry>,
    ) -> Result<(), DbError> {
        let mut statements = vec![store_query(s, now)?];
        for (key, window) in keys {
            statements.push(store_key_query(&s.id, key, *window)?);
        }
        let done = self
            .write(move |mut conn| {
                Box::pin(async move {
                    for statement in statements {
                        conn.execute(statement).await?;
                    }
                    if let Some(trail) = &trail {
                        append_trail(&mut conn, trail, now).await?;
                    }
                    Ok(())
                })
            })
            .await;
        if !keys.is_empty() {
            self.forget_store_keys();
        }
        done
    }

    pub async fn store(&self, id: &StoreId) -> Result<Option<StoreRecord>, DbError> {
        self.read_one(
            "SELECT id AS s_id, name AS s_name, mall AS s_mall, notify_url AS s_notify_url,
             client_name AS s_client_name, bank_account AS s_bank_account FROM center_stores WHERE id = $1",
            &[id.as_str()],
            store_row,
        )
        .await
    }

    /// [`CenterDb::store`] and [`CenterDb::card`] in one statement.
    pub async fn store_and_card(
        &self,
        store: &StoreId,
        card: &CardId,
    ) -> Result<(Option<StoreRecord>, Option<CardRecord>), DbError> {
        let (store, card, _) = self.purchase_reads(store, card).await?;
        Ok((store.map(|(s, _)| s), card))
    }

    /// What a purchase's create reads, in one statement: the store with the
    /// purchase profiles it accepts, the card, and the highest counter of
    /// the card's log the center holds (what it may say it collected).
    pub async fn purchase_reads(&self, store: &StoreId, card: &CardId) -> Result<PurchaseReads, DbError> {
        let with_profiles = |row: &dyn Columns| Ok((store_row(row)?, profiles_column(row)?));
        let through =
            |row: &dyn Columns| row.int("c_log_through")?.map(|c| u32::try_from(c).map_err(corrupt)).transpose();
        let decode = |row: &dyn Columns| {
            Ok((present(row, "s_id", with_profiles)?, present(row, "c_id", card_row)?, through(row)?))
        };
        self.read_one(STORE_AND_CARD_SQL, &[store.as_str(), &card.to_string()], decode)
            .await?
            .ok_or_else(|| corrupt("a LEFT JOIN from one row answered none"))
    }

    /// The highest counter of `card`'s log the center holds.
    pub async fn collected_through(&self, card: &CardId) -> Result<Option<u32>, DbError> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(counter) FROM center_card_log WHERE card_id = $1")
            .bind(card.to_string())
            .fetch_one(&mut *self.read().await?)
            .await?;
        max.map(|c| u32::try_from(c).map_err(corrupt)).transpose()
    }

    /// The purchase profiles a store accepts (all, unless its operator
    /// chose).
    pub async fn store_profiles(&self, store: &StoreId) -> Result<Profiles, DbError> {
        let row = self
            .read_one(
                "SELECT purchase_profiles AS s_profiles FROM center_store_settings WHERE store = $1",
                &[store.as_str()],
                profiles_column,
            )
            .await?;
        Ok(row.unwrap_or(Profiles::ALL))
    }

    /// Sets the purchase profiles a store accepts.
    pub async fn set_store_profiles(&self, store: &StoreId, profiles: Profiles, now: Timestamp) -> Result<(), DbError> {
        let set = Stmt::new(
            "INSERT INTO center_store_settings (store, payout_mode, purchase_profiles, updated_at)
             VALUES ($1, 'scheduled', $2, $3)
             ON CONFLICT (store) DO UPDATE SET purchase_profiles = $2, updated_at = $3",
        )
        .bind(store.as_str().to_owned())
        .bind(profiles.to_text())
        .bind(to_i64(now.unix_s())?);
        self.write(move |mut conn| Box::pin(async move { conn.execute(set).await.map(|_| ()) })).await
    }

    /// Registers a signing key of a store (the merchant of record).
    pub async fn put_store_key(&self, store: &StoreId, key: &PublicKey, window: Validity) -> Result<(), DbError> {
        let done = self.execute(store_key_query(store, key, window)?).await;
        self.forget_store_keys();
        done?;
        Ok(())
    }

    pub async fn revoke_store_key(&self, kid: &KeyId, now: Timestamp, trail: TrailEntry) -> Result<bool, DbError> {
        let query = Stmt::new("UPDATE center_store_keys SET revoked = 1 WHERE kid = $1 AND revoked = 0")
            .bind(kid.as_str().to_owned());
        let done = self
            .write(move |mut conn| {
                Box::pin(async move {
                    let changed = conn.execute(query).await?;
                    if changed == 1 {
                        append_trail(&mut conn, &trail, now).await?;
                    }
                    Ok(changed)
                })
            })
            .await;
        self.forget_store_keys();
        Ok(done? == 1)
    }

    /// Drops the cached store key directory (after a key changed here).
    pub(super) fn forget_store_keys(&self) {
        let mut cache = self.store_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.generation += 1;
        cache.loaded = None;
    }

    /// Every registered store key, as the directory bills are checked
    /// against: cached for at most [`STORE_KEYS_TTL`], and read again at
    /// once after a key is added or revoked through this instance.
    pub async fn store_keys(&self) -> Result<Arc<KeyDirectory>, DbError> {
        let generation = {
            let cache = self.store_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, dir)) = &cache.loaded
                && at.elapsed() < STORE_KEYS_TTL
            {
                return Ok(dir.clone());
            }
            cache.generation
        };
        let read_at = Instant::now();
        let dir = Arc::new(self.read_store_keys().await?);
        let mut cache = self.store_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.generation == generation {
            cache.loaded = Some((read_at, dir.clone()));
        }
        Ok(dir)
    }

    /// How many store keys are registered, revoked ones included.
    pub async fn store_key_count(&self) -> Result<usize, DbError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM center_store_keys").fetch_one(&mut *self.read().await?).await?;
        usize::try_from(n).map_err(corrupt)
    }

    async fn read_store_keys(&self) -> Result<KeyDirectory, DbError> {
        let rows = sqlx::query("SELECT store, public_key, not_before, not_after, revoked FROM center_store_keys")
            .fetch_all(&mut *self.read().await?)
            .await?;
        let mut dir = KeyDirectory::registry();
        let mut revoked = Vec::new();
        for r in rows {
            let bytes: [u8; 32] = hex::decode(r.try_get::<String, _>("public_key")?)
                .map_err(corrupt)?
                .try_into()
                .map_err(|_| corrupt("public key length"))?;
            let public = PublicKey::from_bytes(&bytes).map_err(corrupt)?;
            let ts = |v: Option<i64>| v.map(|v| to_u64(v).map(Timestamp::from_unix_s)).transpose();
            let window =
                Validity { not_before: ts(r.try_get("not_before")?)?, not_after: ts(r.try_get("not_after")?)? };
            let owner = PartyId::parse(&r.try_get::<String, _>("store")?).map_err(corrupt)?;
            if r.try_get::<i64, _>("revoked")? != 0 {
                revoked.push(public.kid().clone());
            }
            dir.insert(owner, public, window).map_err(corrupt)?;
        }
        for kid in revoked {
            dir.revoke(&kid).map_err(corrupt)?;
        }
        Ok(dir)
    }

    pub async fn put_card(&self, c: &CardRecord, now: Timestamp) -> Result<(), DbError> {
        self.put_card_with(c, now, Entries::none(), None).await
    }

    /// Registers a card and, in the same transaction, its books `entries`
    /// (its accounts, its initial value): both or neither.
    /// `trail`: the operator's change, if it is one (the admin API's, the
    /// CLI's), else `None` (a card put by a test or a tool).
    pub async fn put_card_with(
        &self,
        c: &CardRecord,
        now: Timestamp,
        entries: Entries,
        trail: Option<TrailEntry>,
    ) -> Result<(), DbError> {
        let query = Stmt::new(
            "INSERT INTO center_cards (id, key_version, status, currency, max_balance_minor, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.id.to_string())
        .bind(i64::from(c.key_version))
        .bind(status_name(c.status).to_owned())
        .bind(c.currency.code().to_owned())
        .bind(to_i64(c.max_balance_minor)?)
        .bind(to_i64(now.unix_s())?);
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                conn.books(&entries, now_s).await?;
                conn.execute(query).await?;
                if let Some(trail) = &trail {
                    append_trail(&mut conn, trail, now).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Blocks, unblocks or reports lost a card, with the reason recorded.
    /// Lost is final: a lost card's pending debits may have been voided
    /// (`void-lost`) on the word that it is gone, so were it active again, a
    /// debit it did apply would leave card and books apart for good.
    pub async fn set_card_status(
        &self,
        id: &CardId,
        status: CardRegistryStatus,
        reason: &str,
        now: Timestamp,
        mut trail: TrailEntry,
    ) -> Result<StatusChange, DbError> {
        let before = Stmt::new("SELECT status FROM center_cards WHERE id = $1").bind(id.to_string());
        let query = Stmt::new(
            "UPDATE center_cards SET status = $1, status_reason = $2 WHERE id = $3 AND (status <> 'lost' OR $1 = 'lost')",
        )
        .bind(status_name(status).to_owned())
        .bind(reason.to_owned())
        .bind(id.to_string());
        self.write(move |mut conn| {
            Box::pin(async move {
                let Some(was) = conn.fetch_optional(before, |r| r.required_text("status")).await? else {
                    return Ok(StatusChange::UnknownCard);
                };
                if conn.execute(query).await? != 1 {
                    return Ok(StatusChange::LostIsFinal);
                }
                trail.before = serde_json::json!({ "status": was }).to_string();
                append_trail(&mut conn, &trail, now).await?;
                Ok(StatusChange::Changed)
            })
        })
        .await
    }

    /// The card's key version `from` becomes `to` (a re-key); a no-op
    /// when it is `to` already.
    pub async fn set_card_key_version(&self, id: &CardId, from: u8, to: u8) -> Result<(), DbError> {
        let update = Stmt::new("UPDATE center_cards SET key_version = $3 WHERE id = $1 AND key_version = $2")
            .bind(id.to_string())
            .bind(i64::from(from))
            .bind(i64::from(to));
        self.execute(update).await?;
        Ok(())
    }

    pub async fn card(&self, id: &CardId) -> Result<Option<CardRecord>, DbError> {
        // On every purchase's and charge's authenticate step: on SQLite
        // read on the calling thread (`read_one`).
        const CARD_SQL: &str = "SELECT id AS c_id, key_version AS c_key_version, status AS c_status,
             currency AS c_currency, max_balance_minor AS c_max_balance_minor FROM center_cards WHERE id = $1";
        self.read_one(CARD_SQL, &[&id.to_string()], card_row).await
    }

    /// Cards reported lost or blocked (an operator's queue), by id.
    pub async fn cards_not_active(&self, limit: i64) -> Result<Vec<CardRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT id AS c_id, key_version AS c_key_version, status AS c_status, currency AS c_currency,
             max_balance_minor AS c_max_balance_minor FROM center_cards WHERE status <> 'active' ORDER BY id LIMIT $1",
        )
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| card_row(r)).collect()
    }
}

pub(super) fn store_query(s: &StoreRecord, now: Timestamp) -> Result<Stmt, DbError> {
    Ok(Stmt::new(
        "INSERT INTO center_stores (id, name, mall, notify_url, client_name, bank_account, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET name = $2, mall = $3, notify_url = $4, client_name = $5, bank_account = $6",
    )
    .bind(s.id.as_str().to_owned())
    .bind(s.name.as_str().to_owned())
    .bind(s.mall.as_ref().map(|m| m.as_str().to_owned()))
    .bind(s.notify_url.clone())
    .bind(s.client_name.clone())
    .bind(s.bank_account.clone())
    .bind(to_i64(now.unix_s())?))
}

/// A store's key, added, or its window changed if the key is that store's.
pub(super) fn store_key_query(store: &StoreId, key: &PublicKey, window: Validity) -> Result<Stmt, DbError> {
    let ts = |t: Option<Timestamp>| t.map(|t| to_i64(t.unix_s())).transpose();
    Ok(Stmt::new(
        "INSERT INTO center_store_keys (kid, store, public_key, not_before, not_after, revoked)
         VALUES ($1, $2, $3, $4, $5, 0)
         ON CONFLICT (kid) DO UPDATE SET not_before = $4, not_after = $5 WHERE center_store_keys.store = $2",
    )
    .bind(key.kid().as_str().to_owned())
    .bind(store.as_str().to_owned())
    .bind(hex::encode(key.as_bytes()))
    .bind(ts(window.not_before)?)
    .bind(ts(window.not_after)?))
}

impl CenterDb {
    /// The fingerprints of the keys the database belongs to, if recorded
    /// (`crate::key_set`).
    pub async fn key_set(&self) -> Result<Option<crate::key_set::KeyFingerprints>, DbError> {
        let row = sqlx::query("SELECT kek, master_keys, signing_key FROM center_key_set WHERE id = 1")
            .fetch_optional(&mut *self.read().await?)
            .await?;
        row.map(|r| {
            Ok(crate::key_set::KeyFingerprints {
                kek: r.try_get("kek")?,
                master_keys: r.try_get("master_keys")?,
                signing_key: r.try_get("signing_key")?,
            })
        })
        .transpose()
    }

    /// Records `keys` as the database's key set unless it has one (the
    /// first instance wins); returns the recorded set.
    pub async fn record_key_set(
        &self,
        keys: &crate::key_set::KeyFingerprints,
        now: Timestamp,
    ) -> Result<crate::key_set::KeyFingerprints, DbError> {
        let insert = Stmt::new(
            "INSERT INTO center_key_set (id, kek, master_keys, signing_key, created_at) VALUES (1, $1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(keys.kek.clone())
        .bind(keys.master_keys.clone())
        .bind(keys.signing_key.clone())
        .bind(to_i64(now.unix_s())?);
        self.execute(insert).await?;
        self.key_set().await?.ok_or_else(|| DbError::Corrupt("the key set recorded is gone".into()))
    }

    /// Replaces the recorded fingerprint `old` of `which` with `new`: the
    /// signing key's at a rotation's last step, the master keys' when made
    /// of check values or a version is added. A no-op when another instance
    /// did it first.
    pub async fn replace_key_fingerprint(&self, which: RecordedKey, old: &str, new: &str) -> Result<(), DbError> {
        let sql = match which {
            RecordedKey::MasterKeys => "UPDATE center_key_set SET master_keys = $2 WHERE id = 1 AND master_keys = $1",
            RecordedKey::SigningKey => "UPDATE center_key_set SET signing_key = $2 WHERE id = 1 AND signing_key = $1",
        };
        self.execute(Stmt::new(sql).bind(old.to_owned()).bind(new.to_owned())).await?;
        Ok(())
    }
}

/// A key whose fingerprint `center_key_set` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedKey {
    MasterKeys,
    SigningKey,
}

/// How a card status change went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Changed,
    UnknownCard,
    /// The card is lost; it can be nothing else again.
    LostIsFinal,
}

/// Column `s_profiles`: a store's chosen purchase profiles; none chosen
/// (no row, or NULL) is every profile.
fn profiles_column(r: &dyn Columns) -> Result<Profiles, DbError> {
    match r.text("s_profiles")? {
        None => Ok(Profiles::ALL),
        Some(text) => Profiles::from_text(&text).ok_or_else(|| corrupt(format!("purchase profiles {text:?}"))),
    }
}

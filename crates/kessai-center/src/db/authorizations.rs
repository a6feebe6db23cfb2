//! The built-in credit authorizer's authorizations (`authorizer::Simulator`),
//! in the center's database so that every instance sees every one: a charge
//! authorized through one instance is captured or voided through another.
//! A row is changed with a compare-and-set on its version.

use super::*;
use crate::authorizer::SimulatedAuthorization;

const BY_CHARGE_SQL: &str = "SELECT record, version FROM center_authorizations WHERE charge_id = $1";
const BY_REFERENCE_SQL: &str = "SELECT record, version FROM center_authorizations WHERE reference = $1";

fn authorization_row(r: &dyn Columns) -> Result<(SimulatedAuthorization, i64), DbError> {
    let auth = serde_json::from_str(&r.required_text("record")?).map_err(corrupt)?;
    Ok((auth, r.required_int("version")?))
}

impl CenterDb {
    /// The authorization made for a charge, if any.
    pub async fn authorization_for_charge(&self, charge_id: &str) -> Result<Option<SimulatedAuthorization>, DbError> {
        Ok(self.read_one(BY_CHARGE_SQL, &[charge_id], authorization_row).await?.map(|(auth, _)| auth))
    }

    /// An authorization by its reference, with its version.
    pub async fn authorization(&self, reference: &str) -> Result<Option<(SimulatedAuthorization, i64)>, DbError> {
        self.read_one(BY_REFERENCE_SQL, &[reference], authorization_row).await
    }

    /// Stores a new authorization; if its charge has one already (another
    /// instance authorized it meanwhile), stores nothing and returns that one.
    pub async fn insert_authorization(
        &self,
        auth: &SimulatedAuthorization,
        now: Timestamp,
    ) -> Result<SimulatedAuthorization, DbError> {
        let insert = Stmt::new(
            "INSERT INTO center_authorizations (reference, charge_id, record, version, created_at)
             VALUES ($1, $2, $3, 1, $4) ON CONFLICT (charge_id) DO NOTHING",
        )
        .bind(auth.reference.as_str().to_owned())
        .bind(auth.charge_id.clone())
        .bind(serde_json::to_string(auth).map_err(corrupt)?)
        .bind(to_i64(now.unix_s())?);
        if self.execute(insert).await? == 1 {
            return Ok(auth.clone());
        }
        self.authorization_for_charge(&auth.charge_id)
            .await?
            .ok_or_else(|| corrupt("an authorization's charge is taken, but by no row"))
    }

    /// Writes `auth` if its row is still at `version`; `false` if another
    /// request changed it first.
    pub async fn update_authorization(&self, auth: &SimulatedAuthorization, version: i64) -> Result<bool, DbError> {
        let update = Stmt::new(
            "UPDATE center_authorizations SET record = $1, version = version + 1 WHERE reference = $2 AND version = $3",
        )
        .bind(serde_json::to_string(auth).map_err(corrupt)?)
        .bind(auth.reference.as_str().to_owned())
        .bind(version);
        Ok(self.execute(update).await? == 1)
    }

    /// Every authorization, oldest first (tests and audit; at most
    /// [`MAX_LIST`]).
    pub async fn authorizations(&self) -> Result<Vec<SimulatedAuthorization>, DbError> {
        let rows =
            sqlx::query("SELECT record, version FROM center_authorizations ORDER BY created_at, reference LIMIT $1")
                .bind(MAX_LIST)
                .fetch_all(&mut *self.read().await?)
                .await?;
        rows.iter().map(|r| authorization_row(r).map(|(auth, _)| auth)).collect()
    }
}

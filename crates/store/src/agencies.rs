//! `AgencyStore`: one sealed company token per GHL agency install, and the redirection that
//! lets the company's tenants use it (see the port's documentation).
//!
//! The row is sealed like a credential, bound to (company id, `ghl-agency`), and refreshed
//! by `credentials.rs`'s one locked refresh: a `FOR UPDATE` row lock in a transaction on
//! PostgreSQL, an in-process mutex per company on SQLite.

use async_trait::async_trait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use domain::{InstallKind, LocationId, TenantId};
use ports::StoreError;
use ports::store::{
    AgencyInstall, AgencyStore, Credential, DuePredicate, NewCredential, PendingLocation, Provider,
    RefreshError, Refresher,
};

use crate::Store;
use crate::credentials::Holder;
use crate::credentials::{plaintext, secret_from};
use crate::crypto::{RowBinding, Sealed};
use crate::entity::ghl_agencies::{self, Column, Entity};
use crate::entity::{ghl_pending_locations as pending, tenants};
use crate::error::db_err;
use crate::locks::KeyedGuard;
use crate::mapping::{micros, now};

/// What binds a sealed agency token to its row.
const AGENCY: &str = "ghl-agency";

fn binding(company: &str) -> RowBinding<'_> {
    RowBinding {
        tenant: company,
        provider: AGENCY,
    }
}

fn not_found(company: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("the agency install of GHL company {company}"),
    }
}

fn install_of(row: &ghl_agencies::Model) -> AgencyInstall {
    AgencyInstall {
        company_id: row.company_id.clone(),
        install_to_future: row.install_to_future,
        expires_at: row.expires_at,
        version: row.version,
        updated_at: row.updated_at,
    }
}

impl Store {
    /// Re-seal the agencies' company tokens under the keyring's current key (part of
    /// [`Store::reseal_credentials`], counted in the same report), with the same guarantees:
    /// a row that changed meanwhile is left to its writer.
    pub(crate) async fn reseal_agencies(
        &self,
        report: &mut crate::credentials::ResealReport,
    ) -> Result<(), StoreError> {
        let rows = Entity::find()
            .all(self.db())
            .await
            .map_err(|e| db_err("read the agency installs", e))?;
        for row in rows {
            if row.key_id == report.current_key {
                report.already_current += 1;
                continue;
            }
            let company = row.company_id.as_str();
            let sealed = Sealed {
                key_id: row.key_id.clone(),
                nonce: row.nonce.clone(),
                ciphertext: row.ciphertext.clone(),
            };
            let plain = self.keyring().open(&binding(company), &sealed)?;
            let new = self.keyring().seal(&binding(company), &plain)?;
            let res = Entity::update_many()
                .col_expr(Column::KeyId, Expr::value(new.key_id))
                .col_expr(Column::Nonce, Expr::value(new.nonce))
                .col_expr(Column::Ciphertext, Expr::value(new.ciphertext))
                .filter(Column::CompanyId.eq(company))
                .filter(Column::Version.eq(row.version))
                .filter(Column::KeyId.eq(row.key_id.as_str()))
                .filter(Column::Nonce.eq(row.nonce.clone()))
                .exec(self.db())
                .await
                .map_err(|e| db_err("re-seal an agency token", e))?;
            if res.rows_affected == 1 {
                report.resealed += 1;
                tracing::info!(company, from = %row.key_id, to = %report.current_key, "agency token re-sealed");
            } else {
                report.changed_meanwhile += 1;
            }
        }
        let key_ids: Vec<String> = Entity::find()
            .select_only()
            .column(Column::KeyId)
            .into_tuple()
            .all(self.db())
            .await
            .map_err(|e| db_err("read the agency tokens' key ids", e))?;
        for key_id in key_ids {
            *report.by_key.entry(key_id).or_default() += 1;
        }
        Ok(())
    }

    /// The GHL company of an agency tenant; `None` for any other tenant.
    pub(crate) async fn agency_of(&self, tenant: &TenantId) -> Result<Option<String>, StoreError> {
        let row = tenants::Entity::find_by_id(tenant.as_str())
            .one(self.db())
            .await
            .map_err(|e| db_err("read tenant", e))?;
        Ok(row
            .filter(|t| t.install_kind == InstallKind::Agency.as_str())
            .and_then(|t| t.ghl_company_id))
    }

    /// The agency's token, as the credential of `tenant`.
    pub(crate) async fn read_agency<C: ConnectionTrait>(
        &self,
        conn: &C,
        company: &str,
        tenant: &TenantId,
        for_update: bool,
    ) -> Result<Credential, StoreError> {
        let mut select = Entity::find().filter(Column::CompanyId.eq(company));
        if for_update {
            select = select.lock_exclusive();
        }
        let row = select
            .one(conn)
            .await
            .map_err(|e| db_err("read the agency install", e))?
            .ok_or_else(|| not_found(company))?;
        self.open_agency(&row, tenant)
    }

    /// An agency row's token, as the credential of `tenant`.
    fn open_agency(
        &self,
        row: &ghl_agencies::Model,
        tenant: &TenantId,
    ) -> Result<Credential, StoreError> {
        let company = row.company_id.as_str();
        let sealed = Sealed {
            key_id: row.key_id.clone(),
            nonce: row.nonce.clone(),
            ciphertext: row.ciphertext.clone(),
        };
        let plain = self.keyring().open(&binding(company), &sealed)?;
        Ok(Credential {
            tenant: tenant.clone(),
            provider: Provider::Ghl,
            secret: secret_from(&plain, &binding(company))?,
            expires_at: row.expires_at,
            version: row.version,
            updated_at: row.updated_at,
        })
    }

    /// The agency's token as the GHL credential of each agency tenant (as [`Self::read_agency`]
    /// gives it), in two reads. A tenant whose agency
    /// has no token is absent.
    pub(crate) async fn agency_credentials(
        &self,
    ) -> Result<Vec<(TenantId, ports::store::CredentialRead)>, StoreError> {
        let tenants = tenants::Entity::find()
            .filter(tenants::Column::InstallKind.eq(InstallKind::Agency.as_str()))
            .all(self.db())
            .await
            .map_err(|e| db_err("read the agency tenants", e))?;
        let agencies: std::collections::HashMap<String, ghl_agencies::Model> = Entity::find()
            .all(self.db())
            .await
            .map_err(|e| db_err("read the agency installs", e))?
            .into_iter()
            .map(|a| (a.company_id.clone(), a))
            .collect();
        let mut out = Vec::new();
        for t in &tenants {
            let Some(row) = t.ghl_company_id.as_deref().and_then(|c| agencies.get(c)) else {
                continue;
            };
            let Ok(tenant) = TenantId::parse(&t.id) else {
                continue;
            };
            let cred = self.open_agency(row, &tenant);
            out.push((tenant, cred));
        }
        Ok(out)
    }

    pub(crate) async fn replace_agency<C: ConnectionTrait>(
        &self,
        conn: &C,
        company: &str,
        current: &Credential,
        new: &NewCredential,
    ) -> Result<Credential, StoreError> {
        let sealed = self
            .keyring()
            .seal(&binding(company), &plaintext(&new.secret)?)?;
        let at = now();
        let expires_at = new.expires_at.map(micros);
        let res = Entity::update_many()
            .col_expr(Column::KeyId, Expr::value(sealed.key_id))
            .col_expr(Column::Nonce, Expr::value(sealed.nonce))
            .col_expr(Column::Ciphertext, Expr::value(sealed.ciphertext))
            .col_expr(Column::ExpiresAt, Expr::value(expires_at))
            .col_expr(Column::Version, Expr::value(current.version + 1))
            .col_expr(Column::UpdatedAt, Expr::value(at))
            .filter(Column::CompanyId.eq(company))
            .filter(Column::Version.eq(current.version))
            .exec(conn)
            .await
            .map_err(|e| db_err("store the refreshed agency token", e))?;
        if res.rows_affected != 1 {
            return Err(StoreError::Conflict {
                message: format!(
                    "the agency token of GHL company {company} changed during the refresh"
                ),
            });
        }
        Ok(Credential {
            tenant: current.tenant.clone(),
            provider: Provider::Ghl,
            secret: new.secret.clone(),
            expires_at,
            version: current.version + 1,
            updated_at: at,
        })
    }

    pub(crate) async fn local_agency_lock(&self, company: &str) -> Option<KeyedGuard> {
        if self.backend() == DbBackend::Postgres {
            return None;
        }
        self.local()
            .credentials
            .lock(format!("{AGENCY}\0{company}"), None)
            .await
    }
}

#[async_trait]
impl AgencyStore for Store {
    #[tracing::instrument(skip_all, fields(company = company_id))]
    async fn put_agency(
        &self,
        company_id: &str,
        credential: &NewCredential,
        install_to_future: bool,
    ) -> Result<AgencyInstall, StoreError> {
        let _guard = self.local_agency_lock(company_id).await;
        let sealed = self
            .keyring()
            .seal(&binding(company_id), &plaintext(&credential.secret)?)?;
        let at = now();
        let row = ghl_agencies::ActiveModel {
            company_id: Set(company_id.to_owned()),
            key_id: Set(sealed.key_id),
            nonce: Set(sealed.nonce),
            ciphertext: Set(sealed.ciphertext),
            expires_at: Set(credential.expires_at.map(micros)),
            version: Set(1),
            install_to_future: Set(install_to_future),
            created_at: Set(at),
            updated_at: Set(at),
        };
        let stored = Entity::insert(row)
            .on_conflict(
                OnConflict::column(Column::CompanyId)
                    .update_columns([
                        Column::KeyId,
                        Column::Nonce,
                        Column::Ciphertext,
                        Column::ExpiresAt,
                        Column::InstallToFuture,
                        Column::UpdatedAt,
                    ])
                    .value(Column::Version, Expr::col((Entity, Column::Version)).add(1))
                    .to_owned(),
            )
            .exec_with_returning(self.db())
            .await
            .map_err(|e| db_err("store the agency install", e))?;
        Ok(install_of(&stored))
    }

    async fn agency_install(&self, company_id: &str) -> Result<AgencyInstall, StoreError> {
        Entity::find_by_id(company_id)
            .one(self.db())
            .await
            .map_err(|e| db_err("read the agency install", e))?
            .map(|r| install_of(&r))
            .ok_or_else(|| not_found(company_id))
    }

    #[tracing::instrument(skip_all, fields(company = company_id))]
    async fn delete_agency(&self, company_id: &str) -> Result<(), StoreError> {
        let _guard = self.local_agency_lock(company_id).await;
        Entity::delete_many()
            .filter(Column::CompanyId.eq(company_id))
            .exec(self.db())
            .await
            .map_err(|e| db_err("delete the agency install", e))?;
        pending::Entity::delete_many()
            .filter(pending::Column::CompanyId.eq(company_id))
            .exec(self.db())
            .await
            .map_err(|e| db_err("delete the agency's pending locations", e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(company = company_id))]
    async fn with_agency_lock(
        &self,
        company_id: &str,
        due: DuePredicate,
        refresh: Refresher,
    ) -> Result<Credential, RefreshError> {
        let holder = Holder::Agency {
            company: company_id,
            tenant: &agency_itself(),
        };
        self.refresh_locked(&holder, due, refresh).await
    }

    #[tracing::instrument(skip_all, fields(location = %p.location_id))]
    async fn put_pending(&self, p: &PendingLocation) -> Result<(), StoreError> {
        let row = pending::ActiveModel {
            location_id: Set(p.location_id.as_str().to_owned()),
            company_id: Set(p.company_id.clone()),
            name: Set(p.name.clone()),
            reason: Set(p.reason.clone()),
            since: Set(micros(p.since)),
            updated_at: Set(now()),
        };
        pending::Entity::insert(row)
            .on_conflict(
                OnConflict::column(pending::Column::LocationId)
                    .update_columns([
                        pending::Column::CompanyId,
                        pending::Column::Name,
                        pending::Column::Reason,
                        pending::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.db())
            .await
            .map_err(|e| db_err("record a pending location", e))?;
        Ok(())
    }

    async fn pending_locations(&self) -> Result<Vec<PendingLocation>, StoreError> {
        let rows = pending::Entity::find()
            .order_by_asc(pending::Column::LocationId)
            .all(self.db())
            .await
            .map_err(|e| db_err("read the pending locations", e))?;
        rows.into_iter()
            .map(|r| {
                Ok(PendingLocation {
                    location_id: LocationId::parse(&r.location_id).map_err(|e| {
                        StoreError::Corrupt {
                            message: format!("pending location id {:?}: {e}", r.location_id),
                        }
                    })?,
                    company_id: r.company_id,
                    name: r.name,
                    since: r.since,
                    reason: r.reason,
                })
            })
            .collect()
    }

    async fn take_pending(&self, location: &LocationId) -> Result<(), StoreError> {
        pending::Entity::delete_by_id(location.as_str())
            .exec(self.db())
            .await
            .map_err(|e| db_err("forget a pending location", e))?;
        Ok(())
    }
}

/// The `tenant` of the company token when the agency itself uses it: no tenant's.
fn agency_itself() -> TenantId {
    TenantId::parse("agency").expect("a valid tenant id")
}

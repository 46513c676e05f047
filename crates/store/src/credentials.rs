//! `CredentialStore`: one encrypted row per (tenant, provider), and token refresh under a
//! lock so that a single-use rotating refresh token is spent exactly once.
//!
//! The secret is serialised to a private JSON form (below), sealed with the keyring
//! (`crypto.rs`) and stored as key id + nonce + ciphertext; nothing else in the row is secret.
//!
//! Refresh under the lock:
//! - PostgreSQL: a transaction that reads the row `FOR UPDATE`, calls `due`, calls `refresh`
//!   while still holding the row lock, writes version + 1 and commits. Other processes block
//!   on the row lock, then re-read the new row, find it no longer due, and return it. The
//!   transaction pins one pooled connection for the length of the refresh call.
//! - SQLite: an in-process mutex per (tenant, provider), held across the same steps; `put` and
//!   `delete` take it too. The write itself runs in an immediate transaction, but that
//!   transaction is not held across the refresh call: SQLite has one writer for the whole
//!   file, and holding it during an HTTP call would stall every other write.

use async_trait::async_trait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use domain::TenantId;
use ports::StoreError;
use ports::store::{
    Credential, CredentialSecret, CredentialStore, DuePredicate, NewCredential, Provider,
    RefreshError, Refresher,
};

use crate::Store;
use crate::crypto::{RowBinding, Sealed};
use crate::entity::credentials::{self, Column, Entity};
use crate::error::db_err;
use crate::locks::KeyedGuard;
use crate::mapping::{micros, now};

/// The plaintext form of a secret, written from borrowed strings so no extra copies of the
/// secret are made on the way in.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum SecretOut<'a> {
    GhlOauth {
        access_token: &'a str,
        refresh_token: &'a str,
        scopes: &'a [String],
        user_type: &'a str,
        company_id: Option<&'a str>,
    },
    GhlPrivate {
        token: &'a str,
    },
    Ekyte {
        api_key: &'a str,
        mcp_token: Option<&'a str>,
    },
}

/// The same form, read back. Deliberately without `Debug`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum SecretIn {
    GhlOauth {
        access_token: String,
        refresh_token: String,
        scopes: Vec<String>,
        user_type: String,
        company_id: Option<String>,
    },
    GhlPrivate {
        token: String,
    },
    Ekyte {
        api_key: String,
        mcp_token: Option<String>,
    },
}

pub(crate) fn plaintext(
    secret: &CredentialSecret,
) -> Result<secrecy::zeroize::Zeroizing<Vec<u8>>, StoreError> {
    let out = match secret {
        CredentialSecret::GhlOAuth {
            access_token,
            refresh_token,
            scopes,
            user_type,
            company_id,
        } => SecretOut::GhlOauth {
            access_token: access_token.expose_secret(),
            refresh_token: refresh_token.expose_secret(),
            scopes,
            user_type,
            company_id: company_id.as_deref(),
        },
        CredentialSecret::GhlPrivate { token } => SecretOut::GhlPrivate {
            token: token.expose_secret(),
        },
        CredentialSecret::Ekyte { api_key, mcp_token } => SecretOut::Ekyte {
            api_key: api_key.expose_secret(),
            mcp_token: mcp_token.as_ref().map(|t| t.expose_secret()),
        },
    };
    serde_json::to_vec(&out)
        .map(secrecy::zeroize::Zeroizing::new)
        // serde_json's error names the position, never the content.
        .map_err(|e| StoreError::Unknown(anyhow::Error::new(e).context("serialise a credential")))
}

pub(crate) fn secret_from(
    bytes: &[u8],
    row: &RowBinding<'_>,
) -> Result<CredentialSecret, StoreError> {
    let parsed: SecretIn = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        message: format!(
            "the {} credentials of tenant {} decrypt but do not parse (line {}, column {})",
            row.provider,
            row.tenant,
            e.line(),
            e.column()
        ),
    })?;
    let s = SecretString::from;
    Ok(match parsed {
        SecretIn::GhlOauth {
            access_token,
            refresh_token,
            scopes,
            user_type,
            company_id,
        } => CredentialSecret::GhlOAuth {
            access_token: s(access_token),
            refresh_token: s(refresh_token),
            scopes,
            user_type,
            company_id,
        },
        SecretIn::GhlPrivate { token } => CredentialSecret::GhlPrivate { token: s(token) },
        SecretIn::Ekyte { api_key, mcp_token } => CredentialSecret::Ekyte {
            api_key: s(api_key),
            mcp_token: mcp_token.map(s),
        },
    })
}

fn not_found(tenant: &TenantId, provider: Provider) -> StoreError {
    StoreError::NotFound {
        what: format!("the {} credentials of tenant {tenant}", provider.as_str()),
    }
}

impl Store {
    fn decode(&self, row: credentials::Model) -> Result<Credential, StoreError> {
        let binding = RowBinding {
            tenant: &row.tenant_id,
            provider: &row.provider,
        };
        let sealed = Sealed {
            key_id: row.key_id.clone(),
            nonce: row.nonce.clone(),
            ciphertext: row.ciphertext.clone(),
        };
        let plain = self.keyring().open(&binding, &sealed)?;
        let secret = secret_from(&plain, &binding)?;
        Ok(Credential {
            tenant: TenantId::parse(row.tenant_id.as_str()).map_err(|e| StoreError::Corrupt {
                message: format!("credentials.tenant_id: {e}"),
            })?,
            provider: crate::mapping::parse_provider(&row.provider).ok_or_else(|| {
                StoreError::Corrupt {
                    message: format!("credentials.provider: unknown value {:?}", row.provider),
                }
            })?,
            secret,
            expires_at: row.expires_at,
            version: row.version,
            updated_at: row.updated_at,
        })
    }

    fn seal(
        &self,
        tenant: &TenantId,
        provider: Provider,
        secret: &CredentialSecret,
    ) -> Result<Sealed, StoreError> {
        let binding = RowBinding {
            tenant: tenant.as_str(),
            provider: provider.as_str(),
        };
        self.keyring().seal(&binding, &plaintext(secret)?)
    }

    async fn read_credential<C: ConnectionTrait>(
        &self,
        conn: &C,
        tenant: &TenantId,
        provider: Provider,
        for_update: bool,
    ) -> Result<Credential, StoreError> {
        let mut select = Entity::find()
            .filter(Column::TenantId.eq(tenant.as_str()))
            .filter(Column::Provider.eq(provider.as_str()));
        if for_update {
            select = select.lock_exclusive();
        }
        let row = select
            .one(conn)
            .await
            .map_err(|e| db_err("read credentials", e))?
            .ok_or_else(|| not_found(tenant, provider))?;
        self.decode(row)
    }

    /// Write `new` over the row at `expected_version`; `Conflict` if it moved.
    async fn replace_credential<C: ConnectionTrait>(
        &self,
        conn: &C,
        current: &Credential,
        new: &NewCredential,
    ) -> Result<Credential, StoreError> {
        let sealed = self.seal(&current.tenant, current.provider, &new.secret)?;
        let at = now();
        let expires_at = new.expires_at.map(micros);
        let res = Entity::update_many()
            .col_expr(Column::KeyId, Expr::value(sealed.key_id))
            .col_expr(Column::Nonce, Expr::value(sealed.nonce))
            .col_expr(Column::Ciphertext, Expr::value(sealed.ciphertext))
            .col_expr(Column::ExpiresAt, Expr::value(expires_at))
            .col_expr(Column::Version, Expr::value(current.version + 1))
            .col_expr(Column::UpdatedAt, Expr::value(at))
            .filter(Column::TenantId.eq(current.tenant.as_str()))
            .filter(Column::Provider.eq(current.provider.as_str()))
            .filter(Column::Version.eq(current.version))
            .exec(conn)
            .await
            .map_err(|e| db_err("store refreshed credentials", e))?;
        if res.rows_affected != 1 {
            return Err(StoreError::Conflict {
                message: format!(
                    "the {} credentials of tenant {} changed during the refresh",
                    current.provider.as_str(),
                    current.tenant
                ),
            });
        }
        Ok(Credential {
            tenant: current.tenant.clone(),
            provider: current.provider,
            secret: new.secret.clone(),
            expires_at,
            version: current.version + 1,
            updated_at: at,
        })
    }

    /// The in-process lock of (tenant, provider); `None` on PostgreSQL, where the database
    /// locks.
    async fn local_credential_lock(
        &self,
        tenant: &TenantId,
        provider: Provider,
    ) -> Option<KeyedGuard> {
        if self.backend() == DbBackend::Postgres {
            return None;
        }
        let key = format!("{tenant}\0{}", provider.as_str());
        self.local().credentials.lock(key, None).await
    }

    async fn read_held<C: ConnectionTrait>(
        &self,
        conn: &C,
        holder: &Holder<'_>,
        for_update: bool,
    ) -> Result<Credential, StoreError> {
        match holder {
            Holder::Own { tenant, provider } => {
                self.read_credential(conn, tenant, *provider, for_update)
                    .await
            }
            Holder::Agency { company, tenant } => {
                self.read_agency(conn, company, tenant, for_update).await
            }
        }
    }

    async fn replace_held<C: ConnectionTrait>(
        &self,
        conn: &C,
        holder: &Holder<'_>,
        current: &Credential,
        new: &NewCredential,
    ) -> Result<Credential, StoreError> {
        match holder {
            Holder::Own { .. } => self.replace_credential(conn, current, new).await,
            Holder::Agency { company, .. } => {
                self.replace_agency(conn, company, current, new).await
            }
        }
    }

    /// Refresh the held row under its lock (see the module docs): on PostgreSQL a
    /// transaction holding the row `FOR UPDATE` across the refresh call; on SQLite the
    /// in-process lock, and an immediate transaction for the write alone.
    pub(crate) async fn refresh_locked(
        &self,
        holder: &Holder<'_>,
        due: DuePredicate,
        refresh: Refresher,
    ) -> Result<Credential, RefreshError> {
        let lost = |e| {
            // The vendor has issued a new token that we failed to keep; with single-use
            // refresh tokens the install may need re-authorising.
            tracing::error!(holder = %holder, "refreshed credentials could not be committed");
            db_err("commit refreshed credentials", e)
        };
        if self.backend() == DbBackend::Postgres {
            let txn = self
                .db()
                .begin()
                .await
                .map_err(|e| db_err("begin the credential refresh", e))?;
            self.count_statements("BEGIN/END", 2);
            let current = self.read_held(&txn, holder, true).await?;
            if !due(&current) {
                txn.commit()
                    .await
                    .map_err(|e| db_err("end the credential read", e))?;
                return Ok(current);
            }
            // On an error here the transaction is dropped, which rolls back and unlocks.
            let new = refresh(current.clone()).await?;
            let stored = self.replace_held(&txn, holder, &current, &new).await?;
            txn.commit().await.map_err(lost)?;
            return Ok(stored);
        }
        let _guard = match holder {
            Holder::Own { tenant, provider } => self.local_credential_lock(tenant, *provider).await,
            Holder::Agency { company, .. } => self.local_agency_lock(company).await,
        };
        let current = self.read_held(self.db(), holder, false).await?;
        if !due(&current) {
            return Ok(current);
        }
        let new = refresh(current.clone()).await?;
        let txn = self
            .db()
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
            .map_err(|e| db_err("begin storing refreshed credentials", e))?;
        let stored = self.replace_held(&txn, holder, &current, &new).await?;
        txn.commit().await.map_err(lost)?;
        Ok(stored)
    }
}

/// The row a tenant's credential is held in, for a locked refresh.
pub(crate) enum Holder<'a> {
    /// The tenant's own credential.
    Own {
        tenant: &'a TenantId,
        provider: Provider,
    },
    /// The company token of the agency the tenant belongs to.
    Agency {
        company: &'a str,
        tenant: &'a TenantId,
    },
}

impl std::fmt::Display for Holder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Own { tenant, provider } => {
                write!(
                    f,
                    "the {} credentials of tenant {tenant}",
                    provider.as_str()
                )
            }
            Self::Agency { company, .. } => {
                write!(f, "the agency token of GHL company {company}")
            }
        }
    }
}

#[async_trait]
impl CredentialStore for Store {
    #[tracing::instrument(skip_all, fields(tenant = %tenant, provider = provider.as_str()))]
    async fn get(&self, tenant: &TenantId, provider: Provider) -> Result<Credential, StoreError> {
        match self
            .read_credential(self.db(), tenant, provider, false)
            .await
        {
            Err(StoreError::NotFound { .. }) if provider == Provider::Ghl => {
                match self.agency_of(tenant).await? {
                    Some(company) => self.read_agency(self.db(), &company, tenant, false).await,
                    None => Err(not_found(tenant, provider)),
                }
            }
            other => other,
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant, provider = provider.as_str()))]
    async fn put(
        &self,
        tenant: &TenantId,
        provider: Provider,
        credential: &NewCredential,
    ) -> Result<Credential, StoreError> {
        let _guard = self.local_credential_lock(tenant, provider).await;
        let sealed = self.seal(tenant, provider, &credential.secret)?;
        let at = now();
        let row = credentials::ActiveModel {
            tenant_id: Set(tenant.as_str().to_owned()),
            provider: Set(provider.as_str().to_owned()),
            key_id: Set(sealed.key_id),
            nonce: Set(sealed.nonce),
            ciphertext: Set(sealed.ciphertext),
            expires_at: Set(credential.expires_at.map(micros)),
            version: Set(1),
            created_at: Set(at),
            updated_at: Set(at),
        };
        // Insert, or replace the sealed fields and bump the version, in one statement; the
        // row it returns is the version this write produced.
        let stored = Entity::insert(row)
            .on_conflict(
                OnConflict::columns([Column::TenantId, Column::Provider])
                    .update_columns([
                        Column::KeyId,
                        Column::Nonce,
                        Column::Ciphertext,
                        Column::ExpiresAt,
                        Column::UpdatedAt,
                    ])
                    .value(Column::Version, Expr::col((Entity, Column::Version)).add(1))
                    .to_owned(),
            )
            .exec_with_returning(self.db())
            .await
            .map_err(|e| db_err("store credentials", e))?;
        // A new credential has not failed: forget how the old one did.
        self.note_refresh(tenant, provider, None).await?;
        Ok(Credential {
            tenant: tenant.clone(),
            provider,
            secret: credential.secret.clone(),
            expires_at: stored.expires_at,
            version: stored.version,
            updated_at: stored.updated_at,
        })
    }

    async fn all(
        &self,
        provider: Provider,
    ) -> Result<Vec<(TenantId, ports::store::CredentialRead)>, StoreError> {
        let rows = Entity::find()
            .filter(Column::Provider.eq(provider.as_str()))
            .all(self.db())
            .await
            .map_err(|e| db_err("read credentials", e))?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            match TenantId::parse(row.tenant_id.as_str()) {
                Ok(tenant) => {
                    out.insert(tenant, self.decode(row));
                }
                Err(e) => {
                    tracing::warn!(tenant = %row.tenant_id, error = %e, "a credential row names an invalid tenant id");
                }
            }
        }
        if provider == Provider::Ghl {
            for (tenant, cred) in self.agency_credentials().await? {
                out.entry(tenant).or_insert(cred);
            }
        }
        Ok(out.into_iter().collect())
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant, provider = provider.as_str()))]
    async fn delete(&self, tenant: &TenantId, provider: Provider) -> Result<(), StoreError> {
        let _guard = self.local_credential_lock(tenant, provider).await;
        Entity::delete_many()
            .filter(Column::TenantId.eq(tenant.as_str()))
            .filter(Column::Provider.eq(provider.as_str()))
            .exec(self.db())
            .await
            .map_err(|e| db_err("delete credentials", e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant, provider = provider.as_str()))]
    async fn with_credential_lock(
        &self,
        tenant: &TenantId,
        provider: Provider,
        due: DuePredicate,
        refresh: Refresher,
    ) -> Result<Credential, RefreshError> {
        // An agency tenant without a token of its own refreshes its agency's, under the
        // agency's lock: one refresh for all the company's tenants.
        if provider == Provider::Ghl
            && let Err(StoreError::NotFound { .. }) = self
                .read_credential(self.db(), tenant, provider, false)
                .await
            && let Some(company) = self.agency_of(tenant).await?
        {
            let holder = Holder::Agency {
                company: &company,
                tenant,
            };
            return self.refresh_locked(&holder, due, refresh).await;
        }
        self.refresh_locked(&Holder::Own { tenant, provider }, due, refresh)
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant, provider = provider.as_str()))]
    async fn note_refresh(
        &self,
        tenant: &TenantId,
        provider: Provider,
        failure: Option<String>,
    ) -> Result<(), StoreError> {
        use crate::entity::credential_refresh_failures as f;
        match failure {
            Some(error) => {
                let row = f::ActiveModel {
                    tenant_id: sea_orm::ActiveValue::Set(tenant.as_str().to_owned()),
                    provider: sea_orm::ActiveValue::Set(provider.as_str().to_owned()),
                    at: sea_orm::ActiveValue::Set(crate::mapping::now()),
                    error: sea_orm::ActiveValue::Set(error),
                };
                f::Entity::insert(row)
                    .on_conflict(
                        OnConflict::columns([f::Column::TenantId, f::Column::Provider])
                            .update_columns([f::Column::At, f::Column::Error])
                            .to_owned(),
                    )
                    .exec_without_returning(self.db())
                    .await
                    .map_err(|e| db_err("record a refresh failure", e))?;
            }
            None => {
                f::Entity::delete_many()
                    .filter(f::Column::TenantId.eq(tenant.as_str()))
                    .filter(f::Column::Provider.eq(provider.as_str()))
                    .exec(self.db())
                    .await
                    .map_err(|e| db_err("forget a refresh failure", e))?;
            }
        }
        Ok(())
    }

    async fn refresh_failures(
        &self,
        provider: Provider,
    ) -> Result<Vec<(TenantId, ports::store::RefreshFailure)>, StoreError> {
        use crate::entity::credential_refresh_failures as f;
        f::Entity::find()
            .filter(f::Column::Provider.eq(provider.as_str()))
            .all(self.db())
            .await
            .map_err(|e| db_err("read the refresh failures", e))?
            .into_iter()
            .map(|r| {
                let tenant = TenantId::parse(&r.tenant_id).map_err(|e| StoreError::Corrupt {
                    message: format!("refresh failure of tenant {:?}: {e}", r.tenant_id),
                })?;
                Ok((
                    tenant,
                    ports::store::RefreshFailure {
                        at: r.at,
                        error: r.error,
                    },
                ))
            })
            .collect()
    }

    async fn refresh_failure(
        &self,
        tenant: &TenantId,
        provider: Provider,
    ) -> Result<Option<ports::store::RefreshFailure>, StoreError> {
        use crate::entity::credential_refresh_failures as f;
        Ok(f::Entity::find()
            .filter(f::Column::TenantId.eq(tenant.as_str()))
            .filter(f::Column::Provider.eq(provider.as_str()))
            .one(self.db())
            .await
            .map_err(|e| db_err("read a refresh failure", e))?
            .map(|r| ports::store::RefreshFailure {
                at: r.at,
                error: r.error,
            }))
    }
}

/// What [`Store::reseal_credentials`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResealReport {
    /// The key every credential is sealed under afterwards, unless a row below says otherwise.
    pub current_key: String,
    /// Rows re-sealed under the current key.
    pub resealed: u64,
    /// Rows already under the current key.
    pub already_current: u64,
    /// Rows another writer (a token refresh, `tenants add`) replaced while this ran; that
    /// writer sealed them under its own current key.
    pub changed_meanwhile: u64,
    /// Rows per key id after the run.
    pub by_key: std::collections::BTreeMap<String, u64>,
}

impl Store {
    /// Re-seal every stored credential (the agencies' company tokens too) under the keyring's
    /// current key, so that old keys
    /// (`crypto.old_keys`) can be dropped after a rotation without re-adding any tenant.
    ///
    /// The secret, its expiry and the row's version stay as they are: a token refresh running
    /// at the same time (in this or another process) still writes its new tokens, because its
    /// version check still holds. A row is only rewritten while its key and nonce are the ones
    /// read; one that changed meanwhile is counted and left to its writer.
    ///
    /// Errors: `Crypto` when a row is sealed under a key the keyring does not hold (it names
    /// the key: add it to `crypto.old_keys` and run again); `Unavailable` when the database is
    /// unreachable. Rows re-sealed before an error stay re-sealed; running again is safe.
    pub async fn reseal_credentials(&self) -> Result<ResealReport, StoreError> {
        let current = self.keyring().current_id().to_owned();
        let rows = Entity::find()
            .all(self.db())
            .await
            .map_err(|e| db_err("read credentials", e))?;
        let mut report = ResealReport {
            current_key: current.clone(),
            ..ResealReport::default()
        };
        for row in rows {
            if row.key_id == current {
                report.already_current += 1;
                continue;
            }
            let (tenant_id, provider) = (row.tenant_id.clone(), row.provider.clone());
            let (old_key, old_nonce, version) =
                (row.key_id.clone(), row.nonce.clone(), row.version);
            let credential = self.decode(row)?;
            let sealed = self.seal(&credential.tenant, credential.provider, &credential.secret)?;
            let res = Entity::update_many()
                .col_expr(Column::KeyId, Expr::value(sealed.key_id))
                .col_expr(Column::Nonce, Expr::value(sealed.nonce))
                .col_expr(Column::Ciphertext, Expr::value(sealed.ciphertext))
                .filter(Column::TenantId.eq(tenant_id.as_str()))
                .filter(Column::Provider.eq(provider.as_str()))
                .filter(Column::Version.eq(version))
                .filter(Column::KeyId.eq(old_key.as_str()))
                .filter(Column::Nonce.eq(old_nonce))
                .exec(self.db())
                .await
                .map_err(|e| db_err("re-seal credentials", e))?;
            if res.rows_affected == 1 {
                report.resealed += 1;
                tracing::info!(tenant = %tenant_id, provider = %provider, from = %old_key, to = %current, "credentials re-sealed");
            } else {
                report.changed_meanwhile += 1;
            }
        }
        // Only the key ids: the sealed secrets are not needed to count them.
        let key_ids: Vec<String> = Entity::find()
            .select_only()
            .column(Column::KeyId)
            .into_tuple()
            .all(self.db())
            .await
            .map_err(|e| db_err("read credential key ids", e))?;
        for key_id in key_ids {
            *report.by_key.entry(key_id).or_default() += 1;
        }
        self.reseal_agencies(&mut report).await?;
        Ok(report)
    }
}

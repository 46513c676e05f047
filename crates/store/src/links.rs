//! `LinkStore`: the link rows, and claims — "exactly one create" (DESIGN.md §4).
//!
//! A claim is an `INSERT … ON CONFLICT DO NOTHING` against the unique index on
//! (tenant, kind, the side's id): the database lets exactly one concurrent insert through, on
//! PostgreSQL and SQLite alike. Whoever inserted holds the claim; everyone else reads the row
//! and learns who does. A stale claim is taken over with a compare-and-set on the row's
//! version, so of several workers that find the same stale claim only one takes it.
//!
//! Claim ages are judged by each worker's clock; keep the stale limit well above clock skew.

use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TryInsertResult,
};

use domain::{EntityKind, Side, TenantId};
use ports::StoreError;
use ports::store::{Claim, ClaimKey, Completion, Link, LinkState, LinkStore, LinkUpdate};

use crate::Store;
use crate::entity::links::{self, Column, Entity};
use crate::error::db_err;
use crate::mapping::{self, json, link_state_str, now};

fn id_column(side: Side) -> Column {
    match side {
        Side::Ghl => Column::GhlId,
        Side::Ekyte => Column::EkyteId,
    }
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        what: format!("link {id}"),
    }
}

/// What an update writes into one column (`None`: the column keeps its value).
type NewValue = fn(&LinkUpdate) -> Option<sea_orm::Value>;

/// How many links one statement of `complete_many` writes.
const COMPLETE_CHUNK: usize = 50;

/// How many times a claim re-reads after losing a race before giving up with `Conflict`.
const CLAIM_ROUNDS: usize = 4;

impl Store {
    async fn link_by(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        column: Column,
        id: &str,
    ) -> Result<Option<Link>, StoreError> {
        Entity::find()
            .filter(Column::TenantId.eq(tenant.as_str()))
            .filter(Column::Kind.eq(kind.as_str()))
            .filter(column.eq(id))
            .one(self.db())
            .await
            .map_err(|e| db_err("read link", e))?
            .map(mapping::link)
            .transpose()
    }

    async fn links_where(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        condition: Condition,
        limit: Option<u32>,
    ) -> Result<Vec<Link>, StoreError> {
        let mut select = Entity::find()
            .filter(Column::TenantId.eq(tenant.as_str()))
            .filter(Column::Kind.eq(kind.as_str()))
            .filter(condition)
            .order_by_asc(Column::Id);
        if let Some(limit) = limit {
            select = select.limit(u64::from(limit));
        }
        select
            .all(self.db())
            .await
            .map_err(|e| db_err("list links", e))?
            .into_iter()
            .map(mapping::link)
            .collect()
    }

    /// Links whose `column` is one of `values`, in statements of at most 500 values.
    async fn links_in(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        column: Column,
        values: &[String],
    ) -> Result<Vec<Link>, StoreError> {
        let mut out = Vec::new();
        for chunk in values.chunks(500) {
            let cond = Condition::all().add(column.is_in(chunk.iter().map(String::as_str)));
            out.extend(self.links_where(tenant, kind, cond, None).await?);
        }
        Ok(out)
    }

    async fn link_by_id(&self, id: i64) -> Result<Option<Link>, StoreError> {
        Entity::find_by_id(id)
            .one(self.db())
            .await
            .map_err(|e| db_err("read link", e))?
            .map(mapping::link)
            .transpose()
    }

    /// [`LinkStore::complete_many`] for at most [`COMPLETE_CHUNK`] items: one `UPDATE` whose
    /// columns are a `CASE` on the row's id, each row compared on its version, returning what
    /// it wrote. A column an item leaves `None` keeps its stored value, as in `complete`.
    async fn complete_chunk(&self, items: &[Completion]) -> Result<Vec<Link>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let at = now();
        // One CASE per column, on the row id; an item whose value is `None` is left out, so
        // its row keeps the column.
        let column_case = |column: Column, value: NewValue| -> Option<sea_orm::sea_query::Expr> {
            let mut case = sea_orm::sea_query::CaseStatement::new();
            let mut any = false;
            for c in items {
                if let Some(v) = value(&c.update) {
                    case = case.case(Column::Id.eq(c.link_id), Expr::val(v));
                    any = true;
                }
            }
            any.then(|| case.finally(Expr::col(column)).into())
        };
        let mut bases = Vec::with_capacity(items.len());
        for c in items {
            bases.push((c.link_id, json("link base", &c.update.base)?));
        }
        let mut write = Entity::update_many()
            .col_expr(Column::Version, Expr::col(Column::Version).add(1))
            .col_expr(Column::UpdatedAt, Expr::value(at));
        let mut base_case = sea_orm::sea_query::CaseStatement::new();
        for (id, base) in bases {
            base_case = base_case.case(Column::Id.eq(id), Expr::val(base));
        }
        write = write.col_expr(
            Column::Base,
            base_case.finally(Expr::col(Column::Base)).into(),
        );
        let columns: [(Column, NewValue); 9] = [
            (Column::State, |u| Some(link_state_str(u.state).into())),
            (Column::GhlFp, |u| {
                Some(u.ghl_fp.map(|f| f.to_string()).into())
            }),
            (Column::EkyteFp, |u| {
                Some(u.ekyte_fp.map(|f| f.to_string()).into())
            }),
            (Column::GhlId, |u| u.ghl_id.clone().map(Into::into)),
            (Column::EkyteId, |u| u.ekyte_id.clone().map(Into::into)),
            (Column::GhlParent, |u| u.ghl_parent.clone().map(Into::into)),
            (Column::EkyteParent, |u| {
                u.ekyte_parent.clone().map(Into::into)
            }),
            (Column::ClaimedBy, |u| {
                (u.state != LinkState::Claimed).then(|| Option::<String>::None.into())
            }),
            (Column::ClaimedAt, |u| {
                (u.state != LinkState::Claimed)
                    .then(|| Option::<chrono::DateTime<chrono::Utc>>::None.into())
            }),
        ];
        for (column, value) in columns {
            if let Some(case) = column_case(column, value) {
                write = write.col_expr(column, case);
            }
        }
        let mut which = Condition::any();
        for c in items {
            which = which.add(
                Condition::all()
                    .add(Column::Id.eq(c.link_id))
                    .add(Column::Version.eq(c.expected_version)),
            );
        }
        let written = write
            .filter(which)
            .exec_with_returning(self.db())
            .await
            .map_err(|e| match db_err("complete links", e) {
                StoreError::Conflict { .. } => StoreError::Conflict {
                    message: "links: one of their new ids is already linked to another row"
                        .to_owned(),
                },
                other => other,
            })?;
        let mut by_id: std::collections::HashMap<i64, Link> = written
            .into_iter()
            .map(|m| mapping::link(m).map(|l| (l.id, l)))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(items.len());
        for c in items {
            match by_id.remove(&c.link_id) {
                Some(l) => out.push(l),
                // Deleted (released), or another version than the one expected.
                None => {
                    return Err(match self.link_by_id(c.link_id).await? {
                        None => not_found(c.link_id),
                        Some(current) => StoreError::Conflict {
                            message: format!(
                                "link {}: expected version {}, found {}",
                                c.link_id, c.expected_version, current.version
                            ),
                        },
                    });
                }
            }
        }
        Ok(out)
    }

    /// Move a claim to `owner` if the row is still the claimed row we read (same version).
    async fn take_over(&self, link: &Link, owner: &str) -> Result<bool, StoreError> {
        let at = now();
        let res = Entity::update_many()
            .col_expr(Column::ClaimedBy, Expr::value(owner))
            .col_expr(Column::ClaimedAt, Expr::value(at))
            .col_expr(Column::Version, Expr::col(Column::Version).add(1))
            .col_expr(Column::UpdatedAt, Expr::value(at))
            .filter(Column::Id.eq(link.id))
            .filter(Column::Version.eq(link.version))
            .filter(Column::State.eq(link_state_str(LinkState::Claimed)))
            .exec(self.db())
            .await
            .map_err(|e| db_err("take over a stale claim", e))?;
        Ok(res.rows_affected == 1)
    }
}

fn stale(link: &Link, stale_after: Duration) -> bool {
    let Some(since) = link.claimed_at else {
        return true;
    };
    let age = now().signed_duration_since(since);
    // A claim "from the future" (clock skew) counts as fresh.
    age.to_std().is_ok_and(|age| age >= stale_after)
}

#[async_trait]
impl LinkStore for Store {
    async fn by_ghl(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_id: &str,
    ) -> Result<Option<Link>, StoreError> {
        self.link_by(tenant, kind, Column::GhlId, ghl_id).await
    }

    async fn by_ekyte(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ekyte_id: &str,
    ) -> Result<Option<Link>, StoreError> {
        self.link_by(tenant, kind, Column::EkyteId, ekyte_id).await
    }

    async fn by_ghl_parent(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_parent: &str,
    ) -> Result<Vec<Link>, StoreError> {
        let cond = Condition::all().add(Column::GhlParent.eq(ghl_parent));
        self.links_where(tenant, kind, cond, None).await
    }

    async fn by_ghl_ids(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_ids: &[String],
    ) -> Result<Vec<Link>, StoreError> {
        self.links_in(tenant, kind, Column::GhlId, ghl_ids).await
    }

    async fn by_ghl_parents(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_parents: &[String],
    ) -> Result<Vec<Link>, StoreError> {
        self.links_in(tenant, kind, Column::GhlParent, ghl_parents)
            .await
    }

    async fn by_ekyte_parent(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ekyte_parent: &str,
    ) -> Result<Vec<Link>, StoreError> {
        let cond = Condition::all().add(Column::EkyteParent.eq(ekyte_parent));
        self.links_where(tenant, kind, cond, None).await
    }

    async fn of_contact(&self, tenant: &TenantId, contact: &str) -> Result<Vec<Link>, StoreError> {
        // Two branches, each with the tenant in it, so that each is served by its index (on
        // (tenant, kind, ghl_id) and on (tenant, kind, ghl_parent)). With the tenant outside
        // the OR, SQLite without statistics (it keeps none unless analyzed) read every link
        // of the tenant through the index on (tenant, kind): the 20-location benchmark took
        // 139-178 CPU-s instead of 96-109.
        let own = Condition::all()
            .add(Column::TenantId.eq(tenant.as_str()))
            .add(Column::Kind.is_in([
                EntityKind::Contact.as_str(),
                EntityKind::ProfileNote.as_str(),
            ]))
            .add(Column::GhlId.eq(contact));
        let under = Condition::all()
            .add(Column::TenantId.eq(tenant.as_str()))
            .add(Column::Kind.is_in([EntityKind::Task.as_str(), EntityKind::Note.as_str()]))
            .add(Column::GhlParent.eq(contact));
        Entity::find()
            .filter(Condition::any().add(own).add(under))
            .order_by_asc(Column::Id)
            .all(self.db())
            .await
            .map_err(|e| db_err("read a contact's links", e))?
            .into_iter()
            .map(mapping::link)
            .collect()
    }

    async fn list(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Link>, StoreError> {
        let cond = Condition::all().add(Column::Id.gt(after_id));
        self.links_where(tenant, kind, cond, Some(limit)).await
    }

    /// See the module doc. A claim the same `owner` already holds comes back as `TakenOver`:
    /// that owner's earlier attempt may have created the record, so it must look first.
    #[tracing::instrument(skip_all, fields(tenant = %key.tenant, kind = %key.kind, side = key.side.as_str(), id = %key.id, owner = %owner))]
    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        stale_after: Duration,
    ) -> Result<Claim, StoreError> {
        let column = id_column(key.side);
        for _ in 0..CLAIM_ROUNDS {
            let at = now();
            let (ghl_id, ekyte_id) = match key.side {
                Side::Ghl => (Some(key.id.clone()), None),
                Side::Ekyte => (None, Some(key.id.clone())),
            };
            let row = links::ActiveModel {
                id: Default::default(),
                tenant_id: Set(key.tenant.as_str().to_owned()),
                kind: Set(key.kind.as_str().to_owned()),
                ghl_id: Set(ghl_id),
                ekyte_id: Set(ekyte_id),
                ghl_parent: Set(key.ghl_parent.clone()),
                ekyte_parent: Set(key.ekyte_parent.clone()),
                state: Set(link_state_str(LinkState::Claimed).to_owned()),
                base: Set(json("link base", &key.pending)?),
                ghl_fp: Set(None),
                ekyte_fp: Set(None),
                version: Set(1),
                claimed_by: Set(Some(owner.to_owned())),
                claimed_at: Set(Some(at)),
                created_at: Set(at),
                updated_at: Set(at),
            };
            // One statement when the claim is new: the row comes back from the insert.
            let inserted = Entity::insert(row)
                .on_conflict_do_nothing_on([Column::TenantId, Column::Kind, column])
                .exec_with_returning(self.db())
                .await;
            let (inserted, link) = match inserted {
                Ok(TryInsertResult::Inserted(model)) => (true, mapping::link(model)?),
                // The row exists (`DO NOTHING` returns no row; sea-orm reports that as "not
                // found" or "not inserted" depending on the path): read it.
                Ok(TryInsertResult::Empty | TryInsertResult::Conflicted)
                | Err(DbErr::RecordNotFound(_) | DbErr::RecordNotInserted) => {
                    match self.link_by(&key.tenant, key.kind, column, &key.id).await? {
                        Some(link) => (false, link),
                        // Released between our insert attempt and the read: go again.
                        None => continue,
                    }
                }
                Err(e) => return Err(db_err("claim link", e)),
            };
            if link.state != LinkState::Claimed {
                return Ok(Claim::AlreadyLinked(link));
            }
            let ours = link.claimed_by.as_deref() == Some(owner);
            if inserted && ours {
                return Ok(Claim::Claimed(link));
            }
            if !ours && !stale(&link, stale_after) {
                return Ok(Claim::ClaimedByOther {
                    by: link.claimed_by.clone().unwrap_or_default(),
                    since: link.claimed_at.unwrap_or(link.created_at),
                });
            }
            if self.take_over(&link, owner).await?
                && let Some(link) = self.link_by_id(link.id).await?
            {
                tracing::info!(
                    link = link.id,
                    "took over a claim; the record may exist already"
                );
                return Ok(Claim::TakenOver(link));
            }
            // Someone else changed the row first: classify it afresh.
        }
        Err(StoreError::Conflict {
            message: format!(
                "the claim on {} {} {} kept changing; try again",
                key.kind,
                key.side.as_str(),
                key.id
            ),
        })
    }

    /// Ids and parents that are `None` in `update` keep their stored value (an id, once
    /// known, never goes away; close a link with `LinkState::Deleted`). State, base and
    /// fingerprints are replaced. Leaving `Claimed` clears the claim.
    #[tracing::instrument(skip_all, fields(link = link_id, expected_version = expected_version))]
    async fn complete(
        &self,
        link_id: i64,
        expected_version: i64,
        update: &LinkUpdate,
    ) -> Result<Link, StoreError> {
        // One statement: a compare-and-set on the version that returns the row it wrote.
        // Ids and parents left `None` are not assigned, so they keep their stored value.
        let at = now();
        let mut write = Entity::update_many()
            .col_expr(Column::State, Expr::value(link_state_str(update.state)))
            .col_expr(Column::Base, Expr::value(json("link base", &update.base)?))
            .col_expr(
                Column::GhlFp,
                Expr::value(update.ghl_fp.map(|f| f.to_string())),
            )
            .col_expr(
                Column::EkyteFp,
                Expr::value(update.ekyte_fp.map(|f| f.to_string())),
            )
            .col_expr(Column::Version, Expr::value(expected_version + 1))
            .col_expr(Column::UpdatedAt, Expr::value(at));
        for (column, value) in [
            (Column::GhlId, &update.ghl_id),
            (Column::EkyteId, &update.ekyte_id),
            (Column::GhlParent, &update.ghl_parent),
            (Column::EkyteParent, &update.ekyte_parent),
        ] {
            if let Some(value) = value {
                write = write.col_expr(column, Expr::value(value.clone()));
            }
        }
        if update.state != LinkState::Claimed {
            write = write
                .col_expr(Column::ClaimedBy, Expr::value(Option::<String>::None))
                .col_expr(
                    Column::ClaimedAt,
                    Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
                );
        }
        let written = write
            .filter(Column::Id.eq(link_id))
            .filter(Column::Version.eq(expected_version))
            .exec_with_returning(self.db())
            .await
            .map_err(|e| match db_err("complete link", e) {
                StoreError::Conflict { .. } => StoreError::Conflict {
                    message: format!(
                        "link {link_id}: one of its ids is already linked to another row"
                    ),
                },
                other => other,
            })?;
        match written.into_iter().next() {
            Some(model) => mapping::link(model),
            // Deleted (released), or another version than the one expected.
            None => match self.link_by_id(link_id).await? {
                None => Err(not_found(link_id)),
                Some(current) => Err(StoreError::Conflict {
                    message: format!(
                        "link {link_id} changed: expected version {expected_version}, found {}",
                        current.version
                    ),
                }),
            },
        }
    }

    async fn complete_many(&self, items: &[Completion]) -> Result<Vec<Link>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(COMPLETE_CHUNK) {
            out.extend(self.complete_chunk(chunk).await?);
        }
        Ok(out)
    }

    async fn pending_ekyte_creates(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        Entity::find()
            .filter(Column::TenantId.eq(tenant.as_str()))
            .filter(Column::Kind.eq(kind.as_str()))
            .filter(Column::State.eq(link_state_str(LinkState::Claimed)))
            .filter(Column::EkyteId.is_null())
            .filter(Column::ClaimedAt.gte(since))
            .count(self.db())
            .await
            .map_err(|e| db_err("count pending eKyte creates", e))
    }

    async fn release(&self, link_id: i64) -> Result<(), StoreError> {
        Entity::delete_many()
            .filter(Column::Id.eq(link_id))
            .filter(Column::State.eq(link_state_str(LinkState::Claimed)))
            .exec(self.db())
            .await
            .map_err(|e| db_err("release claim", e))?;
        Ok(())
    }

    async fn insert_linked(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        update: &LinkUpdate,
    ) -> Result<Link, StoreError> {
        if update.ghl_id.is_none() && update.ekyte_id.is_none() {
            return Err(StoreError::Unknown(anyhow!(
                "a {kind} link needs an id on at least one side"
            )));
        }
        let at = now();
        let row = links::ActiveModel {
            id: Default::default(),
            tenant_id: Set(tenant.as_str().to_owned()),
            kind: Set(kind.as_str().to_owned()),
            ghl_id: Set(update.ghl_id.clone()),
            ekyte_id: Set(update.ekyte_id.clone()),
            ghl_parent: Set(update.ghl_parent.clone()),
            ekyte_parent: Set(update.ekyte_parent.clone()),
            state: Set(link_state_str(update.state).to_owned()),
            base: Set(json("link base", &update.base)?),
            ghl_fp: Set(update.ghl_fp.map(|f| f.to_string())),
            ekyte_fp: Set(update.ekyte_fp.map(|f| f.to_string())),
            version: Set(1),
            claimed_by: Set(None),
            claimed_at: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
        };
        let stored = row
            .insert(self.db())
            .await
            .map_err(|e| match db_err("insert link", e) {
                StoreError::Conflict { .. } => StoreError::Conflict {
                    message: format!(
                        "a {kind} link with GHL id {:?} or eKyte id {:?} exists already",
                        update.ghl_id, update.ekyte_id
                    ),
                },
                other => other,
            })?;
        mapping::link(stored)
    }
}

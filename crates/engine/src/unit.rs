//! A contact sync's link updates, written together (issue 17).
//!
//! Settling a linked record ends by storing its link's new agreed base and fingerprints.
//! Written one by one, a contact whose records changed costs one `UPDATE` per record. Under
//! the contact's lock nobody else syncs these records, so [`Deferred`] keeps such updates in
//! memory and writes them with one [`LinkStore::complete_many`] before the lock is released
//! (and when the sync fails, before it is retried). What the sync reads meanwhile through it
//! sees its own updates, as if they were written. An update lost with a crash costs nothing
//! but a repeated write: the next sync finds both sides agreeing on a value its base does not
//! have yet, and stores it.
//!
//! A claim's completion is not deferred: it is written at once, as before, so that a crash
//! leaves at most the one create under way unrecorded. Held longer, every create of a killed
//! sync waits for a takeover that must find its record by looking (a workspace by its name
//! where eKyte does not show its `ExternalId`, a profile note by nothing at all): a chaos run
//! with claim completions deferred made a workspace twice and left contacts without their
//! onboarding task.
//!
//! Reads and claims go to the store as they come. Anything whose answer the pending updates
//! would change but that cannot be answered from memory (a listing in id order, the count of
//! pending eKyte creates, a release, a link inserted whole) writes them first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use domain::{EntityKind, Side, TenantId};
use ports::StoreError;
use ports::store::{Claim, ClaimKey, Completion, Link, LinkState, LinkStore, LinkUpdate};

/// The link store of one contact sync, under the contact's lock: the updates of linked
/// records wait for [`Deferred::flush`]; a claim's completion is written at once.
pub(crate) struct Deferred {
    inner: Arc<dyn LinkStore>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The links read or written through this unit, by id, as last known (pending
    /// completions applied).
    known: HashMap<i64, Link>,
    /// Completions not yet written, one per link, in the order first made.
    pending: Vec<Completion>,
    /// The contact whose links were read at once ([`LinkStore::of_contact`]): every link
    /// of those shapes is in `known`, with the ones this sync claimed or inserted since.
    contact: Option<(TenantId, String)>,
}

/// The reads [`LinkStore::of_contact`] answers: a link of the contact (its own, its
/// profile note's) by GHL id, or its tasks or notes by GHL parent.
#[derive(Clone, Copy)]
enum Shape {
    ByGhl(EntityKind),
    ByGhlParent(EntityKind),
}

impl Shape {
    fn of_contact(self) -> bool {
        match self {
            Shape::ByGhl(k) => matches!(k, EntityKind::Contact | EntityKind::ProfileNote),
            Shape::ByGhlParent(k) => matches!(k, EntityKind::Task | EntityKind::Note),
        }
    }

    fn matches(self, l: &Link, tenant: &TenantId, id: &str) -> bool {
        match self {
            Shape::ByGhl(k) => same_tenant_kind(l, tenant, k) && l.ghl_id.as_deref() == Some(id),
            Shape::ByGhlParent(k) => {
                same_tenant_kind(l, tenant, k) && l.ghl_parent.as_deref() == Some(id)
            }
        }
    }
}

impl State {
    /// The links of `shape` and `id`, from memory, when the contact's read covers them.
    fn contact_answer(&self, shape: Shape, tenant: &TenantId, id: &str) -> Option<Vec<Link>> {
        let (t, c) = self.contact.as_ref()?;
        if t != tenant || c != id || !shape.of_contact() {
            return None;
        }
        let mut out: Vec<Link> = self
            .known
            .values()
            .filter(|l| shape.matches(l, tenant, id))
            .cloned()
            .collect();
        out.sort_by_key(|l| l.id);
        Some(out)
    }

    fn pending_links(&self) -> impl Iterator<Item = &Link> {
        self.pending
            .iter()
            .filter_map(|c| self.known.get(&c.link_id))
    }

    fn is_pending(&self, id: i64) -> bool {
        self.pending.iter().any(|c| c.link_id == id)
    }

    /// What the store answered, with this unit's pending completions applied: rows with a
    /// pending completion as completed (dropped if they no longer match), and completed rows
    /// that now match added.
    fn overlay(&mut self, rows: Vec<Link>, matches: impl Fn(&Link) -> bool) -> Vec<Link> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if self.is_pending(row.id) {
                if let Some(l) = self.known.get(&row.id).filter(|l| matches(l)) {
                    out.push(l.clone());
                }
            } else {
                self.known.insert(row.id, row.clone());
                out.push(row);
            }
        }
        let extra: Vec<Link> = self
            .pending_links()
            .filter(|l| matches(l) && !out.iter().any(|o| o.id == l.id))
            .cloned()
            .collect();
        out.extend(extra);
        out
    }
}

/// `link` as the store writes `update` over it (see `LinkStore::complete`).
fn applied(link: &Link, update: &LinkUpdate, at: DateTime<Utc>) -> Link {
    let mut l = link.clone();
    l.state = update.state;
    l.base = update.base.clone();
    l.ghl_fp = update.ghl_fp;
    l.ekyte_fp = update.ekyte_fp;
    for (to, from) in [
        (&mut l.ghl_id, &update.ghl_id),
        (&mut l.ekyte_id, &update.ekyte_id),
        (&mut l.ghl_parent, &update.ghl_parent),
        (&mut l.ekyte_parent, &update.ekyte_parent),
    ] {
        if from.is_some() {
            to.clone_from(from);
        }
    }
    if update.state != LinkState::Claimed {
        l.claimed_by = None;
        l.claimed_at = None;
    }
    l.version += 1;
    l.updated_at = at;
    l
}

/// `second` written after `first`, as one update: the ids and parents `second` leaves alone
/// keep what `first` set.
fn merged(first: &LinkUpdate, second: &LinkUpdate) -> LinkUpdate {
    LinkUpdate {
        ghl_id: second.ghl_id.clone().or_else(|| first.ghl_id.clone()),
        ekyte_id: second.ekyte_id.clone().or_else(|| first.ekyte_id.clone()),
        ghl_parent: second
            .ghl_parent
            .clone()
            .or_else(|| first.ghl_parent.clone()),
        ekyte_parent: second
            .ekyte_parent
            .clone()
            .or_else(|| first.ekyte_parent.clone()),
        ..second.clone()
    }
}

impl Deferred {
    pub(crate) fn new(inner: Arc<dyn LinkStore>) -> Self {
        Self {
            inner,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change under the lock is a few inserts and pushes with no await: a panic
        // cannot leave it half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, link: &Link) {
        let mut st = self.state();
        if !st.is_pending(link.id) {
            st.known.insert(link.id, link.clone());
        }
    }

    /// The answer to a read of `shape` from the contact's links, read at once on the first
    /// such read of the sync; `None` for a read they do not answer (another shape, or
    /// another contact than the one read).
    async fn of_contact_read(
        &self,
        shape: Shape,
        tenant: &TenantId,
        contact: &str,
    ) -> Result<Option<Vec<Link>>, StoreError> {
        if !shape.of_contact() {
            return Ok(None);
        }
        if self.state().contact.is_none() {
            let rows = self.inner.of_contact(tenant, contact).await?;
            let mut st = self.state();
            if st.contact.is_none() {
                for l in rows {
                    if !st.is_pending(l.id) {
                        st.known.insert(l.id, l);
                    }
                }
                st.contact = Some((tenant.clone(), contact.to_owned()));
            }
        }
        Ok(self.state().contact_answer(shape, tenant, contact))
    }

    /// The link of `kind` with GHL id `ghl_id`, if the contact's links hold it (read at once,
    /// as the sync's first read of them would be, so the read is not an extra one). `None`
    /// says only that it is not among them, without asking the store further: a record
    /// linked under another contact is not found.
    pub(crate) async fn among_contact(
        &self,
        tenant: &TenantId,
        contact: &str,
        kind: EntityKind,
        ghl_id: &str,
    ) -> Result<Option<Link>, StoreError> {
        self.of_contact_read(Shape::ByGhl(EntityKind::Contact), tenant, contact)
            .await?;
        let st = self.state();
        if st.contact.as_ref() != Some(&(tenant.clone(), contact.to_owned())) {
            return Ok(None);
        }
        // Unique on (tenant, kind, GHL id): any known row with it is the link, as this unit
        // last knew it.
        Ok(st
            .known
            .values()
            .find(|l| same_tenant_kind(l, tenant, kind) && l.ghl_id.as_deref() == Some(ghl_id))
            .cloned())
    }

    /// Write the pending completions, in one statement where the store can. On an error
    /// they are dropped: the caller fails its message, whose retry reads the links again.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.state().pending);
        if pending.is_empty() {
            return Ok(());
        }
        let written = self.inner.complete_many(&pending).await;
        let mut st = self.state();
        match written {
            Ok(links) => {
                for l in links {
                    st.known.insert(l.id, l);
                }
                Ok(())
            }
            Err(e) => {
                // What the store holds for them is unknown now: read them again, and the
                // contact's links with them.
                for c in &pending {
                    st.known.remove(&c.link_id);
                }
                st.contact = None;
                Err(e)
            }
        }
    }
}

fn same_tenant_kind(l: &Link, tenant: &TenantId, kind: EntityKind) -> bool {
    &l.tenant == tenant && l.kind == kind
}

#[async_trait]
impl LinkStore for Deferred {
    async fn by_ghl(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_id: &str,
    ) -> Result<Option<Link>, StoreError> {
        let shape = Shape::ByGhl(kind);
        if let Some(found) = self.of_contact_read(shape, tenant, ghl_id).await? {
            return Ok(found.into_iter().next());
        }
        let row = self.inner.by_ghl(tenant, kind, ghl_id).await?;
        let mut st = self.state();
        Ok(st
            .overlay(row.into_iter().collect(), |l| {
                shape.matches(l, tenant, ghl_id)
            })
            .into_iter()
            .next())
    }

    async fn by_ekyte(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ekyte_id: &str,
    ) -> Result<Option<Link>, StoreError> {
        let row = self.inner.by_ekyte(tenant, kind, ekyte_id).await?;
        let mut st = self.state();
        Ok(st
            .overlay(row.into_iter().collect(), |l| {
                same_tenant_kind(l, tenant, kind) && l.ekyte_id.as_deref() == Some(ekyte_id)
            })
            .into_iter()
            .next())
    }

    async fn by_ghl_parent(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_parent: &str,
    ) -> Result<Vec<Link>, StoreError> {
        let shape = Shape::ByGhlParent(kind);
        if let Some(found) = self.of_contact_read(shape, tenant, ghl_parent).await? {
            return Ok(found);
        }
        let rows = self.inner.by_ghl_parent(tenant, kind, ghl_parent).await?;
        Ok(self
            .state()
            .overlay(rows, |l| shape.matches(l, tenant, ghl_parent)))
    }

    async fn by_ghl_ids(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_ids: &[String],
    ) -> Result<Vec<Link>, StoreError> {
        let rows = self.inner.by_ghl_ids(tenant, kind, ghl_ids).await?;
        Ok(self.state().overlay(rows, |l| {
            same_tenant_kind(l, tenant, kind)
                && l.ghl_id.as_ref().is_some_and(|id| ghl_ids.contains(id))
        }))
    }

    async fn by_ghl_parents(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ghl_parents: &[String],
    ) -> Result<Vec<Link>, StoreError> {
        let rows = self.inner.by_ghl_parents(tenant, kind, ghl_parents).await?;
        Ok(self.state().overlay(rows, |l| {
            same_tenant_kind(l, tenant, kind)
                && l.ghl_parent
                    .as_ref()
                    .is_some_and(|p| ghl_parents.contains(p))
        }))
    }

    async fn by_ekyte_parent(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        ekyte_parent: &str,
    ) -> Result<Vec<Link>, StoreError> {
        let rows = self
            .inner
            .by_ekyte_parent(tenant, kind, ekyte_parent)
            .await?;
        Ok(self.state().overlay(rows, |l| {
            same_tenant_kind(l, tenant, kind) && l.ekyte_parent.as_deref() == Some(ekyte_parent)
        }))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Link>, StoreError> {
        self.flush().await?;
        let rows = self.inner.list(tenant, kind, after_id, limit).await?;
        rows.iter().for_each(|l| self.remember(l));
        Ok(rows)
    }

    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        stale_after: Duration,
    ) -> Result<Claim, StoreError> {
        let completed = {
            let st = self.state();
            st.pending_links()
                .find(|l| {
                    same_tenant_kind(l, &key.tenant, key.kind)
                        && match key.side {
                            Side::Ghl => l.ghl_id.as_deref() == Some(key.id.as_str()),
                            Side::Ekyte => l.ekyte_id.as_deref() == Some(key.id.as_str()),
                        }
                })
                .cloned()
        };
        match completed {
            // Linked (or closed) by this sync: what the store will say once it is written.
            Some(l) if l.state != LinkState::Claimed => return Ok(Claim::AlreadyLinked(l)),
            Some(_) => self.flush().await?,
            None => {}
        }
        let claim = self.inner.claim(key, owner, stale_after).await?;
        match &claim {
            Claim::Claimed(l) | Claim::TakenOver(l) | Claim::AlreadyLinked(l) => {
                self.remember(l);
            }
            Claim::ClaimedByOther { .. } => {}
        }
        Ok(claim)
    }

    async fn complete(
        &self,
        link_id: i64,
        expected_version: i64,
        update: &LinkUpdate,
    ) -> Result<Link, StoreError> {
        let at_once = {
            let mut st = self.state();
            let st = &mut *st;
            match st.known.get(&link_id) {
                Some(known) if known.state == LinkState::Claimed => true,
                Some(known) if known.version == expected_version => {
                    let link = applied(known, update, Utc::now());
                    match st.pending.iter_mut().find(|c| c.link_id == link_id) {
                        Some(c) => c.update = merged(&c.update, update),
                        None => st.pending.push(Completion {
                            link_id,
                            expected_version,
                            update: update.clone(),
                        }),
                    }
                    st.known.insert(link_id, link.clone());
                    return Ok(link);
                }
                _ => false,
            }
        };
        if !at_once {
            // A link this sync did not read, or one it read at another version: the store
            // decides, after what is pending. (A claim's completion goes at once, and alone.)
            self.flush().await?;
        }
        let link = self
            .inner
            .complete(link_id, expected_version, update)
            .await?;
        self.remember(&link);
        Ok(link)
    }

    async fn release(&self, link_id: i64) -> Result<(), StoreError> {
        if self.state().is_pending(link_id) {
            self.flush().await?;
        }
        self.state().known.remove(&link_id);
        self.inner.release(link_id).await
    }

    async fn pending_ekyte_creates(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.flush().await?;
        self.inner.pending_ekyte_creates(tenant, kind, since).await
    }

    async fn insert_linked(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        update: &LinkUpdate,
    ) -> Result<Link, StoreError> {
        // Its ids are checked against the stored links, so those must be as completed.
        self.flush().await?;
        let link = self.inner.insert_linked(tenant, kind, update).await?;
        self.remember(&link);
        Ok(link)
    }
}

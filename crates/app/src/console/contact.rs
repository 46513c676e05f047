//! A contact as both sides and the audit log see it: found by GHL id, eKyte workspace id,
//! email or name; its linked records; field by field the last agreed value, GHL now and eKyte
//! now with the policy that decides the field; its history; sync now and dry-run now.

use std::sync::Arc;

use domain::{Contact, EntityKind, GhlContactId, Record, Side, TenantId};
use ports::store::{AuditQuery, AuditRecord, BaseRecord, Link};
use ports::{Priority, Scope};

use super::ConsoleState;

/// Links of a contact, of every kind it has below it.
pub const CHILD_KINDS: [EntityKind; 5] = [
    EntityKind::Task,
    EntityKind::Note,
    EntityKind::Comment,
    EntityKind::ProfileNote,
    EntityKind::Board,
];

/// The contacts whose GHL id, workspace id, email or name matches `q` (at most 20).
pub async fn find(
    s: &ConsoleState,
    tenant: &TenantId,
    q: &str,
) -> Result<Vec<Link>, ports::StoreError> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(l) = s.links.by_ghl(tenant, EntityKind::Contact, q).await? {
        return Ok(vec![l]);
    }
    if let Some(l) = s.links.by_ekyte(tenant, EntityKind::Contact, q).await? {
        return Ok(vec![l]);
    }
    let needle = q.to_lowercase();
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let page = s
            .links
            .list(tenant, EntityKind::Contact, after, 500)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for l in page {
            if let BaseRecord::Contact(c) = &l.base {
                let hay = [&c.email, &c.name, &c.first_name, &c.last_name];
                if hay.iter().any(|v| {
                    v.as_deref()
                        .is_some_and(|v| v.to_lowercase().contains(&needle))
                }) {
                    found.push(l);
                    if found.len() == 20 {
                        return Ok(found);
                    }
                }
            }
        }
    }
    Ok(found)
}

/// One synced field of the contact.
pub struct FieldRow {
    pub name: &'static str,
    pub agreed: String,
    pub ghl: String,
    pub ekyte: String,
    pub rule: String,
    pub differs: bool,
}

/// Everything the contact page shows.
pub struct ContactView {
    pub tenant: domain::Tenant,
    pub ghl_id: String,
    pub link: Option<Link>,
    pub children: Vec<Link>,
    pub fields: Vec<FieldRow>,
    /// Why a side could not be read now.
    pub read_errors: Vec<String>,
    pub history: Vec<AuditRecord>,
}

fn shown(v: Option<domain::FieldValue>) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) if v.is_empty() => "(empty)".to_owned(),
        Some(v) => v.to_string(),
    }
}

/// Read the contact on both sides now and lay it beside what was last agreed.
pub async fn view(
    s: &ConsoleState,
    tenant: domain::Tenant,
    ghl_id: &GhlContactId,
) -> Result<ContactView, ports::StoreError> {
    let link = s
        .links
        .by_ghl(&tenant.id, EntityKind::Contact, ghl_id.as_str())
        .await?;
    let mut children = Vec::new();
    for kind in CHILD_KINDS {
        children.extend(
            s.links
                .by_ghl_parent(&tenant.id, kind, ghl_id.as_str())
                .await?,
        );
    }
    let scope = Scope::new(Arc::new(tenant.clone()), Priority::RealTime);
    let ctx = tenant.settings.normalise_ctx();
    let mut read_errors = Vec::new();
    let ghl_now = match s.ghl.get_contact(&scope, ghl_id).await {
        Ok(c) => Some(c.contact.normalised(&ctx)),
        Err(e) => {
            read_errors.push(format!("GHL: {e}"));
            None
        }
    };
    let agreed = match link.as_ref().map(|l| &l.base) {
        Some(BaseRecord::Contact(c)) => Some(c.as_ref().clone()),
        _ => None,
    };
    let workspace = link
        .as_ref()
        .and_then(|l| l.ekyte_id.as_deref())
        .and_then(|id| domain::EkyteWorkspaceId::parse(id).ok());
    let ekyte_now = match workspace {
        Some(id) => {
            let hint = agreed.as_ref().and_then(|c| c.name.clone());
            match s.ekyte.get_workspace(&scope, id, hint.as_deref()).await {
                Ok(w) => Some(Contact {
                    name: Some(w.name),
                    ..Contact::default()
                }),
                Err(e) => {
                    read_errors.push(format!("eKyte: {e}"));
                    None
                }
            }
        }
        None => None,
    };
    let policy = &tenant.settings.policy.contact;
    let fields = Contact::field_names()
        .iter()
        .map(|name| {
            let on_ekyte = Contact::carries(Side::Ekyte, name);
            let agreed = agreed.as_ref().map(|c| c.get(name));
            let ghl = ghl_now.as_ref().map(|c| c.get(name));
            let ekyte = ekyte_now.as_ref().filter(|_| on_ekyte).map(|c| c.get(name));
            let differs = (ghl.is_some() && ghl != agreed) || (ekyte.is_some() && ekyte != agreed);
            let rule = policy.rule(name);
            FieldRow {
                name,
                agreed: shown(agreed),
                ghl: shown(ghl),
                ekyte: if on_ekyte {
                    shown(ekyte)
                } else {
                    "not kept in eKyte".to_owned()
                },
                rule: format!(
                    "{:?}, {:?}, owner {:?}",
                    rule.direction, rule.conflict, rule.owner
                ),
                differs,
            }
        })
        .collect();
    let history = s
        .audit
        .query(&AuditQuery {
            tenant: tenant.id.clone(),
            contact: Some(ghl_id.clone()),
            before_id: None,
            limit: 100,
        })
        .await?;
    Ok(ContactView {
        ghl_id: ghl_id.to_string(),
        tenant,
        link,
        children,
        fields,
        read_errors,
        history,
    })
}

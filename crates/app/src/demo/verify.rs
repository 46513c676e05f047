//! Convergence check: do GHL and eKyte agree, field by field, reading only the two simulators
//! (not our link store, so a bug in the store cannot hide a divergence)?
//!
//! For every contact of the location that carries the sync tag:
//! - exactly one workspace stands for it (its `ExternalId`, or for a contact made from an
//!   eKyte workspace, the workspace of that name), active unless the contact is archived or
//!   deleted, named after the contact;
//! - its tasks and the workspace's tasks pair up one to one by title, with the same body
//!   (eKyte's HTML read as text), due instant and status (GHL completed ↔ eKyte completed or
//!   cancelled); an eKyte task may stand alone only when cancelled (its GHL task was deleted);
//! - every GHL note (other than copies of eKyte comments) has a board note with the same
//!   content, and the workspace has the contact's profile note;
//! - every eKyte comment on its tasks has a GHL note carrying its text.
//!
//! And no entity exists twice: one workspace per contact, one task per title.

use std::collections::{BTreeMap, HashMap};

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use domain::normalise::{html_to_text, text_body};

use super::sim::{SYNC_TAG, World};

/// The verdict and what was compared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub converged: bool,
    /// At most 50 problems are listed.
    pub problems: Vec<String>,
    pub problem_count: usize,
    pub counts: Counts,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub ghl_contacts_synced: usize,
    pub ghl_tasks: usize,
    pub ghl_notes: usize,
    pub ekyte_workspaces: usize,
    pub ekyte_tasks: usize,
    pub ekyte_board_notes: usize,
    pub ekyte_comments: usize,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn instant(v: &Value, k: &str) -> Option<DateTime<Utc>> {
    s(v, k)
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| domain::normalise::instant(t.with_timezone(&Utc)))
}

fn display_name(c: &Value) -> String {
    let name = s(c, "name")
        .and_then(|n| domain::normalise::line(&n))
        .or_else(|| {
            let joined = [s(c, "firstName"), s(c, "lastName")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            domain::normalise::line(&joined)
        });
    name.or_else(|| s(c, "companyName"))
        .or_else(|| s(c, "email"))
        .unwrap_or_else(|| "(unnamed contact)".to_owned())
}

struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, p: String) {
        self.0.push(p);
    }
}

/// Compare both simulators.
pub fn verify(world: &World) -> anyhow::Result<Verdict> {
    let ghl = world
        .ghl
        .dump_location(&world.location)
        .map_err(|e| anyhow!("reading GHL: {e:?}"))?;
    let ek = world
        .ekyte
        .dump(world.company.company_id)
        .map_err(|e| anyhow!("reading eKyte: {e:?}"))?;
    let mut p = Problems(Vec::new());
    let mut counts = Counts::default();

    let prefix = format!("ghl:{}:", world.location);
    let mut ws_by_contact: HashMap<String, Vec<&sandbox::ekyte::Workspace>> = HashMap::new();
    let mut ws_by_name: HashMap<String, Vec<&sandbox::ekyte::Workspace>> = HashMap::new();
    for w in &ek.workspaces {
        match w
            .external_id
            .as_deref()
            .and_then(|e| e.strip_prefix(&prefix))
        {
            Some(c) => ws_by_contact.entry(c.to_owned()).or_default().push(w),
            None => ws_by_name.entry(w.name.clone()).or_default().push(w),
        }
    }
    let empty = vec![];
    let contacts = ghl["contacts"].as_array().unwrap_or(&empty);
    let tasks = ghl["tasks"].as_array().unwrap_or(&empty);
    let notes = ghl["notes"].as_array().unwrap_or(&empty);
    let mut tasks_of: HashMap<String, Vec<&Value>> = HashMap::new();
    for t in tasks {
        if let Some(c) = s(t, "contactId") {
            tasks_of.entry(c).or_default().push(t);
        }
    }
    let mut notes_of: HashMap<String, Vec<&Value>> = HashMap::new();
    for n in notes {
        if let Some(c) = s(n, "contactId") {
            notes_of.entry(c).or_default().push(n);
        }
    }
    let mut matched_ws = std::collections::HashSet::new();

    for c in contacts {
        let Some(id) = s(c, "id") else { continue };
        let tags: Vec<String> = c["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_lowercase))
                    .collect()
            })
            .unwrap_or_default();
        if !tags.iter().any(|t| t == SYNC_TAG) {
            continue;
        }
        counts.ghl_contacts_synced += 1;
        let name = display_name(c);
        let archived = tags.iter().any(|t| t == "ekyte-archived");
        let candidates: Vec<&sandbox::ekyte::Workspace> = match ws_by_contact.get(&id) {
            Some(v) => v.clone(),
            None => ws_by_name.get(&name).cloned().unwrap_or_default(),
        };
        let ws = match candidates.as_slice() {
            [one] => *one,
            [] => {
                p.push(format!("contact {id} ({name}) has no workspace"));
                continue;
            }
            many => {
                p.push(format!(
                    "contact {id} has {} workspaces (created twice)",
                    many.len()
                ));
                many[0]
            }
        };
        matched_ws.insert(ws.id);
        if ws.active == archived {
            p.push(format!(
                "workspace {} is {} but contact {id} is {}",
                ws.id,
                if ws.active { "active" } else { "inactive" },
                if archived { "archived" } else { "not archived" }
            ));
        }
        if ws.name != name {
            p.push(format!(
                "workspace {} is named {:?}, contact {id} {:?}",
                ws.id, ws.name, name
            ));
        }

        // Tasks, paired by title.
        let mine: Vec<&Value> = tasks_of.get(&id).cloned().unwrap_or_default();
        counts.ghl_tasks += mine.len();
        let theirs: Vec<&sandbox::ekyte::Task> = ek
            .tasks
            .iter()
            .filter(|t| t.workspace_id == ws.id)
            .collect();
        counts.ekyte_tasks += theirs.len();
        let mut by_title: BTreeMap<String, Vec<&sandbox::ekyte::Task>> = BTreeMap::new();
        for t in &theirs {
            by_title
                .entry(t.title.trim().to_owned())
                .or_default()
                .push(t);
        }
        let mut seen_titles = std::collections::HashSet::new();
        for g in &mine {
            let title = s(g, "title").unwrap_or_default().trim().to_owned();
            if !seen_titles.insert(title.clone()) {
                p.push(format!("contact {id} has two GHL tasks titled {title:?}"));
                continue;
            }
            let Some(e) = by_title.get(&title) else {
                p.push(format!(
                    "GHL task {:?} of contact {id} is missing in eKyte",
                    title
                ));
                continue;
            };
            if e.len() > 1 {
                p.push(format!(
                    "eKyte has {} tasks titled {title:?} in workspace {}",
                    e.len(),
                    ws.id
                ));
            }
            let e = e[0];
            let ghl_body = s(g, "body").and_then(|b| text_body(&b));
            let ek_body = html_to_text(&e.description);
            if ghl_body != ek_body {
                p.push(format!(
                    "task {title:?}: body differs (ghl {ghl_body:?}, ekyte {ek_body:?})"
                ));
            }
            let ghl_due = instant(g, "dueDate");
            let ek_due = e.current_due_date.map(domain::normalise::instant);
            if ghl_due != ek_due {
                p.push(format!(
                    "task {title:?}: due differs (ghl {ghl_due:?}, ekyte {ek_due:?})"
                ));
            }
            let ghl_done = g["completed"].as_bool().unwrap_or(false);
            let ek_done = matches!(e.situation.code(), 30 | 40);
            if ghl_done != ek_done {
                p.push(format!(
                    "task {title:?}: ghl completed={ghl_done}, ekyte situation {}",
                    e.situation.code()
                ));
            }
        }
        for (title, e) in &by_title {
            if !seen_titles.contains(title) && e.iter().any(|t| t.situation.code() != 40) {
                p.push(format!(
                    "eKyte task {title:?} in workspace {} has no GHL task",
                    ws.id
                ));
            }
        }

        // Notes: GHL → board notes; eKyte comments → GHL notes.
        let my_notes: Vec<&Value> = notes_of.get(&id).cloned().unwrap_or_default();
        counts.ghl_notes += my_notes.len();
        let boards: Vec<i64> = ek
            .boards
            .iter()
            .filter(|b| b.workspace_id == Some(ws.id))
            .map(|b| b.id)
            .collect();
        let board_notes: Vec<&sandbox::ekyte::Note> = ek
            .notes
            .iter()
            .filter(|n| boards.contains(&n.board_id))
            .collect();
        counts.ekyte_board_notes += board_notes.len();
        let board_texts: Vec<Option<String>> = board_notes
            .iter()
            .map(|n| html_to_text(&n.content))
            .collect();
        if !board_notes.iter().any(|n| n.title.starts_with("Profile")) {
            p.push(format!("workspace {} has no profile note", ws.id));
        }
        let comment_texts: Vec<String> = theirs
            .iter()
            .flat_map(|t| t.comments.iter())
            .filter_map(|c| html_to_text(&c.description))
            .collect();
        counts.ekyte_comments += comment_texts.len();
        let ghl_texts: Vec<String> = my_notes
            .iter()
            .filter_map(|n| s(n, "body").and_then(|b| text_body(&b)))
            .collect();
        for text in &ghl_texts {
            if text.starts_with("eKyte comment on") {
                continue;
            }
            let copies = board_texts
                .iter()
                .filter(|b| b.as_deref() == Some(text.as_str()))
                .count();
            match copies {
                1 => {}
                0 => p.push(format!(
                    "GHL note {text:?} of contact {id} has no board note"
                )),
                n => p.push(format!(
                    "GHL note {text:?} of contact {id} has {n} board notes"
                )),
            }
        }
        for comment in &comment_texts {
            let copies = ghl_texts
                .iter()
                .filter(|t| t.ends_with(comment.as_str()))
                .count();
            match copies {
                1 => {}
                0 => p.push(format!(
                    "eKyte comment {comment:?} has no GHL note on contact {id}"
                )),
                n => p.push(format!("eKyte comment {comment:?} became {n} GHL notes")),
            }
        }
    }
    for w in &ek.workspaces {
        if w.active && !matched_ws.contains(&w.id) {
            p.push(format!(
                "active workspace {} ({:?}) stands for no synced GHL contact",
                w.id, w.name
            ));
        }
    }
    counts.ekyte_workspaces = ek.workspaces.len();
    let problem_count = p.0.len();
    let mut problems = p.0;
    problems.truncate(50);
    Ok(Verdict {
        converged: problem_count == 0,
        problems,
        problem_count,
        counts,
    })
}

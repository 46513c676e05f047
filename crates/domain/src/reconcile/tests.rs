//! Unit tests and the properties (a)–(e) of reconciliation; (f) lives at the end.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::entities::{Appointment, Business, Contact, Note, Task};
use crate::ids::{GhlBusinessId, GhlUserId};
use crate::policy::{ConflictRule, DeleteAction, Direction, EntityPolicy, FieldRule, SyncPolicy};
use crate::record::{EntityKind, NormaliseCtx, TaskStatus};

fn at(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0).unwrap()
}

fn task(title: &str, status: TaskStatus) -> Task {
    Task {
        title: Some(title.into()),
        status,
        ..Task::default()
    }
}

fn seen<R>(r: &R, h: u32) -> Observed<R>
where
    R: Clone,
{
    Observed::present(r.clone(), Some(at(h)))
}

// ---------------------------------------------------------------- unit tests

#[test]
fn only_ghl_changed_updates_ekyte() {
    let base = task("a", TaskStatus::Open);
    let g = task("b", TaskStatus::Open);
    let r = reconcile(
        &Base::Linked(base.clone()),
        &seen(&g, 2),
        &seen(&base, 1),
        &LastWritten::default(),
        &EntityPolicy::task_default(),
    );
    assert!(r.ghl.is_empty());
    assert_eq!(
        r.ekyte,
        vec![WriteOp::Update(vec![FieldChange {
            field: "title",
            from: FieldValue::Text(Some("a".into())),
            to: FieldValue::Text(Some("b".into())),
        }])]
    );
    assert_eq!(r.merged, Base::Linked(g));
    assert!(r.conflicts.is_empty());
}

#[test]
fn newest_wins_on_a_two_way_conflict_and_is_reported() {
    let base = task("a", TaskStatus::Open);
    let g = task("from ghl", TaskStatus::Open);
    let e = task("from ekyte", TaskStatus::Open);
    let p = EntityPolicy::task_default();
    let r = reconcile(
        &Base::Linked(base),
        &seen(&g, 1),
        &seen(&e, 5),
        &LastWritten::default(),
        &p,
    );
    assert_eq!(
        r.merged.record().unwrap().title.as_deref(),
        Some("from ekyte")
    );
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].winner, Side::Ekyte);
    assert_eq!(r.conflicts[0].kind, ConflictKind::BothChanged);
    assert!(r.ekyte.is_empty());
    assert_eq!(r.ghl.len(), 1);
}

#[test]
fn owner_wins_when_times_tie_or_are_unknown() {
    let base = task("a", TaskStatus::Open);
    let g = task("g", TaskStatus::Open);
    let e = task("e", TaskStatus::Open);
    let p = EntityPolicy::task_default();
    let r = reconcile(
        &Base::Linked(base),
        &Observed::present(g, None),
        &Observed::present(e, Some(at(3))),
        &LastWritten::default(),
        &p,
    );
    assert_eq!(r.merged.record().unwrap().title.as_deref(), Some("g"));
}

#[test]
fn a_cancelled_ekyte_task_completes_in_ghl_and_stays_cancelled() {
    let base = task("a", TaskStatus::Open);
    let e = task("a", TaskStatus::Cancelled);
    let p = EntityPolicy::task_default();
    let r = reconcile(
        &Base::Linked(base.clone()),
        &seen(&base, 1),
        &seen(&e, 2),
        &LastWritten::default(),
        &p,
    );
    assert_eq!(r.ghl, vec![WriteOp::Complete]);
    assert!(r.ekyte.is_empty());
    // GHL then shows "completed": the same change in coarser form, nothing more to do.
    let g2 = apply_ops(Side::Ghl, Some(base), &r.ghl).unwrap();
    assert_eq!(g2.status, TaskStatus::Completed);
    let r2 = reconcile(
        &r.merged,
        &seen(&g2, 3),
        &seen(&e, 2),
        &LastWritten::default(),
        &p,
    );
    assert!(r2.is_noop(), "{r2:?}");
    assert_eq!(r2.merged.record().unwrap().status, TaskStatus::Cancelled);
}

#[test]
fn a_contact_edit_in_ekyte_of_a_ghl_field_cannot_happen_but_the_name_flows_back() {
    let base = Contact {
        name: Some("Ana".into()),
        email: Some("a@x.com".into()),
        ..Contact::default()
    };
    let ws = Contact {
        name: Some("Ana Souza Ltda".into()),
        ..Contact::default()
    };
    let p = EntityPolicy::contact_default();
    let r = reconcile(
        &Base::Linked(base.clone()),
        &seen(&base, 1),
        &seen(&ws, 2),
        &LastWritten::default(),
        &p,
    );
    assert_eq!(
        r.ghl,
        vec![WriteOp::Update(vec![FieldChange {
            field: "name",
            from: FieldValue::Text(Some("Ana".into())),
            to: FieldValue::Text(Some("Ana Souza Ltda".into())),
        }])]
    );
    assert_eq!(r.merged.record().unwrap().email.as_deref(), Some("a@x.com"));
}

#[test]
fn a_one_way_field_changed_on_the_wrong_side_is_reverted_and_reported() {
    let base = task("a", TaskStatus::Open);
    let e = task("edited in ekyte", TaskStatus::Open);
    let mut p = EntityPolicy::task_default();
    p.fields
        .insert("title".into(), FieldRule::one_way(Side::Ghl));
    let r = reconcile(
        &Base::Linked(base.clone()),
        &seen(&base, 1),
        &seen(&e, 2),
        &LastWritten::default(),
        &p,
    );
    assert_eq!(r.merged.record().unwrap().title.as_deref(), Some("a"));
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].kind, ConflictKind::NotOwner);
    assert_eq!(r.ekyte.len(), 1);
    assert!(r.ghl.is_empty());
}

#[test]
fn unlinked_creates_where_the_policy_allows() {
    let g = task("new", TaskStatus::Open);
    let p = EntityPolicy::task_default();
    let r = reconcile(
        &Base::Unlinked,
        &seen(&g, 1),
        &Observed::absent(),
        &LastWritten::default(),
        &p,
    );
    assert_eq!(r.ekyte, vec![WriteOp::Create(g.project(Side::Ekyte))]);
    let mut no = p.clone();
    no.create_in_ekyte = false;
    let r = reconcile(
        &Base::Unlinked,
        &seen(&g, 1),
        &Observed::absent(),
        &LastWritten::default(),
        &no,
    );
    assert_eq!(r.ekyte, vec![WriteOp::Skip(SkipReason::CreateNotAllowed)]);
    assert_eq!(r.merged, Base::Unlinked);
    assert!(r.is_noop());
}

#[test]
fn deletes_follow_the_policy() {
    let base = Contact {
        name: Some("Ana".into()),
        ..Contact::default()
    };
    let p = EntityPolicy::contact_default();
    // Workspace deactivated → GHL archived (tag), link closed.
    let r = reconcile(
        &Base::Linked(base.clone()),
        &seen(&base, 1),
        &Observed::absent(),
        &LastWritten::default(),
        &p,
    );
    assert_eq!(r.ghl, vec![WriteOp::Archive]);
    assert_eq!(r.merged, Base::Tombstone);
    // GHL contact deleted → workspace deactivated.
    let r = reconcile(
        &Base::Linked(base.clone()),
        &Observed::absent(),
        &seen(&base.project(Side::Ekyte), 1),
        &LastWritten::default(),
        &p,
    );
    assert_eq!(r.ekyte, vec![WriteOp::Delete]);
    // A closed link plans nothing, whatever the sides show.
    let r = reconcile(
        &Base::Tombstone,
        &seen(&base, 1),
        &Observed::absent(),
        &LastWritten::default(),
        &p,
    );
    assert!(r.is_noop());
}

#[test]
fn echo_of_our_own_lossy_write_is_not_a_change() {
    let base = task("a very long title indeed", TaskStatus::Open);
    // eKyte stored our write truncated.
    let stored = task("a very long", TaskStatus::Open);
    let lw = LastWritten {
        ghl: None,
        ekyte: Some(Fingerprint::of(&stored)),
    };
    let p = EntityPolicy::task_default();
    let r = reconcile(
        &Base::Linked(base.clone()),
        &seen(&base, 1),
        &seen(&stored, 2),
        &lw,
        &p,
    );
    assert!(r.is_noop(), "{r:?}");
    // Without the remembered fingerprint the truncation looks like an eKyte edit.
    let r = reconcile(
        &Base::Linked(base.clone()),
        &seen(&base, 1),
        &seen(&stored, 2),
        &LastWritten::default(),
        &p,
    );
    assert!(!r.is_noop());
}

// ---------------------------------------------------------------- properties

/// A record with symmetric sides, for the mirror property.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Sym {
    a: Option<String>,
    b: Option<String>,
    tags: Vec<String>,
}

impl Record for Sym {
    const KIND: EntityKind = EntityKind::Note;
    fn field_names() -> &'static [&'static str] {
        &["a", "b", "tags"]
    }
    fn get(&self, field: &str) -> FieldValue {
        match field {
            "a" => FieldValue::Text(self.a.clone()),
            "b" => FieldValue::Text(self.b.clone()),
            _ => FieldValue::List(self.tags.clone()),
        }
    }
    fn set(&mut self, field: &str, value: FieldValue) {
        match (field, value) {
            ("a", FieldValue::Text(v)) => self.a = v,
            ("b", FieldValue::Text(v)) => self.b = v,
            ("tags", FieldValue::List(v)) => self.tags = v,
            (f, v) => panic!("{f} {v:?}"),
        }
    }
    fn empty() -> Self {
        Self::default()
    }
    fn normalised(&self, _: &NormaliseCtx) -> Self {
        self.clone()
    }
}

fn small_text() -> BoxedStrategy<Option<String>> {
    prop_oneof![Just(None), "[ab]{1,2}".prop_map(Some)].boxed()
}

fn small_time() -> BoxedStrategy<Option<DateTime<Utc>>> {
    prop_oneof![Just(None), (0u32..3).prop_map(|h| Some(at(h)))].boxed()
}

fn status() -> BoxedStrategy<TaskStatus> {
    prop_oneof![
        Just(TaskStatus::Open),
        Just(TaskStatus::Completed),
        Just(TaskStatus::Cancelled)
    ]
    .boxed()
}

fn arb_task() -> BoxedStrategy<Task> {
    (
        small_text(),
        small_text(),
        small_time(),
        status(),
        prop::option::of(prop_oneof![Just("u1"), Just("u2")]),
    )
        .prop_map(|(title, body, due, status, assignee)| Task {
            title,
            body,
            due,
            status,
            assignee: assignee.map(|a| GhlUserId::parse(a).unwrap()),
            updated_at: None,
        })
        .boxed()
}

fn arb_contact() -> BoxedStrategy<Contact> {
    (
        small_text(),
        small_text(),
        small_text(),
        prop::collection::vec(
            prop_oneof![Just("x".to_owned()), Just("y".to_owned())],
            0..2,
        ),
        any::<bool>(),
        prop::option::of(Just("b1")),
    )
        .prop_map(|(name, email, company_name, mut tags, dnd, business)| {
            tags.sort();
            tags.dedup();
            Contact {
                name,
                email,
                company_name,
                tags,
                dnd,
                business_id: business.map(|b| GhlBusinessId::parse(b).unwrap()),
                ..Contact::default()
            }
        })
        .boxed()
}

fn arb_note() -> BoxedStrategy<Note> {
    (small_text(), small_text())
        .prop_map(|(title, body)| Note {
            title,
            body,
            created: None,
        })
        .boxed()
}

fn arb_sym() -> BoxedStrategy<Sym> {
    (
        small_text(),
        small_text(),
        prop::collection::vec(
            prop_oneof![Just("x".to_owned()), Just("y".to_owned())],
            0..2,
        ),
    )
        .prop_map(|(a, b, tags)| Sym { a, b, tags })
        .boxed()
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::GhlToEkyte),
        Just(Direction::EkyteToGhl),
        Just(Direction::TwoWay)
    ]
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Ghl), Just(Side::Ekyte)]
}

fn rule() -> impl Strategy<Value = FieldRule> {
    (
        direction(),
        prop_oneof![
            Just(ConflictRule::OwnerWins),
            Just(ConflictRule::NewestWins)
        ],
        side(),
    )
        .prop_map(|(direction, conflict, owner)| FieldRule {
            direction,
            conflict,
            owner,
        })
}

fn delete_action() -> impl Strategy<Value = DeleteAction> {
    prop_oneof![
        Just(DeleteAction::Delete),
        Just(DeleteAction::Archive),
        Just(DeleteAction::Cancel),
        Just(DeleteAction::Ignore)
    ]
}

fn policy_for<R: Record>() -> impl Strategy<Value = EntityPolicy> {
    let n = R::field_names().len();
    (
        prop::collection::vec(rule(), n),
        rule(),
        any::<bool>(),
        any::<bool>(),
        delete_action(),
        delete_action(),
    )
        .prop_map(|(rules, default_rule, cie, cig, ogd, oed)| EntityPolicy {
            fields: R::field_names()
                .iter()
                .map(|f| (*f).to_owned())
                .zip(rules)
                .collect::<BTreeMap<_, _>>(),
            default_rule,
            create_in_ekyte: cie,
            create_in_ghl: cig,
            on_ghl_delete: ogd,
            on_ekyte_delete: oed,
        })
}

/// A random situation: a base and what each side shows now (in the side's own projection),
/// with change times that sometimes tie.
#[derive(Debug, Clone)]
struct Scenario<R> {
    base: Base<R>,
    ghl: Observed<R>,
    ekyte: Observed<R>,
}

fn scenario<R: Record>(rec: BoxedStrategy<R>) -> impl Strategy<Value = Scenario<R>> {
    let base = prop_oneof![
        1 => Just(Base::Unlinked),
        1 => Just(Base::Tombstone),
        6 => rec.clone().prop_map(Base::Linked),
    ];
    // Each side: unchanged from base (when there is one), changed, or absent.
    let side_state = (0u8..10, rec.clone(), small_time());
    (base, side_state.clone(), side_state).prop_map(|(base, (gk, gr, gt), (ek, er, et))| {
        let pick = |kind: u8, fresh: R, side: Side, t| -> Observed<R> {
            let r = match (&base, kind) {
                (_, 0) => None,
                (Base::Linked(b), 1..=4) => Some(b.clone()),
                _ => Some(fresh),
            };
            Observed {
                record: r.map(|r| r.project(side)),
                updated_at: t,
            }
        };
        Scenario {
            ghl: pick(gk, gr, Side::Ghl, gt),
            ekyte: pick(ek, er, Side::Ekyte, et),
            base,
        }
    })
}

fn play<R: Record>(
    s: &Scenario<R>,
    r: &Reconciliation<R>,
) -> (Observed<R>, Observed<R>, LastWritten) {
    let g = apply_ops(Side::Ghl, s.ghl.record.clone(), &r.ghl);
    let e = apply_ops(Side::Ekyte, s.ekyte.record.clone(), &r.ekyte);
    let lw = LastWritten {
        ghl: g.as_ref().map(Fingerprint::of),
        ekyte: e.as_ref().map(Fingerprint::of),
    };
    (
        Observed {
            record: g,
            updated_at: s.ghl.updated_at,
        },
        Observed {
            record: e,
            updated_at: s.ekyte.updated_at,
        },
        lw,
    )
}

/// (a) apply the plan, reconcile again: nothing more to write — with or without the
/// remembered fingerprints.
fn check_idempotent<R: Record>(s: &Scenario<R>, p: &EntityPolicy) -> Result<(), TestCaseError> {
    let r1 = reconcile(&s.base, &s.ghl, &s.ekyte, &LastWritten::default(), p);
    let (g, e, lw) = play(s, &r1);
    let r2 = reconcile(&r1.merged, &g, &e, &lw, p);
    prop_assert!(r2.is_noop(), "second pass wrote: {:?}\nfirst: {:?}", r2, r1);
    let r3 = reconcile(&r1.merged, &g, &e, &LastWritten::default(), p);
    prop_assert!(
        r3.is_noop(),
        "second pass without fingerprints wrote: {:?}",
        r3
    );
    prop_assert_eq!(r2.merged, r1.merged);
    Ok(())
}

/// (b) our write comes back, stored by eKyte in its own lossy way (text cut to one
/// character): with the fingerprint of what eKyte stored, nothing is written.
fn check_no_echo<R: Record>(s: &Scenario<R>, p: &EntityPolicy) -> Result<(), TestCaseError> {
    let r1 = reconcile(&s.base, &s.ghl, &s.ekyte, &LastWritten::default(), p);
    let (g, e, _) = play(s, &r1);
    let lossy = |o: Observed<R>| Observed {
        record: o.record.map(|mut r| {
            for &f in R::field_names() {
                if let FieldValue::Text(Some(t)) = r.get(f) {
                    r.set(f, FieldValue::Text(Some(t.chars().take(1).collect())));
                }
            }
            r
        }),
        updated_at: o.updated_at,
    };
    let e = lossy(e);
    let lw = LastWritten {
        ghl: g.record.as_ref().map(Fingerprint::of),
        ekyte: e.record.as_ref().map(Fingerprint::of),
    };
    let r2 = reconcile(&r1.merged, &g, &e, &lw, p);
    prop_assert!(r2.is_noop(), "echo caused writes: {:?}", r2);
    Ok(())
}

/// (c) an update to a side never touches a field that side owns. (Deletes follow the delete
/// policy, not field ownership: a delete propagation is checked only for its update ops.)
fn check_owner_untouched<R: Record>(
    s: &Scenario<R>,
    p: &EntityPolicy,
) -> Result<(), TestCaseError> {
    let r = reconcile(&s.base, &s.ghl, &s.ekyte, &LastWritten::default(), p);
    let propagating_delete = r.merged == Base::Tombstone;
    for side in [Side::Ghl, Side::Ekyte] {
        let current = match side {
            Side::Ghl => &s.ghl.record,
            Side::Ekyte => &s.ekyte.record,
        };
        let Some(current) = current else { continue };
        let after = apply_ops(side, Some(current.clone()), r.ops(side));
        for &f in R::field_names() {
            if p.rule(f).direction.writes_to(side) {
                continue;
            }
            for op in r.ops(side) {
                if let WriteOp::Update(changes) = op {
                    prop_assert!(
                        changes.iter().all(|c| c.field != f),
                        "{side} owns {f}: {op:?}"
                    );
                }
            }
            if let (Some(after), false) = (&after, propagating_delete) {
                prop_assert_eq!(after.get(f), current.get(f), "{} owns {}", side, f);
            }
        }
    }
    Ok(())
}

/// (d) both sides made the same change: nothing to write, no conflict.
fn check_same_change<R: Record>(base: &R, now: &R, p: &EntityPolicy) -> Result<(), TestCaseError> {
    let r = reconcile(
        &Base::Linked(base.clone()),
        &Observed::present(now.project(Side::Ghl), Some(at(1))),
        &Observed::present(now.project(Side::Ekyte), Some(at(2))),
        &LastWritten::default(),
        p,
    );
    prop_assert!(r.is_noop(), "{:?}", r);
    prop_assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    Ok(())
}

/// (e) swapping the sides under the mirrored policy mirrors the result.
fn check_mirror<R: Record>(s: &Scenario<R>, p: &EntityPolicy) -> Result<(), TestCaseError> {
    let lw = LastWritten::default();
    let r = reconcile(&s.base, &s.ghl, &s.ekyte, &lw, p);
    let m = reconcile(&s.base, &s.ekyte, &s.ghl, &lw, &p.mirrored());
    prop_assert_eq!(&r.ghl, &m.ekyte);
    prop_assert_eq!(&r.ekyte, &m.ghl);
    prop_assert_eq!(&r.merged, &m.merged);
    let swapped: Vec<Conflict> = m
        .conflicts
        .iter()
        .map(|c| Conflict {
            ghl: c.ekyte.clone(),
            ekyte: c.ghl.clone(),
            winner: c.winner.other(),
            ..c.clone()
        })
        .collect();
    prop_assert_eq!(r.conflicts, swapped);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_idempotent_tasks(s in scenario(arb_task()), p in policy_for::<Task>()) {
        check_idempotent(&s, &p)?;
    }

    #[test]
    fn a_idempotent_contacts(s in scenario(arb_contact()), p in policy_for::<Contact>()) {
        check_idempotent(&s, &p)?;
    }

    #[test]
    fn a_idempotent_notes_default_policy(s in scenario(arb_note())) {
        check_idempotent(&s, &EntityPolicy::note_default())?;
    }

    #[test]
    fn b_no_echo_tasks(s in scenario(arb_task()), p in policy_for::<Task>()) {
        check_no_echo(&s, &p)?;
    }

    #[test]
    fn b_no_echo_contacts(s in scenario(arb_contact()), p in policy_for::<Contact>()) {
        check_no_echo(&s, &p)?;
    }

    #[test]
    fn c_owner_untouched_tasks(s in scenario(arb_task()), p in policy_for::<Task>()) {
        check_owner_untouched(&s, &p)?;
    }

    #[test]
    fn c_owner_untouched_contacts(s in scenario(arb_contact()), p in policy_for::<Contact>()) {
        check_owner_untouched(&s, &p)?;
    }

    #[test]
    fn d_same_change_tasks(b in arb_task(), now in arb_task(), p in policy_for::<Task>()) {
        check_same_change(&b, &now, &p)?;
    }

    #[test]
    fn d_same_change_contacts(b in arb_contact(), now in arb_contact(), p in policy_for::<Contact>()) {
        check_same_change(&b, &now, &p)?;
    }

    #[test]
    fn e_mirror_sym(s in scenario(arb_sym()), p in policy_for::<Sym>()) {
        check_mirror(&s, &p)?;
    }

    #[test]
    fn e_mirror_notes(s in scenario(arb_note()), p in policy_for::<Note>()) {
        check_mirror(&s, &p)?;
    }
}

// ---------------------------------------------------------------- (f) normalisation

fn messy_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[ \\ta-zA-Z0-9@.<>&\\n-]{0,16}")
}

fn check_normalised<R: Record>(raw: &R) -> Result<(), TestCaseError> {
    let ctx = NormaliseCtx::default();
    let once = raw.normalised(&ctx);
    let twice = once.normalised(&ctx);
    prop_assert_eq!(&twice, &once);
    prop_assert_eq!(Fingerprint::of(&twice), Fingerprint::of(&once));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn f_normalisation_is_idempotent(
        a in messy_text(), b in messy_text(), c in messy_text(), d in messy_text(),
        phone in prop::option::of("[+0-9 ()-]{0,16}"),
        tags in prop::collection::vec("[ A-Za-z]{0,6}", 0..5),
        due in prop::option::of(0i64..4_000_000_000),
        nanos in 0u32..1_000_000_000,
        st in status(),
    ) {
        let due = due.map(|s| Utc.timestamp_opt(s, nanos).unwrap());
        check_normalised(&Contact {
            first_name: a.clone(), last_name: b.clone(), name: None, email: c.clone(),
            phone: phone.clone(), company_name: d.clone(), country: a.clone(), tags: tags.clone(),
            custom_fields: [("cf1".to_owned(), b.clone().unwrap_or_default())].into(),
            dnd_channels: [("SMS".to_owned(), " Active ".to_owned())].into(),
            date_updated: due,
            ..Contact::default()
        })?;
        check_normalised(&Task { title: a.clone(), body: b.clone(), due, status: st, assignee: None, updated_at: due })?;
        check_normalised(&Note { title: c.clone(), body: d.clone(), created: due })?;
        check_normalised(&Appointment { title: a.clone(), start: due, end: due, status: b.clone(), calendar_id: None, address: c.clone(), notes: d.clone() })?;
        check_normalised(&Business { name: a, phone, email: b, website: c, description: d, ..Business::default() })?;
    }
}

#[test]
fn the_default_policy_is_valid() {
    assert_eq!(SyncPolicy::default().validate(), Ok(()));
}

//! A simulated world for the demo, the end-to-end suite and the benchmarks: both simulators,
//! a GHL location with a Private Integration Token, an eKyte company with an admin (API key,
//! MCP token) and a task type, seeded data, and people editing both sides.
//!
//! Data is generated from a seed, so the same seed gives the same contacts and edits.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use serde_json::{Value, json};

use domain::{
    EkyteCompanyId, EkyteMapping, EkyteTaskTypeId, LocationId, OnboardingTemplate, Selector,
    Tenant, TenantId, TenantSettings,
};
use sandbox::common::FaultConfig;
use sandbox::ekyte::{DefaultCompany, EkyteConfig, EkyteSandbox};
use sandbox::ghl::{GhlConfig, GhlSandbox, LocationSpec, PitSpec};

use crate::config::Config;

/// The tag that selects contacts for sync in the simulated tenant.
pub const SYNC_TAG: &str = "ekyte";
pub const LOCATION: &str = "simLocation000000001";

/// How much data and how many faults.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    pub contacts: usize,
    pub tasks_per_contact: usize,
    pub notes_per_contact: usize,
    pub appointments_per_contact: usize,
    pub businesses: usize,
    pub seed: u64,
    pub ghl_faults: FaultConfig,
    pub ekyte_faults: FaultConfig,
    /// GHL burst limit per interval (the real one is 100 per 10 s).
    pub ghl_rate_max: u32,
    pub ghl_rate_interval_ms: u64,
    pub onboarding: bool,
    /// Where the simulators listen: an interface, and a port each (0 = any free port).
    pub host: std::net::IpAddr,
    pub ghl_port: u16,
    pub ekyte_port: u16,
}

impl Default for WorldSpec {
    fn default() -> Self {
        Self {
            contacts: 20,
            tasks_per_contact: 2,
            notes_per_contact: 1,
            appointments_per_contact: 1,
            businesses: 3,
            seed: 7,
            ghl_faults: FaultConfig::default(),
            ekyte_faults: FaultConfig::default(),
            ghl_rate_max: 100,
            ghl_rate_interval_ms: 10_000,
            onboarding: true,
            host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            ghl_port: 0,
            ekyte_port: 0,
        }
    }
}

/// Both simulators, seeded, and what the tenant needs to reach them.
pub struct World {
    pub ghl: GhlSandbox,
    pub ekyte: EkyteSandbox,
    pub company: DefaultCompany,
    pub location: String,
    pub pit: String,
    pub contacts: Vec<String>,
    rng: StdRng,
    edit_counter: u64,
}

/// A due date on a whole second, a day or so ahead.
fn due(base: DateTime<Utc>, i: usize) -> DateTime<Utc> {
    base + Duration::hours(24 + (i as i64 % 240))
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 13, 0, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

const FIRST: [&str; 12] = [
    "Ana", "Bruno", "Carla", "Diego", "Elisa", "Fábio", "Gabi", "Heitor", "Iara", "João", "Kátia",
    "Lucas",
];
const LAST: [&str; 10] = [
    "Souza", "Lima", "Costa", "Pereira", "Almeida", "Rocha", "Dias", "Moura", "Teixeira", "Reis",
];

impl World {
    /// Start both simulators and seed them.
    pub async fn start(spec: &WorldSpec) -> anyhow::Result<Self> {
        let mut ghl_config = GhlConfig {
            host: spec.host.to_string(),
            port: spec.ghl_port,
            faults: spec.ghl_faults.clone(),
            ..GhlConfig::default()
        };
        ghl_config.rate_limit.max = spec.ghl_rate_max;
        ghl_config.rate_limit.interval_ms = spec.ghl_rate_interval_ms;
        let ghl = GhlSandbox::start(ghl_config)
            .await
            .context("starting the GHL simulator (is its port free?)")?;
        let ekyte = EkyteSandbox::start(EkyteConfig {
            host: spec.host,
            port: spec.ekyte_port,
            faults: spec.ekyte_faults.clone(),
            ..EkyteConfig::default()
        })
        .await
        .context("starting the eKyte simulator (is its port free?)")?;
        let company = ekyte
            .seed_default_company()
            .map_err(|e| anyhow!("seeding the eKyte company: {e:?}"))?;
        let location = ghl
            .create_location(LocationSpec {
                id: LOCATION.to_owned(),
                name: "Simulated Agency Client".to_owned(),
                ..LocationSpec::default()
            })
            .map_err(|e| anyhow!("creating the GHL location: {e:?}"))?;
        let pit = ghl
            .register_pit(PitSpec {
                location_id: Some(location.clone()),
                scopes: ghl::default_scopes(),
                ..PitSpec::default()
            })
            .map_err(|e| anyhow!("registering a GHL token: {e:?}"))?;
        let mut world = Self {
            ghl,
            ekyte,
            company,
            location,
            pit,
            contacts: Vec::new(),
            rng: StdRng::seed_from_u64(spec.seed),
            edit_counter: 0,
        };
        world.seed(spec)?;
        Ok(world)
    }

    fn seed(&mut self, spec: &WorldSpec) -> anyhow::Result<()> {
        let location = self.location.clone();
        self.contacts = self.seed_location(&location, spec, spec.contacts)?;
        Ok(())
    }

    /// Seed `location` with `contacts` contacts (and the spec's businesses, tasks, notes and
    /// appointments); returns the contacts' ids.
    fn seed_location(
        &self,
        location: &str,
        spec: &WorldSpec,
        contacts: usize,
    ) -> anyhow::Result<Vec<String>> {
        let base = base_time();
        let businesses: Vec<Value> = (0..spec.businesses)
            .map(|i| {
                json!({
                    "name": format!("Empresa {i} Ltda"),
                    "phone": format!("+5511300000{:02}", i % 100),
                    "email": format!("contato{i}@empresa.test"),
                    "website": format!("https://empresa{i}.test"),
                    "city": "São Paulo",
                    "country": "BR",
                    "description": format!("Cliente desde {}", 2010 + i % 15),
                })
            })
            .collect();
        let business_ids = if businesses.is_empty() {
            vec![]
        } else {
            self.ghl
                .seed_businesses(location, &businesses)
                .map_err(|e| anyhow!("seeding businesses: {e:?}"))?
        };
        let contacts: Vec<Value> = (0..contacts)
            .map(|i| {
                let first = FIRST[i % FIRST.len()];
                let last = LAST[(i / FIRST.len()) % LAST.len()];
                let mut c = json!({
                    "firstName": first,
                    "lastName": format!("{last} {i}"),
                    "email": format!("contact{i}@client.test"),
                    "phone": format!("+55119{:08}", 10_000_000 + i),
                    "companyName": format!("Cliente {i}"),
                    "city": "Campinas",
                    "country": "BR",
                    "tags": [SYNC_TAG],
                });
                if !business_ids.is_empty() && i % 3 == 0 {
                    c["businessId"] = json!(business_ids[i % business_ids.len()]);
                }
                c
            })
            .collect();
        let mut ids = Vec::with_capacity(contacts.len());
        for chunk in contacts.chunks(500) {
            ids.extend(
                self.ghl
                    .seed_contacts(location, chunk)
                    .map_err(|e| anyhow!("seeding contacts: {e:?}"))?,
            );
        }
        let mut appointments = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let tasks: Vec<Value> = (0..spec.tasks_per_contact)
                .map(|k| {
                    json!({
                        "title": format!("Task {k} of contact {i}"),
                        "body": format!("Deliverable {k}\nfor contact {i}"),
                        "dueDate": due(base, i + k).to_rfc3339(),
                        "completed": (i + k) % 5 == 0,
                    })
                })
                .collect();
            if !tasks.is_empty() {
                self.ghl
                    .seed_tasks(id, &tasks)
                    .map_err(|e| anyhow!("seeding tasks: {e:?}"))?;
            }
            let notes: Vec<Value> = (0..spec.notes_per_contact)
                .map(|k| json!({ "body": format!("Note {k} about contact {i}: call back on Monday") }))
                .collect();
            if !notes.is_empty() {
                self.ghl
                    .seed_notes(id, &notes)
                    .map_err(|e| anyhow!("seeding notes: {e:?}"))?;
            }
            for k in 0..spec.appointments_per_contact {
                let start = due(base, i + 3 * k);
                appointments.push(json!({
                    "contactId": id,
                    "title": format!("Meeting {k} with contact {i}"),
                    "startTime": start.to_rfc3339(),
                    "endTime": (start + Duration::hours(1)).to_rfc3339(),
                    "appointmentStatus": "confirmed",
                    "calendarId": "simCalendar00000001",
                    "address": "Zoom",
                }));
            }
        }
        for chunk in appointments.chunks(1000) {
            self.ghl
                .seed_appointments(chunk)
                .map_err(|e| anyhow!("seeding appointments: {e:?}"))?;
        }
        Ok(ids)
    }

    /// One more location on the same simulators (the `n`th, from 1), with a GHL token and an
    /// eKyte company of its own, seeded like the first with `contacts` contacts: what an
    /// agency-wide install adds. Its tenant is `sim{n}`.
    pub fn add_site(&self, n: usize, spec: &WorldSpec, contacts: usize) -> anyhow::Result<Site> {
        let company = self
            .ekyte
            .seed_default_company()
            .map_err(|e| anyhow!("seeding the eKyte company of site {n}: {e:?}"))?;
        let location = self
            .ghl
            .create_location(LocationSpec {
                id: format!("simLocation{n:09}"),
                name: format!("Simulated Agency Client {n}"),
                ..LocationSpec::default()
            })
            .map_err(|e| anyhow!("creating GHL location {n}: {e:?}"))?;
        let pit = self
            .ghl
            .register_pit(PitSpec {
                location_id: Some(location.clone()),
                scopes: ghl::default_scopes(),
                ..PitSpec::default()
            })
            .map_err(|e| anyhow!("registering a GHL token for location {n}: {e:?}"))?;
        let contacts = self.seed_location(&location, spec, contacts)?;
        let tenant = tenant_of(
            TenantId::parse(format!("sim{n}"))?,
            format!("Simulated agency client {n}"),
            &location,
            &company,
            spec,
        )?;
        Ok(Site {
            tenant,
            location,
            company,
            pit,
            contacts,
        })
    }

    /// The tenant of the simulated location.
    pub fn tenant(&self, spec: &WorldSpec) -> anyhow::Result<Tenant> {
        tenant_of(
            TenantId::parse("sim")?,
            "Simulated agency".into(),
            &self.location,
            &self.company,
            spec,
        )
    }

    /// Credentials of the tenant: eKyte API key and MCP token, GHL token.
    pub fn secrets(&self) -> (SecretString, Option<SecretString>, SecretString) {
        (
            SecretString::from(self.company.api_key.clone()),
            self.company.admin.mcp_token.clone().map(SecretString::from),
            SecretString::from(self.pit.clone()),
        )
    }

    /// Point a configuration at the simulators.
    pub fn configure(&self, mut config: Config) -> anyhow::Result<Config> {
        config.ghl.api_base = url::Url::parse(&self.ghl.base_url())?;
        config.ghl.webhook_ed25519_key = self.ghl.webhook_public_key_pem();
        config.ekyte.api_base = url::Url::parse(&self.ekyte.base_url())?;
        Ok(config)
    }

    fn next(&mut self) -> u64 {
        self.edit_counter += 1;
        self.edit_counter
    }

    /// `n` edits by a person in GHL (each emits its webhook): contact fields, new and completed
    /// tasks, new and edited notes, new appointments. Returns what was done.
    pub fn ghl_edits(&mut self, n: usize) -> anyhow::Result<BTreeMap<&'static str, usize>> {
        let mut done = BTreeMap::new();
        let dump = self
            .ghl
            .dump_location(&self.location)
            .map_err(|e| anyhow!("{e:?}"))?;
        let tasks = dump["tasks"].as_array().cloned().unwrap_or_default();
        let notes = dump["notes"].as_array().cloned().unwrap_or_default();
        for _ in 0..n {
            if self.contacts.is_empty() {
                break;
            }
            let contact = self.contacts[self.rng.gen_range(0..self.contacts.len())].clone();
            let k = self.next();
            let kind = self.rng.gen_range(0..6);
            let what = match kind {
                0 => {
                    self.ghl
                        .act_update_contact(&contact, json!({ "lastName": format!("Editada {k}") }))
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "contact renamed"
                }
                1 => {
                    self.ghl
                        .act_update_contact(
                            &contact,
                            json!({ "email": format!("changed{k}@client.test") }),
                        )
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "contact e-mail changed"
                }
                2 => {
                    self.ghl
                        .act_create_task(
                            &contact,
                            json!({
                                "title": format!("New task {k}"),
                                "body": format!("Asked for in edit {k}"),
                                "dueDate": due(base_time(), k as usize).to_rfc3339(),
                                "completed": false,
                            }),
                        )
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "task created"
                }
                3 => {
                    let open: Vec<&Value> = tasks
                        .iter()
                        .filter(|t| {
                            t["contactId"] == json!(contact) && t["completed"] != json!(true)
                        })
                        .collect();
                    match open.first() {
                        Some(t) => {
                            let id = t["id"].as_str().unwrap_or_default().to_owned();
                            self.ghl
                                .act_complete_task(&contact, &id, true)
                                .map_err(|e| anyhow!("{e:?}"))?;
                            "task completed"
                        }
                        None => continue,
                    }
                }
                4 => {
                    self.ghl
                        .act_create_note(
                            &contact,
                            json!({ "body": format!("Edit {k}: client asked for a quote") }),
                        )
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "note created"
                }
                _ => {
                    // A person edits a note of the contact's own, not the GHL copy of an eKyte
                    // comment: comments travel one way, so a rewritten copy would stand for
                    // neither a board note nor its comment any more.
                    let mine: Vec<&Value> = notes
                        .iter()
                        .filter(|x| x["contactId"] == json!(contact))
                        .filter(|x| {
                            !x["body"]
                                .as_str()
                                .is_some_and(|b| b.contains("eKyte comment on"))
                        })
                        .collect();
                    match mine.first() {
                        Some(note) => {
                            let id = note["id"].as_str().unwrap_or_default().to_owned();
                            self.ghl
                                .act_update_note(
                                    &contact,
                                    &id,
                                    json!({ "body": format!("Edit {k}: note rewritten") }),
                                )
                                .map_err(|e| anyhow!("{e:?}"))?;
                            "note edited"
                        }
                        None => continue,
                    }
                }
            };
            *done.entry(what).or_default() += 1;
        }
        Ok(done)
    }

    /// `n` edits by a person in eKyte on workspaces the sync made (those with a GHL
    /// `ExternalId`): task titles and due dates, completions, cancellations, comments, new
    /// tasks, and one new workspace. Returns what was done.
    pub fn ekyte_edits(&mut self, n: usize) -> anyhow::Result<BTreeMap<&'static str, usize>> {
        use sandbox::ekyte::{NewTask, NewWorkspace, TaskEdit};
        let company = self.company.company_id;
        let dump = self.ekyte.dump(company).map_err(|e| anyhow!("{e:?}"))?;
        let linked: Vec<i64> = dump
            .workspaces
            .iter()
            .filter(|w| {
                w.active
                    && w.external_id
                        .as_deref()
                        .is_some_and(|e| e.starts_with("ghl:"))
            })
            .map(|w| w.id)
            .collect();
        let mut done = BTreeMap::new();
        if linked.is_empty() {
            return Ok(done);
        }
        let tz: chrono_tz::Tz = self
            .company
            .timezone
            .parse()
            .unwrap_or(chrono_tz::America::Sao_Paulo);
        for i in 0..n {
            let k = self.next();
            let ws = linked[self.rng.gen_range(0..linked.len())];
            let open: Vec<i64> = dump
                .tasks
                .iter()
                .filter(|t| t.workspace_id == ws && t.situation.code() == 10)
                .map(|t| t.id)
                .collect();
            let kind = if i == 0 { 6 } else { self.rng.gen_range(0..6) };
            let pick = open.get(self.rng.gen_range(0..open.len().max(1))).copied();
            let what = match (kind, pick) {
                (0, Some(t)) => {
                    self.ekyte
                        .edit_task(
                            company,
                            t,
                            TaskEdit {
                                title: Some(format!("Renamed in eKyte {k}")),
                                ..TaskEdit::default()
                            },
                        )
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "task renamed"
                }
                (1, Some(t)) => {
                    // Whole minutes in the company's zone: what a person picks in eKyte.
                    let local = tz
                        .with_ymd_and_hms(2027, 1, 1 + (k % 27) as u32, 10, 30, 0)
                        .single()
                        .map(|d| d.with_timezone(&Utc));
                    self.ekyte
                        .edit_task(
                            company,
                            t,
                            TaskEdit {
                                current_due_date: local,
                                ..TaskEdit::default()
                            },
                        )
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "task due date moved"
                }
                (2, Some(t)) => {
                    self.ekyte
                        .complete_task(company, t)
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "task completed"
                }
                (3, Some(t)) => {
                    self.ekyte
                        .cancel_task(company, t)
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "task cancelled"
                }
                (4, Some(t)) => {
                    self.ekyte
                        .add_comment(
                            company,
                            t,
                            Some(self.company.editor.id),
                            &format!("<div>Comment {k}: approved by the client</div>"),
                        )
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "comment added"
                }
                (6, _) => {
                    self.ekyte
                        .create_workspace(
                            company,
                            NewWorkspace {
                                name: format!("Novo Cliente {k}"),
                                members: vec![self.company.admin.id, self.company.editor.id],
                                ..NewWorkspace::default()
                            },
                        )
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "workspace created"
                }
                _ => {
                    self.ekyte
                        .create_task(
                            company,
                            NewTask {
                                description: format!("<div>Created by a person, edit {k}</div>"),
                                current_due_date: Some(due(base_time(), k as usize)),
                                created_by: Some(self.company.editor.id),
                                ..NewTask::new(
                                    ws,
                                    self.company.task_type_id,
                                    &format!("Made in eKyte {k}"),
                                )
                            },
                        )
                        .map_err(|e| anyhow!("{e:?}"))?;
                    "task created"
                }
            };
            *done.entry(what).or_default() += 1;
        }
        Ok(done)
    }
}

/// A location of the simulated world beyond the first ([`World::add_site`]).
pub struct Site {
    pub tenant: Tenant,
    pub location: String,
    pub company: DefaultCompany,
    pub pit: String,
    pub contacts: Vec<String>,
}

impl Site {
    /// Credentials of the site's tenant: eKyte API key and MCP token, GHL token.
    pub fn secrets(&self) -> (SecretString, Option<SecretString>, SecretString) {
        (
            SecretString::from(self.company.api_key.clone()),
            self.company.admin.mcp_token.clone().map(SecretString::from),
            SecretString::from(self.pit.clone()),
        )
    }
}

/// The tenant of a simulated location and its eKyte company.
fn tenant_of(
    id: TenantId,
    name: String,
    location: &str,
    company: &DefaultCompany,
    spec: &WorldSpec,
) -> anyhow::Result<Tenant> {
    let settings = TenantSettings {
        selector: Selector::Tag {
            tag: SYNC_TAG.to_owned(),
        },
        onboarding: if spec.onboarding {
            vec![OnboardingTemplate {
                key: "welcome".into(),
                title: "Welcome call".into(),
                body: Some("Introduce the team and agree the first deliverables.".into()),
                due_in_hours: 48,
            }]
        } else {
            vec![]
        },
        // The simulated book is seeded just before the tenant is added, and the demo's
        // story is that every one of those contacts is a new client: onboarding for all.
        onboarding_backfill: spec.onboarding,
        phone_region: "BR".into(),
        ekyte: EkyteMapping {
            task_type_id: Some(EkyteTaskTypeId::new(company.task_type_id as u64)?),
            user_email: Some(company.admin.email.clone()),
            timezone: company.timezone.clone(),
            ..EkyteMapping::default()
        },
        ..TenantSettings::default()
    };
    settings.validate()?;
    Ok(Tenant {
        id,
        name,
        location_id: LocationId::parse(location)?,
        ekyte_company_id: EkyteCompanyId::new(company.company_id as u64)?,
        active: true,
        settings,
        install: Default::default(),
    })
}

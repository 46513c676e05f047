//! The unified view (M7): one "Profile" note per workspace showing a contact's profile, its
//! business and its appointments, rendered as the HTML eKyte stores.
//!
//! Rendering is pure and deterministic: the same inputs give the same bytes, so the note's
//! fingerprint changes only when something shown changed, and an unchanged contact costs no
//! write. Nothing here depends on the current time (a list of "upcoming" appointments would
//! change by itself as time passes and make every pass rewrite the note).

use std::fmt::Write as _;

use crate::entities::{Appointment, Business, Contact};
use crate::normalise::{escape_html, text_to_html};

/// At most this many appointments are shown, the latest by start time.
pub const MAX_APPOINTMENTS: usize = 20;

/// The note's title.
pub fn title(contact: &Contact) -> String {
    format!("Profile — {}", contact.display_name())
}

/// The note's HTML body.
pub fn render(
    contact: &Contact,
    business: Option<&Business>,
    appointments: &[Appointment],
) -> String {
    let mut h = String::new();
    let row = |h: &mut String, label: &str, value: Option<&str>| {
        if let Some(v) = value {
            let _ = write!(
                h,
                "<div><b>{}:</b> {}</div>",
                escape_html(label),
                escape_html(v)
            );
        }
    };
    let _ = write!(h, "<h2>{}</h2>", escape_html(&contact.display_name()));
    row(&mut h, "First name", contact.first_name.as_deref());
    row(&mut h, "Last name", contact.last_name.as_deref());
    row(&mut h, "E-mail", contact.email.as_deref());
    row(&mut h, "Phone", contact.phone.as_deref());
    row(&mut h, "Company", contact.company_name.as_deref());
    let address = [
        contact.address1.as_deref(),
        contact.city.as_deref(),
        contact.state.as_deref(),
        contact.postal_code.as_deref(),
        contact.country.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    row(
        &mut h,
        "Address",
        (!address.is_empty()).then_some(address.as_str()),
    );
    row(&mut h, "Website", contact.website.as_deref());
    row(&mut h, "Timezone", contact.timezone.as_deref());
    if !contact.tags.is_empty() {
        row(&mut h, "Tags", Some(&contact.tags.join(", ")));
    }
    if contact.dnd {
        row(&mut h, "Do not disturb", Some("all channels"));
    } else {
        let channels: Vec<&str> = contact
            .dnd_channels
            .iter()
            .filter(|(_, s)| s.as_str() != "inactive")
            .map(|(c, _)| c.as_str())
            .collect();
        if !channels.is_empty() {
            row(&mut h, "Do not disturb", Some(&channels.join(", ")));
        }
    }
    for (k, v) in &contact.custom_fields {
        row(&mut h, k, Some(v));
    }
    row(
        &mut h,
        "Assigned to (GHL user)",
        contact.assigned_to.as_ref().map(|a| a.as_str()),
    );

    if let Some(b) = business {
        let _ = write!(
            h,
            "<h3>Business: {}</h3>",
            escape_html(b.name.as_deref().unwrap_or("(unnamed)"))
        );
        row(&mut h, "Phone", b.phone.as_deref());
        row(&mut h, "E-mail", b.email.as_deref());
        row(&mut h, "Website", b.website.as_deref());
        let address = [
            b.address.as_deref(),
            b.city.as_deref(),
            b.state.as_deref(),
            b.postal_code.as_deref(),
            b.country.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        row(
            &mut h,
            "Address",
            (!address.is_empty()).then_some(address.as_str()),
        );
        if let Some(d) = &b.description {
            h.push_str(&text_to_html(d));
        }
    }

    if !appointments.is_empty() {
        let mut sorted: Vec<&Appointment> = appointments.iter().collect();
        sorted.sort_by(|a, b| (a.start, &a.title).cmp(&(b.start, &b.title)));
        let shown = &sorted[sorted.len().saturating_sub(MAX_APPOINTMENTS)..];
        h.push_str("<h3>Appointments</h3><ul>");
        for a in shown {
            let when = match (a.start, a.end) {
                (Some(s), Some(e)) => {
                    format!("{} – {} UTC", s.format("%Y-%m-%d %H:%M"), e.format("%H:%M"))
                }
                (Some(s), None) => format!("{} UTC", s.format("%Y-%m-%d %H:%M")),
                _ => "(no time)".to_owned(),
            };
            let _ = write!(
                h,
                "<li>{} — {}{}{}</li>",
                escape_html(&when),
                escape_html(a.title.as_deref().unwrap_or("(untitled)")),
                a.status
                    .as_deref()
                    .map(|s| format!(" [{}]", escape_html(s)))
                    .unwrap_or_default(),
                a.address
                    .as_deref()
                    .map(|s| format!(" @ {}", escape_html(s)))
                    .unwrap_or_default(),
            );
        }
        h.push_str("</ul>");
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn renders_profile_business_and_appointments_escaped() {
        let c = Contact {
            name: Some("Ana <Souza>".into()),
            email: Some("ana@x.com".into()),
            tags: vec!["ekyte".into(), "vip".into()],
            ..Contact::default()
        };
        let b = Business {
            name: Some("Souza & Filhos".into()),
            ..Business::default()
        };
        let a = Appointment {
            title: Some("Kick-off".into()),
            start: Some(Utc.with_ymd_and_hms(2026, 1, 5, 13, 0, 0).unwrap()),
            end: Some(Utc.with_ymd_and_hms(2026, 1, 5, 14, 0, 0).unwrap()),
            status: Some("confirmed".into()),
            ..Appointment::default()
        };
        let html = render(&c, Some(&b), &[a]);
        assert!(html.contains("<h2>Ana &lt;Souza&gt;</h2>"), "{html}");
        assert!(html.contains("Souza &amp; Filhos"));
        assert!(html.contains("2026-01-05 13:00 – 14:00 UTC — Kick-off [confirmed]"));
        assert!(html.contains("ekyte, vip"));
        assert_eq!(render(&c, Some(&b), &[]), render(&c, Some(&b), &[]));
        assert_eq!(title(&c), "Profile — Ana <Souza>");
    }
}

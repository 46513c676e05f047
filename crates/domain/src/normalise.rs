//! Normalisation: the one way each kind of value is written in a canonical record.
//!
//! Two records that mean the same thing must compare equal and hash to the same fingerprint,
//! whichever side they were read from. The rules:
//!
//! | kind | rule |
//! |---|---|
//! | single-line text (names, titles, addresses) | trim; runs of white space become one space; empty becomes absent |
//! | e-mail | trim, lower-case; empty becomes absent |
//! | phone | E.164 (`+5511987654321`) when it parses as a valid number, using the tenant's default region for numbers without a country code; otherwise the trimmed input as it came |
//! | country | trim, upper-case (ISO 3166-1 alpha-2 as GHL uses) |
//! | timestamps | UTC, truncated to whole seconds (GHL sends milliseconds, eKyte seven decimals; neither side's fraction is meaningful for a sync) |
//! | tags | trim, lower-case (GHL stores tags lower-case), empty dropped, sorted, de-duplicated |
//! | bodies (notes, task descriptions) | **plain text is canonical.** HTML (what eKyte stores) is turned into text by [`html_to_text`]; line endings become `\n`, trailing spaces on each line are dropped, three or more line breaks become two, and the whole is trimmed. Text is turned into HTML for eKyte by [`text_to_html`], one `<div>` per line (eKyte turns `<p>` into `<div>` itself, API.md §4.2), and `html_to_text(text_to_html(t)) == t` for any normalised `t`. |
//!
//! Every function here is idempotent: normalising a normalised value changes nothing. The
//! property tests in this module and in `reconcile` check it.

use chrono::{DateTime, SubsecRound, Utc};

/// Default region used to read phone numbers that carry no country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneRegion(phonenumber::country::Id);

impl PhoneRegion {
    /// Parse an ISO 3166-1 alpha-2 code such as `US` or `BR`.
    pub fn parse(code: &str) -> Option<Self> {
        code.trim()
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .ok()
            .map(Self)
    }
}

impl Default for PhoneRegion {
    fn default() -> Self {
        Self(phonenumber::country::Id::US)
    }
}

/// Trim and collapse inner white space; `None` when nothing is left.
pub fn line(raw: &str) -> Option<String> {
    let joined = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then_some(joined)
}

/// [`line`] over an optional value.
pub fn opt_line(raw: Option<&str>) -> Option<String> {
    raw.and_then(line)
}

/// Trim and lower-case an e-mail address.
pub fn email(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_lowercase)
}

/// E.164 when the number parses as valid; the trimmed input otherwise.
pub fn phone(raw: Option<&str>, region: PhoneRegion) -> Option<String> {
    let trimmed = raw.map(str::trim).filter(|s| !s.is_empty())?;
    // A number with its own country code is read without the default region: with one,
    // phonenumber 0.3 strips a trunk prefix it should not (`+55 11 …` read as US loses `11`).
    let region = (!trimmed.starts_with('+')).then_some(region.0);
    match phonenumber::parse(region, trimmed) {
        Ok(number) if phonenumber::is_valid(&number) => {
            Some(number.format().mode(phonenumber::Mode::E164).to_string())
        }
        _ => Some(trimmed.to_owned()),
    }
}

/// Upper-case ISO country code.
pub fn country(raw: Option<&str>) -> Option<String> {
    opt_line(raw).map(|s| s.to_uppercase())
}

/// UTC, whole seconds.
pub fn instant(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

/// [`instant`] over an optional value.
pub fn opt_instant(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.map(instant)
}

/// Trimmed, lower-cased, sorted, de-duplicated tags.
pub fn tags<I, S>(raw: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = raw
        .into_iter()
        .filter_map(|t| line(t.as_ref()))
        .map(|t| t.to_lowercase())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The canonical plain-text form of a body that is already text.
pub fn text_body(raw: &str) -> Option<String> {
    let unified = raw.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(unified.len());
    let mut blank_run = 0usize;
    for l in unified.split('\n') {
        let l = l.trim_end();
        if l.trim().is_empty() {
            blank_run += 1;
            // At most one empty line between paragraphs.
            if blank_run == 1 {
                out.push('\n');
            }
            continue;
        }
        blank_run = 0;
        out.push_str(l);
        out.push('\n');
    }
    let trimmed = out.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// [`text_body`] over an optional value.
pub fn opt_text_body(raw: Option<&str>) -> Option<String> {
    raw.and_then(text_body)
}

/// Escape text for an HTML element body.
pub fn escape_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Canonical text → the HTML eKyte stores: one `<div>` per line, `<div><br></div>` for an
/// empty line.
pub fn text_to_html(text: &str) -> String {
    text.split('\n')
        .map(|l| {
            if l.is_empty() {
                "<div><br></div>".to_owned()
            } else {
                format!("<div>{}</div>", escape_html(l))
            }
        })
        .collect()
}

/// HTML → canonical text.
///
/// Block elements (`div`, `p`, `li`, headings, `tr`) and `<br>` end a line; every other tag is
/// dropped; the common named entities and numeric references are decoded; `<script>` and
/// `<style>` content is dropped. The result goes through [`text_body`].
pub fn html_to_text(html: &str) -> Option<String> {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    // Whether the text written since the last block boundary is non-empty, so that
    // `<div><br></div>` yields one line break, not two.
    let mut line_open = false;
    while let Some(lt) = rest.find('<') {
        push_decoded(&mut out, &rest[..lt], &mut line_open);
        let after = &rest[lt + 1..];
        let Some(gt) = after.find('>') else {
            // A lone '<' is text.
            push_decoded(&mut out, &rest[lt..], &mut line_open);
            rest = "";
            break;
        };
        let tag = after[..gt].trim();
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match name.as_str() {
            "script" | "style" if !closing => {
                let close = format!("</{name}");
                match rest.to_ascii_lowercase().find(&close) {
                    Some(end) => {
                        let from = &rest[end..];
                        rest = from.find('>').map_or("", |g| &from[g + 1..]);
                    }
                    None => rest = "",
                }
            }
            "br" => {
                out.push('\n');
                line_open = false;
            }
            "div" | "p" | "li" | "ul" | "ol" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6"
            | "blockquote" | "pre" | "table"
                if line_open =>
            {
                out.push('\n');
                line_open = false;
            }
            _ => {}
        }
    }
    push_decoded(&mut out, rest, &mut line_open);
    text_body(&out)
}

fn push_decoded(out: &mut String, text: &str, line_open: &mut bool) {
    if text.is_empty() {
        return;
    }
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        push_text(out, &rest[..amp], line_open);
        let after = &rest[amp + 1..];
        let decoded = after.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let entity = &after[..semi];
            decode_entity(entity).map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                let mut buf = [0u8; 4];
                push_text(out, c.encode_utf8(&mut buf), line_open);
                rest = &after[semi + 1..];
            }
            None => {
                push_text(out, "&", line_open);
                rest = after;
            }
        }
    }
    push_text(out, rest, line_open);
}

fn push_text(out: &mut String, text: &str, line_open: &mut bool) {
    // White space that spans a line break between tags is source layout, not content.
    if text.is_empty() || (text.trim().is_empty() && text.contains(['\n', '\r'])) {
        return;
    }
    // Raw newlines inside HTML are layout, not content; block tags and <br> make lines.
    for c in text.chars() {
        let c = if c == '\n' || c == '\r' { ' ' } else { c };
        out.push(c);
    }
    if !text.trim().is_empty() {
        *line_open = true;
    }
}

fn decode_entity(entity: &str) -> Option<char> {
    match entity {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" | "#39" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let num = entity.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_and_lines() {
        assert_eq!(
            email(Some("  Ana@Example.COM ")),
            Some("ana@example.com".into())
        );
        assert_eq!(email(Some("   ")), None);
        assert_eq!(line("  Ana \t  Maria "), Some("Ana Maria".into()));
        assert_eq!(country(Some(" br")), Some("BR".into()));
    }

    #[test]
    fn phones_become_e164_where_they_parse() {
        let us = PhoneRegion::default();
        let br = PhoneRegion::parse("br").unwrap();
        assert_eq!(
            phone(Some("(202) 555-0143"), us),
            Some("+12025550143".into())
        );
        assert_eq!(
            phone(Some("+55 11 98765-4321"), us),
            Some("+5511987654321".into())
        );
        assert_eq!(
            phone(Some("11 98765-4321"), br),
            Some("+5511987654321".into())
        );
        assert_eq!(phone(Some(" ext. 12 "), us), Some("ext. 12".into()));
        assert_eq!(phone(Some(""), us), None);
    }

    #[test]
    fn tags_are_a_sorted_set() {
        assert_eq!(
            tags(["VIP", " ekyte", "vip", "", "b"]),
            vec!["b", "ekyte", "vip"]
        );
    }

    #[test]
    fn html_and_text_meet_in_one_form() {
        let html = "<p>Hello&nbsp;<b>Ana</b></p><div><br></div><div>Line 2 &amp; 3</div>\n<ul><li>a</li><li>b</li></ul>";
        assert_eq!(
            html_to_text(html).as_deref(),
            Some("Hello Ana\n\nLine 2 & 3\na\nb")
        );
        let text = "Call Ana <today>\n\n  indented & \"quoted\"";
        let canon = text_body(text).unwrap();
        assert_eq!(html_to_text(&text_to_html(&canon)), Some(canon));
        assert_eq!(
            html_to_text("<script>alert(1)</script>x &#x41;&#66;"),
            Some("x AB".into())
        );
        assert_eq!(html_to_text("a < b"), Some("a < b".into()));
    }

    #[test]
    fn text_bodies_collapse_blank_runs() {
        assert_eq!(text_body("a  \r\n\r\n\r\n\nb\n\n"), Some("a\n\nb".into()));
        assert_eq!(text_body(" \n \n"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn text_body_is_idempotent(s in "\\PC{0,80}") {
            if let Some(once) = text_body(&s) {
                prop_assert_eq!(text_body(&once), Some(once.clone()));
            }
        }

        #[test]
        fn html_round_trip_keeps_normalised_text(s in "[ -~\\n\\t\u{e0}-\u{ff}]{0,80}") {
            if let Some(canon) = text_body(&s) {
                prop_assert_eq!(html_to_text(&text_to_html(&canon)), Some(canon));
            }
        }

        #[test]
        fn phone_is_idempotent(s in "[+0-9 ()-]{0,20}") {
            let r = PhoneRegion::default();
            if let Some(once) = phone(Some(&s), r) {
                prop_assert_eq!(phone(Some(&once), r), Some(once.clone()));
            }
        }

        #[test]
        fn line_is_idempotent(s in "\\PC{0,40}") {
            if let Some(once) = line(&s) {
                prop_assert_eq!(line(&once), Some(once.clone()));
            }
        }
    }
}

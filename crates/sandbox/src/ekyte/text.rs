//! Small text rules eKyte applies: accent-insensitive matching and the `<p>` → `<div>` rewrite.

/// Lower-case and strip the accents Portuguese (and its neighbours) use, so `Reunião` and
/// `REUNIAO` compare equal (API.md §4.2 `/notes`: categories match case/accent-insensitively).
pub fn fold(s: &str) -> String {
    s.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            'ý' | 'ÿ' => 'y',
            other => other,
        })
        .collect()
}

/// `needle` occurs in `haystack`, ignoring case and accents.
pub fn contains_folded(haystack: &str, needle: &str) -> bool {
    fold(haystack).contains(&fold(needle))
}

/// The automation API's description rule (API.md §4.2 `/tasks`: "HTML or text; `<p>` is
/// converted to `<div>` lines"). Plain text becomes one `<div>` per line, HTML-escaped.
pub fn automation_description(input: &str) -> String {
    if !input.contains('<') {
        return input
            .lines()
            .map(|l| format!("<div>{}</div>", escape(l)))
            .collect();
    }
    let mut out = String::with_capacity(input.len() + 16);
    let mut rest = input;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let Some(end) = tail.find('>') else {
            out.push_str(tail);
            rest = "";
            break;
        };
        let tag = &tail[..=end];
        out.push_str(&rewrite_p(tag).unwrap_or_else(|| tag.to_owned()));
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `<p …>` → `<div …>`, `</p>` → `</div>`; any other tag → `None`.
fn rewrite_p(tag: &str) -> Option<String> {
    let inner = &tag[1..tag.len() - 1];
    let (closing, name_and_rest) = match inner.strip_prefix('/') {
        Some(r) => (true, r),
        None => (false, inner),
    };
    let name_end = name_and_rest
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(name_and_rest.len());
    if !name_and_rest[..name_end].eq_ignore_ascii_case("p") {
        return None;
    }
    let attrs = &name_and_rest[name_end..];
    Some(if closing {
        "</div>".to_owned()
    } else {
        format!("<div{attrs}>")
    })
}

/// Minimal HTML escaping for text placed inside an element.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_accents() {
        assert_eq!(fold("  Reunião de Ação "), "reuniao de acao");
        assert!(contains_folded("Cliente São Paulo", "sao"));
    }

    #[test]
    fn rewrites_paragraphs_only() {
        assert_eq!(
            automation_description("<p>Olá</p><P class=\"x\">b</P><pre>c</pre>"),
            "<div>Olá</div><div class=\"x\">b</div><pre>c</pre>"
        );
        assert_eq!(
            automation_description("linha 1\nlinha & 2"),
            "<div>linha 1</div><div>linha &amp; 2</div>"
        );
    }
}

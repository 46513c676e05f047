//! Query-string and JSON-argument reading with ASP.NET's manners.
//!
//! eKyte's server is ASP.NET (API.md §1, SRV): query parameter names bind case-insensitively
//! (`workspaceid` = `workspaceId`), an empty value counts as absent, and numbers may arrive as
//! strings. JSON body property names are matched exactly, though: the automation API expects
//! PascalCase (N8N `CLAUDE.md`), and being strict here exposes a client that sends camelCase.

use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::dates::{ParsedDate, parse_bound, parse_local};
use super::store::SimError;

/// Query parameters, names lower-cased.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.to_lowercase(), v.into_owned()))
                .collect(),
        )
    }

    /// First non-empty value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = name.to_lowercase();
        self.0
            .iter()
            .find(|(k, v)| *k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, SimError> {
        self.get(name)
            .map(|v| v.parse::<i64>().map_err(|_| SimError::bad_value(name)))
            .transpose()
    }

    /// `1`/`true` → true; anything else (or absent) → false.
    pub fn flag(&self, name: &str) -> bool {
        matches!(
            self.get(name).map(str::to_lowercase).as_deref(),
            Some("1" | "true")
        )
    }

    /// A filter bound in the company's timezone.
    pub fn bound(
        &self,
        name: &str,
        tz: Tz,
        upper: bool,
        date_only: super::dates::DateOnlyMeans,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, SimError> {
        self.get(name)
            .map(|v| parse_bound(v, tz, upper, date_only).map_err(|_| SimError::bad_date(name, v)))
            .transpose()
    }
}

/// A JSON object's fields, read with exact names.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn raw(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A string field; numbers and booleans are taken as their text.
    pub fn str(&self, name: &str) -> Result<Option<String>, SimError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(SimError::bad_value(name)),
        }
    }

    /// A non-blank string field.
    pub fn text(&self, name: &str) -> Result<Option<String>, SimError> {
        Ok(self.str(name)?.filter(|s| !s.trim().is_empty()))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, SimError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| SimError::bad_value(name)),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| SimError::bad_value(name)),
            Some(_) => Err(SimError::bad_value(name)),
        }
    }

    /// The first of several accepted names that is present, as an integer.
    pub fn int_any(&self, names: &[&str]) -> Result<Option<i64>, SimError> {
        for n in names {
            if let Some(v) = self.int(n)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Booleans, `1`/`0` and `"true"`/`"false"`.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, SimError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => Ok(Some(n.as_f64() != Some(0.0))),
            Some(Value::String(s)) => match s.trim().to_lowercase().as_str() {
                "" => Ok(None),
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(SimError::bad_value(name)),
            },
            Some(_) => Err(SimError::bad_value(name)),
        }
    }

    /// A zone-less local date (the company's timezone); see [`super::dates`].
    pub fn date(&self, name: &str, tz: Tz) -> Result<Option<ParsedDate>, SimError> {
        match self.str(name)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => parse_local(&s, tz)
                .map(Some)
                .map_err(|_| SimError::bad_date(name, &s)),
        }
    }

    pub fn uuid(&self, name: &str) -> Result<Option<uuid::Uuid>, SimError> {
        match self.text(name)? {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| SimError::bad_value(name)),
        }
    }

    pub fn array(&self, name: &str) -> Result<Option<&'a Vec<Value>>, SimError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(SimError::bad_value(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_names_are_case_insensitive_and_blank_is_absent() {
        let p = Params::parse(Some("WorkspaceID=7&apikey=k&name=&page=x"));
        assert_eq!(p.get("workspaceId"), Some("7"));
        assert_eq!(p.get("apiKey"), Some("k"));
        assert_eq!(p.get("name"), None);
        assert!(p.int("page").is_err());
    }

    #[test]
    fn json_fields_are_exact_but_numbers_may_be_strings() {
        let v = json!({"WorkspaceId": "12", "Title": "x", "title": "y", "Active": 0});
        let f = Fields(v.as_object().unwrap());
        assert_eq!(f.int("WorkspaceId").unwrap(), Some(12));
        assert_eq!(f.text("Title").unwrap().as_deref(), Some("x"));
        assert_eq!(f.text("TITLE").unwrap(), None);
        assert_eq!(f.bool("Active").unwrap(), Some(false));
    }
}

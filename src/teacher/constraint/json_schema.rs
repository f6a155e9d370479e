//! JSON schema → regex, for constraints on JSON output.
//!
//! Supported: `type` string / integer / number / boolean / null / object / array (or a list of
//! them), `enum`, `const`, `anyOf` / `oneOf`, string `minLength` / `maxLength`, array `items` /
//! `minItems` / `maxItems`, object `properties` (written in the schema's order; every property
//! listed in `required` must appear, the others may be left out from the end — a regex cannot
//! express every subset without blowing up). Anything else (`$ref`, `pattern`, `patternProperties`,
//! numeric bounds, …) is refused with the key named, rather than silently ignored.
//!
//! Whitespace between tokens is bounded (at most [`WS`]), so a model cannot pad forever.

use super::ConstraintError;
use serde_json::Value;

/// Whitespace allowed between JSON tokens.
const WS: &str = r"[ \n]{0,4}";
/// A JSON string's characters: anything but `"`, `\` and control characters, or an escape.
const CHAR: &str = r#"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})"#;
/// Keys of a schema this converter reads or may ignore safely (annotations).
const KNOWN: &[&str] = &[
    "type",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "minLength",
    "maxLength",
    "items",
    "minItems",
    "maxItems",
    "properties",
    "required",
    "additionalProperties",
    "title",
    "description",
    "$schema",
    "default",
    "examples",
];
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 16;

/// The regex of every JSON text valid under `schema` (within the supported subset).
pub fn to_regex(schema: &Value) -> Result<String, ConstraintError> {
    regex(schema, "", 0)
}

fn invalid(path: &str, msg: impl std::fmt::Display) -> ConstraintError {
    ConstraintError::Invalid(format!("JSON schema at {}: {msg}", if path.is_empty() { "the root" } else { path }))
}

fn regex(schema: &Value, path: &str, depth: usize) -> Result<String, ConstraintError> {
    if depth > MAX_DEPTH {
        return Err(invalid(path, format!("nested deeper than {MAX_DEPTH}")));
    }
    let obj = match schema {
        Value::Bool(true) => return Err(invalid(path, "`true` (any value) cannot be a constraint; give a type")),
        Value::Object(o) => o,
        other => return Err(invalid(path, format!("a schema must be an object, not {other}"))),
    };
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(path, format!("`{k}` is not supported in constraints")));
    }
    if let Some(c) = obj.get("const") {
        return Ok(literal(c));
    }
    if let Some(e) = obj.get("enum") {
        let values = e.as_array().filter(|a| !a.is_empty()).ok_or_else(|| invalid(path, "`enum` must be a non-empty list"))?;
        return Ok(format!("(?:{})", values.iter().map(literal).collect::<Vec<_>>().join("|")));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(list) = obj.get(key) {
            let list = list.as_array().filter(|a| !a.is_empty()).ok_or_else(|| invalid(path, format!("`{key}` must be a non-empty list")))?;
            let parts = list.iter().enumerate().map(|(i, s)| regex(s, &format!("{path}.{key}[{i}]"), depth + 1)).collect::<Result<Vec<_>, _>>()?;
            return Ok(format!("(?:{})", parts.join("|")));
        }
    }
    let types: Vec<&str> = match obj.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().map(|t| t.as_str().ok_or_else(|| invalid(path, "`type` lists a non-string"))).collect::<Result<_, _>>()?,
        Some(other) => return Err(invalid(path, format!("`type` must be a string or a list, not {other}"))),
        None => return Err(invalid(path, "no `type`, `enum`, `const` or `anyOf`: say what the value is")),
    };
    let parts = types.iter().map(|t| typed(obj, t, path, depth)).collect::<Result<Vec<_>, _>>()?;
    Ok(if parts.len() == 1 { parts.into_iter().next().unwrap_or_default() } else { format!("(?:{})", parts.join("|")) })
}

fn count(obj: &serde_json::Map<String, Value>, key: &str, path: &str) -> Result<Option<u64>, ConstraintError> {
    obj.get(key).map(|v| v.as_u64().ok_or_else(|| invalid(path, format!("`{key}` must be a whole number")))).transpose()
}

fn bounds(min: Option<u64>, max: Option<u64>, path: &str) -> Result<String, ConstraintError> {
    Ok(match (min.unwrap_or(0), max) {
        (lo, Some(hi)) if hi < lo => return Err(invalid(path, format!("maximum {hi} is below minimum {lo}"))),
        (0, None) => "*".to_string(),
        (1, None) => "+".to_string(),
        (lo, None) => format!("{{{lo},}}"),
        (lo, Some(hi)) => format!("{{{lo},{hi}}}"),
    })
}

fn typed(obj: &serde_json::Map<String, Value>, ty: &str, path: &str, depth: usize) -> Result<String, ConstraintError> {
    Ok(match ty {
        "string" => {
            let reps = bounds(count(obj, "minLength", path)?, count(obj, "maxLength", path)?, path)?;
            format!(r#""{CHAR}{reps}""#)
        }
        "integer" => r"-?(?:0|[1-9][0-9]{0,15})".to_string(),
        "number" => r"-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,16})?(?:[eE][+-]?[0-9]{1,2})?".to_string(),
        "boolean" => "(?:true|false)".to_string(),
        "null" => "null".to_string(),
        "array" => {
            let item = match obj.get("items") {
                Some(s) => regex(s, &format!("{path}.items"), depth + 1)?,
                None => return Err(invalid(path, "an array needs `items`")),
            };
            let (min, max) = (count(obj, "minItems", path)?, count(obj, "maxItems", path)?);
            let more = bounds(min.map(|m| m.saturating_sub(1)), max.map(|m| m.saturating_sub(1)), path)?;
            let some = format!("{item}(?:{WS},{WS}{item}){more}");
            let body = match (min.unwrap_or(0), max) {
                (_, Some(0)) => String::new(),
                (0, _) => format!("(?:{some})?"),
                _ => some,
            };
            format!(r"\[{WS}{body}{WS}\]")
        }
        "object" => object(obj, path, depth)?,
        other => return Err(invalid(path, format!("unknown type {other:?}"))),
    })
}

fn object(obj: &serde_json::Map<String, Value>, path: &str, depth: usize) -> Result<String, ConstraintError> {
    let props = match obj.get("properties") {
        Some(Value::Object(p)) => p,
        Some(_) => return Err(invalid(path, "`properties` must be an object")),
        None => return Ok(format!(r"\{{{WS}\}}")),
    };
    let required: Vec<&str> = obj.get("required").and_then(Value::as_array).map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if let Some(r) = required.iter().find(|r| !props.contains_key(**r)) {
        return Err(invalid(path, format!("`required` names {r:?}, which is not in `properties`")));
    }
    // Properties in order; the ones after the last required one are optional, as a tail.
    let last_required = props.keys().rposition(|k| required.contains(&k.as_str()));
    let mut members = Vec::new();
    for (k, s) in props {
        let value = regex(s, &format!("{path}.{k}"), depth + 1)?;
        members.push(format!(r#"{}{WS}:{WS}{value}"#, regex_syntax::escape(&serde_json::to_string(k).unwrap_or_default())));
    }
    let fixed = last_required.map_or(0, |i| i + 1);
    let nest = |ms: &[String]| ms.iter().rev().fold(String::new(), |t, m| format!("(?:{WS},{WS}{m}{t})?"));
    let optional = &members[fixed..];
    let body = if fixed > 0 {
        format!("{}{}", members[..fixed].join(&format!("{WS},{WS}")), nest(optional))
    } else if let Some((first, rest)) = optional.split_first() {
        format!("(?:{first}{})?", nest(rest))
    } else {
        String::new()
    };
    Ok(format!(r"\{{{WS}{body}{WS}\}}"))
}

/// The exact JSON text of `v` (compact), escaped as a regex.
fn literal(v: &Value) -> String {
    regex_syntax::escape(&v.to_string())
}

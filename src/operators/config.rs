//! Pieces shared by operator configs: an ordered `old: new` column map, and the checks every
//! column list gets when an operator is built (not empty, no repeats, `_id` only where allowed).
//!
//! The configs themselves live beside their operators; this file only keeps the validation
//! wording the same across them.

use crate::operators::{OpError, ROW_ID};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::HashSet;

/// A YAML map of column names to column names (`{question: seed_question}`), in file order, so
/// that the columns an operator adds appear in the order they were written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for ColumnMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = ColumnMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of column names, `old: new`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ColumnMap, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    pairs.push((k, v));
                }
                Ok(ColumnMap(pairs))
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

/// Whether a column list may name the engine column [`ROW_ID`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowId {
    /// `_id` may be listed.
    Allowed,
    /// Listing `_id` is a spec error (the engine owns it).
    Forbidden,
}

/// Check a column list from key `key` of operator `operator`: not empty, no empty names, no
/// repeats, and `_id` only where `row_id` allows it.
pub fn check_columns(names: &[String], key: &str, row_id: RowId, operator: &str) -> Result<(), OpError> {
    if names.is_empty() {
        return Err(OpError::spec(operator, format!("`{key}` is empty; list at least one column")));
    }
    let mut seen = HashSet::new();
    for n in names {
        check_name(n, key, row_id, operator)?;
        if !seen.insert(n.as_str()) {
            return Err(OpError::spec(operator, format!("`{key}` lists column `{n}` twice")));
        }
    }
    Ok(())
}

/// Check one column name from key `key`: not empty, and `_id` only where `row_id` allows it.
pub fn check_name(name: &str, key: &str, row_id: RowId, operator: &str) -> Result<(), OpError> {
    if name.trim().is_empty() {
        return Err(OpError::spec(operator, format!("`{key}` has an empty column name")));
    }
    if name == ROW_ID && row_id == RowId::Forbidden {
        return Err(OpError::spec(operator, format!("`{key}` names `{ROW_ID}`, the engine's row id, which operators may not change")));
    }
    Ok(())
}

/// Test helpers: build an operator from a JSON config the way the pipeline layer does.
#[cfg(test)]
pub mod testing {
    use crate::operators::{Aggregate, BuildContext, OpError, Operator, Step, Transform};
    use std::sync::Arc;

    /// Parse `config` as `C` (panicking on a parse error) and build it as a transform named `name`.
    pub fn transform<C: Step>(config: serde_json::Value, name: &str) -> Result<Arc<dyn Transform>, OpError> {
        match build::<C>(config, name)? {
            Operator::Transform(t) => Ok(t),
            other => panic!("{} built as {other:?}, not a transform", C::KIND),
        }
    }

    /// Parse `config` as `C` and build it as an aggregate named `name`.
    pub fn aggregate<C: Step>(config: serde_json::Value, name: &str) -> Result<Arc<dyn Aggregate>, OpError> {
        match build::<C>(config, name)? {
            Operator::Aggregate(a) => Ok(a),
            other => panic!("{} built as {other:?}, not an aggregate", C::KIND),
        }
    }

    // So that tests can `unwrap_err()` a build result.
    impl std::fmt::Debug for dyn Transform {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Transform")
        }
    }
    impl std::fmt::Debug for dyn Aggregate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Aggregate")
        }
    }

    fn build<C: Step>(config: serde_json::Value, name: &str) -> Result<Operator, OpError> {
        let c: C = serde_json::from_value(config.clone()).unwrap_or_else(|e| panic!("{} config {config} does not parse: {e}", C::KIND));
        c.build(name, &BuildContext::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_map_keeps_file_order() {
        let m: ColumnMap = serde_json::from_str(r#"{"z": "a", "b": "c", "a": "q"}"#).unwrap();
        assert_eq!(m.0, vec![("z".into(), "a".into()), ("b".into(), "c".into()), ("a".into(), "q".into())]);
        assert!(serde_json::from_str::<ColumnMap>(r#"{"z": 1}"#).is_err());
    }

    #[test]
    fn column_lists_are_checked() {
        let ok = ["a".to_string(), "b".to_string()];
        assert!(check_columns(&ok, "columns", RowId::Forbidden, "op").is_ok());
        let e = check_columns(&[], "columns", RowId::Forbidden, "op").unwrap_err();
        assert_eq!(e.to_string(), "operator `op`: `columns` is empty; list at least one column");
        let e = check_columns(&["a".into(), "a".into()], "columns", RowId::Allowed, "op").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = check_columns(&["_id".into()], "columns", RowId::Forbidden, "op").unwrap_err();
        assert!(matches!(e, OpError::Spec { .. }) && e.to_string().contains("_id"), "{e}");
    }
}

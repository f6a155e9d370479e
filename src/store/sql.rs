//! SQL over a run folder with DataFusion: the tables `labflow sql` and the mixer query.
//!
//! Tables, each over the Parquet files the run's manifest lists (so a query sees one committed
//! run, never a half-written one), read lazily from the run's object store:
//!
//! - `generated`: every leaf's rows, with `leaf` and `kind` first; a column some leaves lack is
//!   null for them.
//! - `rejects`: every dropped row: `leaf`, `_id`, `step`, `reason`, `row` (JSON).
//! - `leaves`: one row per leaf of the manifest: `leaf`, `kind`, `pipeline`, `hash`, `rows`,
//!   `rejects`, `error`.
//! - one table per Parquet file a mix folder's `mix_manifest.json` lists, named after the file
//!   (`knowledge_train_msgs`, `skills_train_msgs`, …), when a mix folder is given.

use crate::engine::generate::read_manifest;
use crate::store::dataset::{self, DatasetError};
use crate::store::Location;
use datafusion::arrow::array::{ArrayRef, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::{cast, ident, lit, DataFrame, ParquetReadOptions, SessionContext};
use datafusion::scalar::ScalarValue;
use std::sync::Arc;

/// Why a run could not be queried.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// No manifest.
    #[error("{0} has no run manifest (manifest.json); run `labflow generate --output {0}` first")]
    NoRun(String),
    /// Reading failed.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// DataFusion refused the query or failed to run it.
    #[error("{0}")]
    Query(String),
}

fn query_err(e: DataFusionError) -> SqlError {
    SqlError::Query(e.to_string())
}

/// The URL under which `loc`'s store is registered with DataFusion, and a file's URL in it.
struct Registered {
    base: String,
}

impl Registered {
    fn new(ctx: &SessionContext, loc: &Location, n: usize) -> Result<Registered, SqlError> {
        let base = format!("labflow{n}://store");
        let url = url::Url::parse(&base).map_err(|e| SqlError::Query(e.to_string()))?;
        ctx.register_object_store(&url, loc.store.clone());
        Ok(Registered { base })
    }
    fn url(&self, loc: &Location, rel: &str) -> String {
        format!("{}/{}", self.base, loc.child(rel).as_ref())
    }
}

/// A session with the run's tables (and a mix folder's, when given) registered.
pub async fn session(run: &Location, mix: Option<&Location>) -> Result<SessionContext, SqlError> {
    let ctx = SessionContext::new();
    let mut warnings = Vec::new();
    let manifest = read_manifest(run, &mut warnings).await?.ok_or_else(|| SqlError::NoRun(run.display.clone()))?;
    let reg = Registered::new(&ctx, run, 0)?;
    let mut generated = Vec::new();
    let mut rejects = Vec::new();
    for leaf in &manifest.leaves {
        for f in leaf.files.iter().filter(|f| f.path.ends_with(".parquet")) {
            let opts = ParquetReadOptions::default();
            let df = ctx.read_parquet(reg.url(run, &f.path), opts).await.map_err(query_err)?;
            let tags = [("leaf", leaf.leaf.as_str()), ("kind", leaf.kind.as_str())];
            if f.path.starts_with("generated/") {
                generated.push((df, tags));
            } else if f.path.starts_with("rejects/") {
                rejects.push((df, [tags[0]]));
            }
        }
    }
    register_union(&ctx, "generated", generated, &["leaf", "kind"]).await?;
    register_union(&ctx, "rejects", rejects, &["leaf"]).await?;
    ctx.register_table("leaves", Arc::new(leaves_table(&manifest)?)).map_err(query_err)?;
    if let Some(mix) = mix {
        let bytes = dataset::read_bytes(mix, crate::mix::MIX_MANIFEST)
            .await?
            .ok_or_else(|| SqlError::Query(format!("{} has no {}; run `labflow mix` first", mix.display, crate::mix::MIX_MANIFEST)))?;
        let m: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| SqlError::Query(format!("{}: {e}", mix.display)))?;
        let reg = Registered::new(&ctx, mix, 1)?;
        for f in m["files"].as_array().into_iter().flatten().filter_map(|f| f["path"].as_str()) {
            if let Some(name) = f.strip_suffix(".parquet") {
                let df = ctx.read_parquet(reg.url(mix, f), ParquetReadOptions::default()).await.map_err(query_err)?;
                ctx.register_table(name, df.into_view()).map_err(query_err)?;
            }
        }
    }
    Ok(ctx)
}

/// Register the union of `parts` as `name`: tag columns first, then every column any part
/// has, typed as the first part that has it, null where a part lacks it.
async fn register_union<const N: usize>(
    ctx: &SessionContext,
    name: &str,
    parts: Vec<(DataFrame, [(&str, &str); N])>,
    tags: &[&str],
) -> Result<(), SqlError> {
    let mut columns: Vec<(String, DataType)> = Vec::new();
    for (df, _) in &parts {
        for f in df.schema().fields() {
            if !columns.iter().any(|(n, _)| n == f.name()) {
                columns.push((f.name().clone(), f.data_type().clone()));
            }
        }
    }
    let mut union: Option<DataFrame> = None;
    for (df, values) in parts {
        let have: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        let mut exprs: Vec<_> = values.iter().map(|(k, v)| lit(*v).alias(*k)).collect();
        for (c, t) in &columns {
            let e = if have.contains(c) { cast(ident(c), t.clone()) } else { lit(ScalarValue::try_from(t).map_err(query_err)?) };
            exprs.push(e.alias(c));
        }
        let df = df.select(exprs).map_err(query_err)?;
        union = Some(match union {
            None => df,
            Some(u) => u.union(df).map_err(query_err)?,
        });
    }
    match union {
        Some(df) => ctx.register_table(name, df.into_view()).map_err(query_err)?,
        None => {
            let schema = Arc::new(Schema::new(tags.iter().map(|t| Field::new(*t, DataType::Utf8, false)).collect::<Vec<_>>()));
            ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![]]).map_err(query_err)?)).map_err(query_err)?
        }
    };
    Ok(())
}

fn leaves_table(m: &crate::engine::report::Manifest) -> Result<MemTable, SqlError> {
    let text = |f: fn(&crate::engine::report::LeafDone) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from(m.leaves.iter().map(f).collect::<Vec<_>>()))
    };
    let num = |f: fn(&crate::engine::report::LeafDone) -> u64| -> ArrayRef { Arc::new(UInt64Array::from(m.leaves.iter().map(f).collect::<Vec<_>>())) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("leaf", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("rejects", DataType::UInt64, false),
        Field::new("error", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            text(|l| Some(l.leaf.as_str())),
            text(|l| Some(l.kind.as_str())),
            text(|l| Some(l.pipeline.as_str())),
            text(|l| Some(l.hash.as_str())),
            num(|l| l.rows),
            num(|l| l.rejects),
            text(|l| l.error.as_deref()),
        ],
    )
    .map_err(|e| SqlError::Query(e.to_string()))?;
    MemTable::try_new(schema, vec![vec![batch]]).map_err(query_err)
}

/// Run `sql` against `ctx`, collecting the result; an unknown table's error lists the tables.
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, SqlError> {
    let df = match ctx.sql(sql).await {
        Ok(df) => df,
        Err(e) => {
            let mut tables: Vec<String> = ctx.catalog_names().iter().filter_map(|c| ctx.catalog(c)).flat_map(|c| {
                c.schema_names().into_iter().filter_map(move |s| c.schema(&s)).flat_map(|s| s.table_names())
            }).collect();
            tables.sort();
            return Err(SqlError::Query(format!("{e}\n(tables: {})", tables.join(", "))));
        }
    };
    df.collect().await.map_err(query_err)
}

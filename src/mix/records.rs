//! Training records in the reference's schema — `id`, `messages` (`[{role, content}]`),
//! `metadata` (a JSON object stored as a string) and `unmask` — and the rows they are made from.
//!
//! The record schema is the one InstructLab's mixer writes and its trainer reads
//! (`../shared/data/samples/ilab-generate-run-legal-theft/output/*_train_msgs_*.jsonl`); in
//! Parquet, `messages` is `list<struct<role: string, content: string>>`, as Hugging Face
//! `datasets` types it.

use arrow::array::{Array, ArrayRef, BooleanArray, BooleanBuilder, ListArray, ListBuilder, StringArray, StringBuilder, StructArray, StructBuilder};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// One turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` (or `pretraining` in some reference outputs).
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A turn of `role` saying `content`.
    pub fn new(role: &str, content: impl Into<String>) -> Message {
        Message { role: role.to_string(), content: content.into() }
    }
}

/// One training record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Stable id: the same recipe, seed and rows give the same id.
    pub id: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Where the record came from (`dataset`, `leaf`, `row`, the generated row's other
    /// columns); written as a JSON string.
    pub metadata: Map<String, Value>,
    /// Train on every turn but the system one (else on assistant turns only).
    pub unmask: bool,
}

impl Record {
    /// The record as one JSON object with the reference's keys.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id,
            "messages": self.messages,
            "metadata": Value::Object(self.metadata.clone()).to_string(),
            "unmask": self.unmask,
        })
    }

    /// Append the record as one JSON line (the keys of [`Record::to_json`], in that order).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        self.write_json_line_with(&self.metadata_json(), out)
    }

    /// The metadata as the JSON string the record schema stores.
    pub fn metadata_json(&self) -> String {
        let mut out = Vec::new();
        write_json_object(&self.metadata, &mut out);
        String::from_utf8(out).expect("invariant: JSON written from strings is UTF-8")
    }

    /// The line serde_json writes for `{id, messages: [{role, content}], metadata, unmask}`,
    /// byte for byte (a test holds it to that), with the strings escaped eight bytes at a time:
    /// each line holds its document chunk twice, once inside the metadata string.
    fn write_json_line_with(&self, metadata: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        write_json_str(&self.id, out);
        out.extend_from_slice(b",\"messages\":[");
        for (i, m) in self.messages.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"{\"role\":" } else { b",{\"role\":" });
            write_json_str(&m.role, out);
            out.extend_from_slice(b",\"content\":");
            write_json_str(&m.content, out);
            out.push(b'}');
        }
        out.extend_from_slice(b"],\"metadata\":");
        write_json_str(metadata, out);
        out.extend_from_slice(if self.unmask { b",\"unmask\":true}\n" } else { b",\"unmask\":false}\n" });
    }

    /// Put `prompt` first as the system turn, replacing any system turn's text (the reference's
    /// `_add_system_message`).
    pub fn set_system(&mut self, prompt: &str) {
        let mut found = false;
        for m in self.messages.iter_mut().filter(|m| m.role == "system") {
            m.content = prompt.to_string();
            found = true;
        }
        if !found {
            self.messages.insert(0, Message::new("system", prompt));
        }
    }

    /// The text of the last assistant turn ("" when there is none).
    pub fn response(&self) -> &str {
        self.messages.iter().rev().find(|m| m.role == "assistant").map(|m| m.content.as_str()).unwrap_or("")
    }

    /// True when some non-system turn is empty (the reference drops such records).
    pub fn has_empty_turn(&self) -> bool {
        self.messages.iter().any(|m| m.role != "system" && m.content.trim().is_empty())
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `x` equal to `b`, exactly (no carry crosses a byte): the test
/// that lets text be scanned eight bytes at a time.
pub(crate) fn bytes_equal(x: u64, b: u8) -> u64 {
    let y = x ^ (ONES * b as u64);
    !((y & LOW).wrapping_add(LOW) | y | LOW)
}

/// `s` as a JSON string, escaped as serde_json escapes it (`"`, `\\`, and control characters:
/// `\b \f \n \r \t` by name, the rest as `\u00xx`), scanning eight bytes at a time for them.
fn write_json_str(s: &str, out: &mut Vec<u8>) {
    // The high bit of every byte of `x` that needs an escape, exactly (no carry crosses a byte).
    let special = |x: u64| {
        let control = !((x & LOW).wrapping_add(ONES * 0x60) | x) & HIGH;
        control | bytes_equal(x, b'"') | bytes_equal(x, b'\\')
    };
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        if at + 8 <= bytes.len() {
            let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("invariant: 8 bytes"));
            let hits = special(word);
            if hits == 0 {
                at += 8;
                continue;
            }
            at += hits.trailing_zeros() as usize / 8;
        } else if !matches!(bytes[at], 0..=0x1f | b'"' | b'\\') {
            at += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..at]);
        let b = bytes[at];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
            }
        }
        at += 1;
        start = at;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `map` as serde_json writes it (compact, keys in the map's order), its strings through
/// [`write_json_str`].
fn write_json_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(k, out);
        out.push(b':');
        write_json_value(v, out);
    }
    out.push(b'}');
}

fn write_json_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::String(s) => write_json_str(s, out),
        Value::Object(m) => write_json_object(m, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_value(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("invariant: writing to a Vec cannot fail"),
    }
}

/// The record schema as Arrow types.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("messages", DataType::List(Arc::new(Field::new("item", DataType::Struct(message_fields()), true))), false),
        Field::new("metadata", DataType::Utf8, false),
        Field::new("unmask", DataType::Boolean, false),
    ]))
}

fn message_fields() -> Fields {
    Fields::from(vec![Field::new("content", DataType::Utf8, true), Field::new("role", DataType::Utf8, true)])
}

/// Records as one Arrow batch in [`schema`].
pub fn to_batch<'a>(records: impl IntoIterator<Item = &'a Record>) -> Result<RecordBatch, arrow::error::ArrowError> {
    let records: Vec<&Record> = records.into_iter().collect();
    let metas: Vec<String> = records.iter().map(|r| r.metadata_json()).collect();
    batch_with(&records, &metas)
}

/// Records as JSON Lines and as one Arrow batch, each record's metadata serialised once.
pub fn encode(records: &[&Record]) -> Result<(Vec<u8>, RecordBatch), arrow::error::ArrowError> {
    let metas: Vec<String> = records.iter().map(|r| r.metadata_json()).collect();
    let text: usize = records.iter().zip(&metas).map(|(r, m)| r.messages.iter().map(|m| m.content.len() + 40).sum::<usize>() + m.len() * 5 / 4 + 120).sum();
    let mut jsonl = Vec::with_capacity(text);
    for (r, m) in records.iter().zip(&metas) {
        r.write_json_line_with(m, &mut jsonl);
    }
    Ok((jsonl, batch_with(records, &metas)?))
}

fn batch_with(records: &[&Record], metas: &[String]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let bytes = |f: &dyn Fn(&Record) -> usize| records.iter().map(|r| f(r)).sum::<usize>();
    let turns = bytes(&|r| r.messages.len());
    let mut ids = StringBuilder::with_capacity(records.len(), records.len() * 36);
    let mut meta = StringBuilder::with_capacity(records.len(), metas.iter().map(String::len).sum());
    let mut unmask = BooleanBuilder::with_capacity(records.len());
    let contents = StringBuilder::with_capacity(turns, bytes(&|r| r.messages.iter().map(|m| m.content.len()).sum()));
    let roles = StringBuilder::with_capacity(turns, turns * 9);
    let values = StructBuilder::new(message_fields(), vec![Box::new(contents), Box::new(roles)]);
    let mut msgs = ListBuilder::with_capacity(values, records.len())
        .with_field(Arc::new(Field::new("item", DataType::Struct(message_fields()), true)));
    for (r, m) in records.iter().zip(metas) {
        ids.append_value(&r.id);
        meta.append_value(m);
        unmask.append_value(r.unmask);
        let s = msgs.values();
        for m in &r.messages {
            s.field_builder::<StringBuilder>(0).expect("invariant: field 0 is content").append_value(&m.content);
            s.field_builder::<StringBuilder>(1).expect("invariant: field 1 is role").append_value(&m.role);
            s.append(true);
        }
        msgs.append(true);
    }
    let cols: Vec<ArrayRef> = vec![Arc::new(ids.finish()), Arc::new(msgs.finish()), Arc::new(meta.finish()), Arc::new(unmask.finish())];
    RecordBatch::try_new(schema(), cols)
}

/// The batch of `rows` records written as `jsonl` by [`encode`] (the same batch [`encode`]
/// gave, decoded by arrow's JSON reader instead of built again from the records).
pub fn batch_from_jsonl(jsonl: &[u8], rows: usize) -> Result<RecordBatch, arrow::error::ArrowError> {
    let reader = arrow::json::ReaderBuilder::new(schema()).with_batch_size(rows.max(1)).build(std::io::Cursor::new(jsonl))?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let batch = arrow::compute::concat_batches(&schema(), &batches)?;
    if batch.num_rows() != rows {
        return Err(arrow::error::ArrowError::JsonError(format!("{} records where {rows} were recorded", batch.num_rows())));
    }
    Ok(batch)
}

/// Why a dataset's rows are not records.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

/// Records from a batch with a `messages` column (list of `{role, content}` structs) and
/// optional `id`, `metadata` (string or struct, kept as JSON) and `unmask`; any other column
/// goes into the metadata, as the reference's `_sample_ds` does.
pub fn from_batch(batch: &RecordBatch, what: &str) -> Result<Vec<Record>, RecordError> {
    let col = |name: &str| batch.column_by_name(name);
    let messages = col("messages")
        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        .ok_or_else(|| RecordError(format!("{what}: no `messages` column of [{{role, content}}] turns; is it in the record schema?")))?;
    let ids = col("id").and_then(|c| c.as_any().downcast_ref::<StringArray>());
    let unmask = col("unmask").and_then(|c| c.as_any().downcast_ref::<BooleanArray>());
    let metadata = col("metadata").and_then(|c| c.as_any().downcast_ref::<StringArray>());
    let others: Vec<(String, &ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !["id", "messages", "metadata", "unmask"].contains(&f.name().as_str()))
        .map(|(f, c)| (f.name().clone(), c))
        .collect();
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let turns = messages.value(i);
        let turns = turns
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| RecordError(format!("{what}: row {i}: `messages` items are not {{role, content}} objects")))?;
        let text = |name: &str| turns.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let (roles, contents) = match (text("role"), text("content")) {
            (Some(r), Some(c)) => (r, c),
            _ => return Err(RecordError(format!("{what}: row {i}: a turn needs text `role` and `content`"))),
        };
        let msgs = (0..turns.len()).map(|j| Message::new(roles.value(j), contents.value(j).to_string())).collect();
        let mut meta = match metadata.filter(|m| m.is_valid(i)).map(|m| m.value(i)) {
            Some(s) if !s.is_empty() => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => m,
                _ => return Err(RecordError(format!("{what}: row {i}: `metadata` is not a JSON object"))),
            },
            _ => Map::new(),
        };
        for (name, c) in &others {
            meta.insert(name.clone(), cell_json(c, i));
        }
        out.push(Record {
            id: ids.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string()).unwrap_or_default(),
            messages: msgs,
            metadata: meta,
            unmask: unmask.filter(|a| a.is_valid(i)).map(|a| a.value(i)).unwrap_or(false),
        });
    }
    Ok(out)
}

/// A record from one JSON line of a dataset in the record schema; keys other than `id`,
/// `messages`, `metadata` and `unmask` go into the metadata.
pub fn from_json_line(line: &str) -> Result<Record, String> {
    let Value::Object(mut obj) = serde_json::from_str::<Value>(line).map_err(|e| format!("not JSON: {e}"))? else {
        return Err("not a JSON object".into());
    };
    let messages: Vec<Message> = match obj.remove("messages") {
        Some(v) => serde_json::from_value(v).map_err(|e| format!("`messages` is not a list of {{role, content}} turns: {e}"))?,
        None => return Err("no `messages` key; the record schema is {id, messages: [{role, content}], metadata, unmask}".into()),
    };
    let id = match obj.remove("id") {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    };
    let unmask = match obj.remove("unmask") {
        Some(Value::Bool(b)) => b,
        Some(Value::Null) | None => false,
        Some(v) => return Err(format!("`unmask` is {v}, not true or false")),
    };
    let mut metadata = match obj.remove("metadata") {
        Some(Value::String(s)) if !s.is_empty() => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(m)) => m,
            _ => return Err("`metadata` is a string that does not hold a JSON object".into()),
        },
        Some(Value::Object(m)) => m,
        Some(Value::Null) | Some(Value::String(_)) | None => Map::new(),
        Some(v) => return Err(format!("`metadata` is {v}, not a JSON object or a string holding one")),
    };
    metadata.extend(obj);
    Ok(Record { id, messages, metadata, unmask })
}

/// One cell as JSON (text as a string, anything else through Arrow's display).
pub fn cell_json(col: &ArrayRef, i: usize) -> Value {
    if col.is_null(i) {
        return Value::Null;
    }
    if let Some(s) = col.as_any().downcast_ref::<StringArray>() {
        return Value::String(s.value(i).to_string());
    }
    if let Some(b) = col.as_any().downcast_ref::<BooleanArray>() {
        return Value::Bool(b.value(i));
    }
    match arrow::util::display::array_value_to_string(col, i) {
        Ok(s) => s.parse::<serde_json::Number>().map(Value::Number).unwrap_or(Value::String(s)),
        Err(_) => Value::Null,
    }
}

/// A generated row of a run, by column name (text columns only; others as their JSON).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Its lineage id (`_id`).
    pub id: String,
    /// Every other column, in the file's order.
    pub values: Vec<(String, Value)>,
}

impl Row {
    /// The text of column `name`, if the row has it as text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.as_str())
    }
}

/// The rows of a generated dataset batch.
pub fn rows(batch: &RecordBatch) -> Vec<Row> {
    let schema = batch.schema();
    let ids = batch.column_by_name(crate::operators::ROW_ID).and_then(|c| c.as_any().downcast_ref::<StringArray>());
    (0..batch.num_rows())
        .map(|i| Row {
            id: ids.map(|a| a.value(i).to_string()).unwrap_or_else(|| format!("{i:04}")),
            values: schema
                .fields()
                .iter()
                .zip(batch.columns())
                .filter(|(f, _)| f.name() != crate::operators::ROW_ID)
                .map(|(f, c)| (f.name().clone(), cell_json(c, i)))
                .collect(),
        })
        .collect()
}

/// A row's question and response: the `question` and `response` columns, or else the
/// reference's fallback for pipelines that write one `output` column (split after the first
/// `?`).
pub fn question_response(row: &Row) -> Option<(String, String)> {
    if let (Some(q), Some(r)) = (row.get("question"), row.get("response")) {
        return Some((q.trim().to_string(), r.trim().to_string()));
    }
    let out = row.get("output")?;
    Some(match out.split_once('?') {
        Some((q, r)) => (format!("{}?", q.trim()), r.trim().to_string()),
        None => (String::new(), out.trim().to_string()),
    })
}

/// A stable id shaped like a UUID (version 8: custom), from the parts that make a record.
pub fn record_id(parts: &[&str]) -> String {
    // The key derivation hashes the context string: done once, the hasher's state cloned.
    static KEYED: std::sync::LazyLock<blake3::Hasher> =
        std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key("labflow 2026 mix record id"));
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = KEYED.clone();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut id = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(HEX[usize::from(x >> 4)] as char);
        id.push(HEX[usize::from(x & 15)] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        let mut meta = Map::new();
        meta.insert("dataset".into(), "skill".into());
        Record {
            id: record_id(&["a", "b"]),
            messages: vec![Message::new("user", "Q \"x\"?"), Message::new("assistant", "A\nB")],
            metadata: meta,
            unmask: true,
        }
    }

    #[test]
    fn records_round_trip_through_arrow() {
        let mut r = rec();
        r.set_system("sys");
        let b = to_batch(&[r.clone(), rec()]).unwrap();
        assert_eq!(b.schema(), schema());
        let back = from_batch(&b, "t").unwrap();
        assert_eq!(back, vec![r.clone(), rec()]);
        let mut line = Vec::new();
        r.write_json_line(&mut line);
        assert_eq!(serde_json::from_slice::<Value>(&line).unwrap(), r.to_json());
        assert_eq!(from_json_line(std::str::from_utf8(&line).unwrap()).unwrap(), r);
    }

    #[test]
    fn the_jsonl_decodes_to_the_batch_encode_built() {
        let mut r = rec();
        r.set_system("sys \"quoted\" \u{1F600}\n\ttabbed");
        r.metadata.insert("nested".into(), serde_json::json!({"a": [1, "two"]}));
        let records = [r, rec()];
        let refs: Vec<&Record> = records.iter().collect();
        let (jsonl, batch) = encode(&refs).unwrap();
        assert_eq!(batch_from_jsonl(&jsonl, 2).unwrap(), batch);
        assert!(batch_from_jsonl(&jsonl, 3).is_err(), "a count that does not match is an error");
        assert_eq!(batch_from_jsonl(b"", 0).unwrap().num_rows(), 0);
    }

    #[test]
    fn system_turns_are_replaced_or_added_first() {
        let mut r = rec();
        r.set_system("one");
        r.set_system("two");
        assert_eq!(r.messages[0], Message::new("system", "two"));
        assert_eq!(r.messages.len(), 3);
        assert!(!r.has_empty_turn());
        r.messages[2].content = " ".into();
        assert!(r.has_empty_turn());
    }

    proptest::proptest! {
        /// The hand-written JSON line is the one serde_json writes, for any text: quotes,
        /// backslashes, every control character, DEL, non-ASCII, at any offset in a word.
        #[test]
        fn json_lines_are_what_serde_json_writes(
            texts in proptest::collection::vec("([\\x00-\\x1f\"\\\\\\x7f]|[a-z ]{0,9}|\\PC){0,24}", 4),
            n in -1e6f64..1e6, unmask: bool,
        ) {
            #[derive(Serialize)]
            struct Line<'a> { id: &'a str, messages: &'a [Message], metadata: &'a str, unmask: bool }
            let mut meta = Map::new();
            meta.insert(texts[2].clone(), Value::String(texts[3].clone()));
            meta.insert("n".into(), serde_json::json!([n, 7, null, true, {"k": texts[0].clone()}]));
            let r = Record { id: texts[0].clone(), messages: vec![Message::new("user", texts[1].clone()), Message::new(&texts[2], texts[3].clone())], metadata: meta, unmask };
            let metadata = serde_json::to_string(&r.metadata).unwrap();
            proptest::prop_assert_eq!(r.metadata_json(), metadata.clone());
            let mut want = serde_json::to_vec(&Line { id: &r.id, messages: &r.messages, metadata: &metadata, unmask }).unwrap();
            want.push(b'\n');
            let mut line = Vec::new();
            r.write_json_line(&mut line);
            proptest::prop_assert_eq!(String::from_utf8(line).unwrap(), String::from_utf8(want).unwrap());
        }

        /// A dataset line of any shape is a record or a message saying what is wrong.
        #[test]
        fn junk_lines_never_panic(line in "\\PC{0,80}", key in "(id|messages|metadata|unmask|x)", value in "(null|1|\"s\"|\\[\\]|\\{\\}|true|\\[\\{\"role\":1\\}\\])") {
            let _ = from_json_line(&line);
            let _ = from_json_line(&format!("{{\"messages\": [], \"{key}\": {value}}}"));
        }
    }

    #[test]
    fn ids_are_uuid_shaped_and_stable() {
        let id = record_id(&["x", "y"]);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8");
        assert_eq!(id, record_id(&["x", "y"]));
        assert_ne!(id, record_id(&["xy", ""]));
    }

    #[test]
    fn output_columns_split_after_the_first_question_mark() {
        let row = Row { id: "0".into(), values: vec![("output".into(), "Why? Because. Really?".into())] };
        assert_eq!(question_response(&row), Some(("Why?".into(), "Because. Really?".into())));
    }
}

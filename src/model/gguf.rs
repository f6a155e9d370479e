//! Reading GGUF files: the header, the metadata key/value pairs and the tensor directory, then
//! tensor data by name, dequantised to `f32` by [`crate::backend::cpu::dequant`].
//!
//! The file is read whole into memory (the default model is 98 MB). The parser is written here
//! rather than taken from `ggus` 0.5 because that crate reads the tensor type id straight into a
//! Rust enum (undefined behaviour for an id it does not know) and slices the data section without
//! a bounds check (a panic on a truncated file); a model file is input, so both must be errors that
//! name the file. Layout (GGUF v2/v3, little-endian): magic `GGUF`, u32 version, u64 tensor count,
//! u64 metadata count, the metadata, the tensor infos (name, u32 n_dims, u64 dims (innermost
//! first), u32 type, u64 offset), padding to `general.alignment` (default 32), the data section.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::backend::cpu::dequant;
use crate::backend::GgmlType;

use super::ModelError;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Any unsigned integer type (u8, u16, u32, u64).
    UInt(u64),
    /// Any signed integer type (i8, i16, i32, i64).
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values (possibly nested).
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::UInt(v) => Some(v),
            MetaValue::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::Float(v) => Some(v),
            MetaValue::UInt(v) => Some(v as f64),
            MetaValue::Int(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where a tensor lives in the file and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost (contiguous) first, as GGML writes them: a `[rows, cols]` matrix is
    /// `dims = [cols, rows]`.
    pub dims: Vec<usize>,
    /// Element type.
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub start: usize,
    /// Bytes of data.
    pub len: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file held in memory.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    bytes: Vec<u8>,
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl GgufFile {
    /// Reads and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, ModelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ModelError::NotFound { path: path.to_path_buf(), hint: None }
            } else {
                ModelError::Io { path: path.to_path_buf(), source }
            }
        })?;
        GgufFile::parse(path, bytes)
    }

    /// Parses GGUF bytes; `path` is only used in error messages.
    pub fn parse(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<GgufFile, ModelError> {
        let path = path.as_ref().to_path_buf();
        let format = |message: String| ModelError::Format { path: path.clone(), message };
        let mut r = Reader { bytes: &bytes, pos: 0 };
        let magic = r.take(4).map_err(&format)?;
        if magic != b"GGUF" {
            return Err(format(format!("bad magic {magic:02x?} (expected the bytes of \"GGUF\")")));
        }
        let version = r.u32().map_err(&format)?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::Unsupported { path, message: format!("GGUF version {version} (versions 2 and 3 are read)") });
        }
        let n_tensors = r.u64().map_err(&format)?;
        let n_meta = r.u64().map_err(&format)?;

        let mut metadata = BTreeMap::new();
        for _ in 0..n_meta {
            let key = r.string().map_err(&format)?;
            let ty = r.u32().map_err(&format)?;
            let value = r.value(ty, 0).map_err(|m| format(format!("metadata key {key:?}: {m}")))?;
            metadata.insert(key, value);
        }

        let mut raw = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string().map_err(&format)?;
            let n_dims = r.u32().map_err(&format)?;
            if n_dims > 4 {
                return Err(format(format!("tensor {name:?} has {n_dims} dimensions (GGML allows at most 4)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = r.u64().map_err(&format)?;
                dims.push(usize::try_from(d).map_err(|_| format(format!("tensor {name:?}: dimension {d} too large")))?);
            }
            let ty = r.u32().map_err(&format)?;
            let offset = r.u64().map_err(&format)?;
            raw.push((name, dims, ty, offset));
        }

        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a as usize,
                _ => return Err(format(format!("general.alignment is {v:?}, not a power of two"))),
            },
        };
        let data_start = r.pos.div_ceil(alignment) * alignment;

        let mut tensors = Vec::with_capacity(raw.len());
        let mut by_name = HashMap::new();
        for (name, dims, ty_id, offset) in raw {
            let Some(ty) = GgmlType::from_id(ty_id) else {
                return Err(ModelError::Unsupported {
                    path,
                    message: format!(
                        "tensor {name:?} has type {}; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K",
                        GgmlType::name_of_id(ty_id)
                    ),
                });
            };
            let n: usize = dims
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| format(format!("tensor {name:?}: element count overflows")))?;
            if dims.first().is_some_and(|&d| d % ty.block_len() != 0) {
                return Err(format(format!(
                    "tensor {name:?}: row length {} is not a multiple of the {} block size {}",
                    dims[0],
                    ty.name(),
                    ty.block_len()
                )));
            }
            let len = ty.bytes_for(n).ok_or_else(|| format(format!("tensor {name:?}: {n} elements is not a whole number of blocks")))?;
            let start = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(data_start))
                .ok_or_else(|| format(format!("tensor {name:?}: offset {offset} too large")))?;
            let end = start.checked_add(len).ok_or_else(|| format(format!("tensor {name:?}: offset {offset} too large")))?;
            if end > bytes.len() {
                return Err(format(format!(
                    "truncated: tensor {name:?} needs bytes {start}..{end} but the file has {} bytes",
                    bytes.len()
                )));
            }
            if by_name.insert(name.clone(), tensors.len()).is_some() {
                return Err(format(format!("tensor {name:?} appears twice")));
            }
            tensors.push(TensorInfo { name, dims, ty, start, len });
        }
        Ok(GgufFile { path, bytes, version, metadata, tensors, by_name })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.metadata
    }

    /// One metadata value.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// A required string value.
    pub fn req_str(&self, key: &str) -> Result<&str, ModelError> {
        self.get(key).and_then(MetaValue::as_str).ok_or_else(|| self.missing(key, "a string"))
    }

    /// A required non-negative integer value.
    pub fn req_usize(&self, key: &str) -> Result<usize, ModelError> {
        self.get(key)
            .and_then(MetaValue::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| self.missing(key, "an unsigned integer"))
    }

    /// An optional numeric value (an error when present with another type).
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.missing(key, "a number")),
        }
    }

    /// A required array of strings.
    pub fn req_str_array(&self, key: &str) -> Result<Vec<&str>, ModelError> {
        let arr = self.get(key).and_then(MetaValue::as_array).ok_or_else(|| self.missing(key, "an array of strings"))?;
        arr.iter().map(|v| v.as_str().ok_or_else(|| self.missing(key, "an array of strings"))).collect()
    }

    fn missing(&self, key: &str, what: &str) -> ModelError {
        let found = match self.get(key) {
            None => "it is absent".to_string(),
            Some(v) => format!("found {}", short_debug(v)),
        };
        ModelError::Missing { path: self.path.clone(), message: format!("metadata key {key:?} must be {what}; {found}") }
    }

    /// The tensor directory, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// One tensor's info.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        // In bounds: checked against the file length in `parse`.
        &self.bytes[info.start..info.start + info.len]
    }

    /// A tensor dequantised to `f32`, checking its dimensions (innermost first) against `dims`.
    pub fn tensor_f32(&self, name: &str, dims: &[usize]) -> Result<Vec<f32>, ModelError> {
        let info = self
            .tensor(name)
            .ok_or_else(|| ModelError::Missing { path: self.path.clone(), message: format!("tensor {name:?} is absent") })?;
        if info.dims != dims {
            return Err(ModelError::Missing {
                path: self.path.clone(),
                message: format!("tensor {name:?} has dims {:?}, expected {dims:?} (innermost first)", info.dims),
            });
        }
        let mut out = vec![0f32; info.n_elements()];
        dequant::dequantize(info.ty, self.tensor_bytes(info), &mut out)
            .map_err(|e| ModelError::Format { path: self.path.clone(), message: format!("tensor {name:?}: {e}") })?;
        Ok(out)
    }
}

fn short_debug(v: &MetaValue) -> String {
    match v {
        MetaValue::Array(a) => format!("an array of {} values", a.len()),
        other => format!("{other:?}"),
    }
}

/// A bounds-checked little-endian cursor; errors carry the byte offset.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated: needs {n} bytes at offset {} but the file has {} bytes", self.pos, self.bytes.len()))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> Result<String, String> {
        let at = self.pos;
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| format!("string length {len} at offset {at} too large"))?;
        let s = self.take(len)?;
        String::from_utf8(s.to_vec()).map_err(|e| format!("string at offset {at} is not UTF-8: {e}"))
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<MetaValue, String> {
        Ok(match ty {
            0 => MetaValue::UInt(u64::from(self.array::<1>()?[0])),
            1 => MetaValue::Int(i64::from(i8::from_le_bytes(self.array()?))),
            2 => MetaValue::UInt(u64::from(u16::from_le_bytes(self.array()?))),
            3 => MetaValue::Int(i64::from(i16::from_le_bytes(self.array()?))),
            4 => MetaValue::UInt(u64::from(self.u32()?)),
            5 => MetaValue::Int(i64::from(i32::from_le_bytes(self.array()?))),
            6 => MetaValue::Float(f64::from(f32::from_le_bytes(self.array()?))),
            7 => match self.array::<1>()?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(format!("bool byte {b} at offset {}", self.pos - 1)),
            },
            8 => MetaValue::Str(self.string()?),
            9 => {
                if depth > 8 {
                    return Err("arrays nested deeper than 8".into());
                }
                let elem = self.u32()?;
                let len = self.u64()?;
                // Every element takes at least one byte: a length beyond the rest of the file is a lie.
                let remaining = (self.bytes.len() - self.pos) as u64;
                if len > remaining {
                    return Err(format!("truncated: array of {len} elements at offset {} but only {remaining} bytes remain", self.pos));
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(elem, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::UInt(self.u64()?),
            11 => MetaValue::Int(i64::from_le_bytes(self.array()?)),
            12 => MetaValue::Float(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown metadata value type {other} at offset {}", self.pos - 4)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny GGUF: two metadata keys and one F32 tensor `t` of dims [2, 3] (`ty` overridable).
    fn tiny(ty: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        let s = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&(s.len() as u64).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        s(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        s(&mut b, "llama");
        s(&mut b, "llama.block_count");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&30u32.to_le_bytes());
        s(&mut b, "t");
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&3u64.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        for i in 0..6 {
            b.extend_from_slice(&(i as f32).to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_metadata_and_tensors() {
        let f = GgufFile::parse("tiny.gguf", tiny(0)).expect("parses");
        assert_eq!(f.req_str("general.architecture").expect("arch"), "llama");
        assert_eq!(f.req_usize("llama.block_count").expect("blocks"), 30);
        assert_eq!(f.tensor_f32("t", &[2, 3]).expect("tensor"), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn truncated_file_names_file_and_tensor() {
        let mut b = tiny(0);
        b.truncate(b.len() - 4);
        let e = GgufFile::parse("tiny.gguf", b).expect_err("truncated").to_string();
        assert!(e.contains("tiny.gguf") && e.contains("truncated") && e.contains("\"t\""), "{e}");
        let b = tiny(0)[..40].to_vec();
        let e = GgufFile::parse("tiny.gguf", b).expect_err("truncated").to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn unknown_tensor_type_is_an_error() {
        let e = GgufFile::parse("tiny.gguf", tiny(99)).expect_err("unknown").to_string();
        assert!(e.contains("tiny.gguf") && e.contains("unsupported") && e.contains("type id 99"), "{e}");
        let e = GgufFile::parse("tiny.gguf", tiny(10)).expect_err("Q2_K").to_string();
        assert!(e.contains("Q2_K"), "{e}");
    }

    #[test]
    fn bad_magic_and_wrong_dims() {
        let mut b = tiny(0);
        b[0] = b'X';
        assert!(GgufFile::parse("x", b).expect_err("magic").to_string().contains("bad magic"));
        let f = GgufFile::parse("tiny.gguf", tiny(0)).expect("parses");
        assert!(f.tensor_f32("t", &[3, 2]).expect_err("dims").to_string().contains("expected [3, 2]"));
        assert!(f.req_usize("general.architecture").is_err());
    }
}

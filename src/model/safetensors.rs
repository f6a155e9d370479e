//! Reading a Hugging Face model folder: `config.json` and the weights, from `model.safetensors`
//! or from the shards that `model.safetensors.index.json` names; tensors by name, converted to
//! `f32` (stored as F32, F16 or BF16). The tokenizer files are read by
//! [`super::Tokenizer::from_hf_folder`] and [`super::ChatTemplate::from_hf_folder`].
//!
//! Headers are parsed by the `safetensors` crate (Hugging Face's own reader): it checks the
//! header length, that the JSON header parses, that every tensor's byte range matches its shape
//! and dtype, and that the ranges cover the data section exactly, so a truncated or padded file
//! is an error before any tensor is touched. Each file is read whole into memory, like a GGUF
//! file in [`super::GgufFile`]; the folder is dropped once the f32 model is built.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use ::safetensors::tensor::{Metadata, TensorInfo};
use ::safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::Deserialize;

use super::hf_config::{read_file, read_json, HfConfig};
use super::ModelError;

/// The single-file weights.
pub const WEIGHTS: &str = "model.safetensors";
/// The index of sharded weights: `{"weight_map": {tensor: shard file}}`.
pub const INDEX: &str = "model.safetensors.index.json";
/// The model configuration.
pub const CONFIG: &str = "config.json";

/// One safetensors file, held in memory with its parsed header.
struct Shard {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Where the data section starts (8 + header length).
    data_start: usize,
    metadata: Metadata,
}

/// `model.safetensors.index.json` (its `metadata` is not needed).
#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

/// A Hugging Face model folder's configuration and weights.
pub struct SafetensorsFolder {
    dir: PathBuf,
    config_bytes: Vec<u8>,
    config: HfConfig,
    shards: Vec<Shard>,
    /// Tensor name → index into `shards`.
    by_name: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFolder").field("dir", &self.dir).field("shards", &self.shards.len()).finish()
    }
}

impl SafetensorsFolder {
    /// Reads `config.json` and every weight file of the folder `dir`. A missing file is
    /// [`ModelError::NotFound`] naming it.
    pub fn open(dir: impl AsRef<Path>) -> Result<SafetensorsFolder, ModelError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(ModelError::NotFound { path: dir, hint: Some("expected a Hugging Face model folder".into()) });
        }
        let config_path = dir.join(CONFIG);
        let config_bytes = read_file(&config_path)?;
        let config: HfConfig = read_json(&config_path)?;

        let index_path = dir.join(INDEX);
        let (shards, by_name) = if index_path.is_file() {
            open_sharded(&dir, &index_path)?
        } else {
            let path = dir.join(WEIGHTS);
            let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => ModelError::NotFound {
                    path: path.clone(),
                    hint: Some(format!("the folder has neither {WEIGHTS} nor {INDEX} with its shards")),
                },
                _ => ModelError::Io { path: path.clone(), source },
            })?;
            let shard = parse(path, bytes)?;
            let by_name = shard.metadata.tensors().into_keys().map(|name| (name, 0)).collect();
            (vec![shard], by_name)
        };
        Ok(SafetensorsFolder { dir, config_bytes, config, shards, by_name })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `config.json`, named in configuration errors.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG)
    }

    /// `config.json`, parsed (not yet resolved: see [`HfConfig::into_config`]).
    pub fn config(&self) -> &HfConfig {
        &self.config
    }

    /// The bytes of `config.json` and of every weight file, in a fixed order (for content hashes).
    pub fn files(&self) -> Vec<(PathBuf, &[u8])> {
        let mut out = vec![(self.config_path(), self.config_bytes.as_slice())];
        out.extend(self.shards.iter().map(|s| (s.path.clone(), s.bytes.as_slice())));
        out
    }

    /// Every tensor name, sorted.
    pub fn tensor_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// A tensor's file and header entry (dtype, shape).
    pub fn tensor_info(&self, name: &str) -> Option<(&Path, &TensorInfo)> {
        let shard = &self.shards[*self.by_name.get(name)?];
        shard.metadata.info(name).map(|info| (shard.path.as_path(), info))
    }

    /// Whether the folder holds tensor `name`.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// A tensor converted to `f32`, checking its shape (row-major, outermost first: a Linear's
    /// weight is `[out, in]`) against `shape`.
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let Some(&i) = self.by_name.get(name) else {
            let files: Vec<String> = self.shards.iter().map(|s| file_name(&s.path)).collect();
            return Err(ModelError::Missing {
                path: self.dir.clone(),
                message: format!("tensor {name:?} is absent (looked in {})", files.join(", ")),
            });
        };
        let shard = &self.shards[i];
        let info = shard.metadata.info(name).ok_or_else(|| ModelError::Missing {
            path: shard.path.clone(),
            message: format!("tensor {name:?} is absent from this shard"),
        })?;
        if info.shape != shape {
            return Err(ModelError::Missing {
                path: shard.path.clone(),
                message: format!("tensor {name:?} has shape {:?}, expected {shape:?} (from config.json)", info.shape),
            });
        }
        // In bounds: `read_metadata` checked that the ranges tile the data section exactly.
        let (s, e) = info.data_offsets;
        let bytes = &shard.bytes[shard.data_start + s..shard.data_start + e];
        to_f32(info.dtype, bytes).ok_or_else(|| ModelError::Unsupported {
            path: shard.path.clone(),
            message: format!("tensor {name:?} has dtype {}; supported: F32, F16, BF16", info.dtype),
        })
    }
}

/// Reads the index and every shard it names; each tensor must be in the shard the index says.
#[allow(clippy::type_complexity)]
fn open_sharded(dir: &Path, index_path: &Path) -> Result<(Vec<Shard>, HashMap<String, usize>), ModelError> {
    let index: Index = read_json(index_path)?;
    let bad = |message: String| ModelError::Missing { path: index_path.to_path_buf(), message };
    if index.weight_map.is_empty() {
        return Err(bad("key \"weight_map\" names no tensor".into()));
    }
    let mut files: Vec<&str> = index.weight_map.values().map(String::as_str).collect();
    files.sort_unstable();
    files.dedup();
    let mut shards = Vec::with_capacity(files.len());
    for file in &files {
        // A name from the file is input: it must stay inside the folder.
        let plain = matches!(Path::new(file).components().collect::<Vec<_>>().as_slice(), [Component::Normal(_)]);
        if !plain {
            return Err(bad(format!("weight_map names shard {file:?}, which is not a file name inside the folder")));
        }
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => {
                let n = index.weight_map.values().filter(|f| f == file).count();
                ModelError::NotFound { path: path.clone(), hint: Some(format!("{INDEX} names it as the shard of {n} tensors")) }
            }
            _ => ModelError::Io { path: path.clone(), source },
        })?;
        shards.push(parse(path, bytes)?);
    }
    let mut by_name = HashMap::new();
    for (name, file) in &index.weight_map {
        // `files` is sorted and holds every value of the map.
        let i = files.binary_search(&file.as_str()).map_err(|_| bad(format!("internal: shard {file:?} not indexed")))?;
        if shards[i].metadata.info(name).is_none() {
            return Err(ModelError::Missing {
                path: shards[i].path.clone(),
                message: format!("{INDEX} places tensor {name:?} in this shard, which does not hold it"),
            });
        }
        by_name.insert(name.clone(), i);
    }
    Ok((shards, by_name))
}

/// Parses one file's header.
fn parse(path: PathBuf, bytes: Vec<u8>) -> Result<Shard, ModelError> {
    match SafeTensors::read_metadata(&bytes) {
        Ok((n, metadata)) => Ok(Shard { path, data_start: 8 + n, bytes, metadata }),
        Err(e) => {
            let message = describe(&e, &bytes);
            Err(ModelError::Safetensors { path, message })
        }
    }
}

/// The `safetensors` crate's error, with the sizes that explain it.
fn describe(e: &SafeTensorError, bytes: &[u8]) -> String {
    let len = bytes.len();
    let header_len = bytes.get(..8).map(|b| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    });
    match (e, header_len) {
        (SafeTensorError::HeaderTooSmall, _) => format!("truncated: the file has {len} bytes, fewer than the 8 of the header length"),
        (SafeTensorError::InvalidHeaderLength, Some(n)) => {
            format!("truncated or corrupt: the header length is {n} bytes but the file has {len} bytes")
        }
        (SafeTensorError::MetadataIncompleteBuffer, _) => {
            format!("truncated or padded: the tensors in the header do not end where the file ends ({len} bytes)")
        }
        (other, _) => format!("{other} (file of {len} bytes)"),
    }
}

/// Little-endian `dtype` values as f32; `None` for a dtype other than F32, F16, BF16.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        _ => return None,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::safetensors::tensor::TensorView;

    fn write_folder(dir: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        std::fs::write(dir.join(CONFIG), "{}").expect("write config");
        let views: Vec<(String, TensorView<'_>)> =
            tensors.iter().map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).expect("view"))).collect();
        ::safetensors::serialize_to_file(views, None, &dir.join(WEIGHTS)).expect("serialize");
    }

    #[test]
    fn converts_dtypes_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vals = [1.5f32, -0.25, 3.0, 65504.0];
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16b: Vec<u8> = vals.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let bf16b: Vec<u8> = vals[..3].iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
        let i32b: Vec<u8> = [1i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        write_folder(
            dir.path(),
            &[
                ("a", Dtype::F32, vec![2, 2], f32b),
                ("b", Dtype::F16, vec![4], f16b),
                ("c", Dtype::BF16, vec![3], bf16b),
                ("d", Dtype::I32, vec![2], i32b),
            ],
        );
        let f = SafetensorsFolder::open(dir.path()).expect("opens");
        assert_eq!(f.tensor_names(), ["a", "b", "c", "d"]);
        assert_eq!(f.tensor_f32("a", &[2, 2]).expect("a"), vals);
        assert_eq!(f.tensor_f32("b", &[4]).expect("b"), vals);
        assert_eq!(f.tensor_f32("c", &[3]).expect("c"), vals[..3]);
        let e = f.tensor_f32("d", &[2]).expect_err("I32").to_string();
        assert!(e.contains("model.safetensors") && e.contains("\"d\"") && e.contains("dtype I32"), "{e}");
        let e = f.tensor_f32("a", &[4]).expect_err("shape").to_string();
        assert!(e.contains("shape [2, 2], expected [4]"), "{e}");
        let e = f.tensor_f32("zz", &[1]).expect_err("absent").to_string();
        assert!(e.contains("\"zz\" is absent"), "{e}");
    }

    #[test]
    fn truncated_and_garbage_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_folder(dir.path(), &[("a", Dtype::F32, vec![4], vec![0u8; 16])]);
        let path = dir.path().join(WEIGHTS);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("truncate");
        let e = SafetensorsFolder::open(dir.path()).expect_err("truncated").to_string();
        assert!(e.contains("model.safetensors") && e.contains("not a valid safetensors file") && e.contains("truncated"), "{e}");
        std::fs::write(&path, &bytes[..20]).expect("truncate header");
        let e = SafetensorsFolder::open(dir.path()).expect_err("header").to_string();
        assert!(e.contains("header length"), "{e}");
        std::fs::write(&path, b"\x05\0\0\0\0\0\0\0{abc}").expect("garbage");
        let e = SafetensorsFolder::open(dir.path()).expect_err("json").to_string();
        assert!(e.contains("not a valid safetensors file") && e.contains("JSON"), "{e}");
        std::fs::remove_file(&path).expect("rm");
        let e = SafetensorsFolder::open(dir.path()).expect_err("missing").to_string();
        assert!(e.contains("model.safetensors") && e.contains("not found"), "{e}");
    }
}

//! Opening a GGUF file: header, metadata, tensor table, and tensor data read in place from a
//! memory map.
//!
//! Layout (GGUF versions 2 and 3, little-endian; see ggml's `docs/gguf.md` and gguf-py's
//! `gguf_reader.py`): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count, the
//! metadata (key string, u32 value type, value), the tensor infos (name, u32 n_dims,
//! n_dims × u64 dims with the fastest-varying first, u32 ggml type, u64 offset), padding to
//! `general.alignment` (default 32), then the tensor data, each tensor at data start + offset.
//! Everything is validated at open, so later reads cannot run off the file.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::import::source::release_pages;

use super::error::{GgufError, GgufErrorKind};
use super::ggml_type::GgmlType;
use super::metadata::{Metadata, MetadataValue};
use super::permute::unpermute_qk_rows;
use super::quant::dequantize;

/// Alignment of the data section and tensor offsets when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// Deepest nesting of metadata arrays accepted (real files nest at most once); a bound keeps
/// a corrupt file from recursing without limit.
const MAX_ARRAY_NESTING: usize = 8;

/// Where one tensor is and how it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    offset: u64,
    n_bytes: u64,
}

impl TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Dimensions in GGUF order: fastest-varying first, i.e. reversed against row-major
    /// (a PyTorch `[out, in]` weight is stored as `[in, out]`).
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// Row-major shape (`dims` reversed), as PyTorch and safetensors write it.
    pub fn shape(&self) -> Vec<usize> {
        // Each dim fits in usize: open() checked the element count does.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Storage type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Offset of the data from the start of the data section.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of stored data.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }
}

/// An open GGUF file: parsed header and metadata, tensor data left in the memory map until
/// asked for, so a model is not held twice.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl GgufFile {
    /// Open and validate `path`: header, metadata, tensor table, and that every tensor's
    /// data lies inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| GgufErrorKind::Io(e).at(path))?;
        // SAFETY: memmap2 requires that nothing modifies or truncates the file while it is
        // mapped. The map is only ever read, and model files are inputs sinkscope never writes;
        // another process rewriting one during an analysis is outside what we can guard.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| GgufErrorKind::Io(e).at(path))?;
        Self::parse(path, map).map_err(|kind| kind.at(path))
    }

    fn parse(path: &Path, map: Mmap) -> Result<Self, GgufErrorKind> {
        let mut c = Cursor::new(&map);
        let magic = &map[..map.len().min(4)];
        if magic != b"GGUF" {
            return Err(GgufErrorKind::BadMagic {
                found: magic.to_vec(),
            });
        }
        c.pos = 4;
        let version = c.u32(&|| "the version".into())?;
        match version {
            2 | 3 => {}
            v if matches!(v.swap_bytes(), 1..=3) => return Err(GgufErrorKind::BigEndian),
            v => return Err(GgufErrorKind::UnsupportedVersion { version: v }),
        }
        let n_tensors = c.u64(&|| "the tensor count".into())?;
        let n_kv = c.u64(&|| "the metadata count".into())?;

        let mut entries = Vec::with_capacity(c.capacity_for(n_kv, 12));
        for i in 0..n_kv {
            let key = c.string(&|| format!("metadata key #{i}"))?;
            let type_id = c.u32(&|| format!("the value type of {key:?}"))?;
            let value = c.value(type_id, &key, 0)?;
            entries.push((key, value));
        }
        let metadata = Metadata::new(path, entries)?;
        let alignment = alignment(&metadata)?;

        let mut tensors = Vec::with_capacity(c.capacity_for(n_tensors, 24));
        for i in 0..n_tensors {
            tensors.push(c.tensor_info(i)?);
        }
        let data_start = c.pos.next_multiple_of(alignment);

        let mut by_name = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if by_name.insert(t.name.clone(), i).is_some() {
                return Err(GgufErrorKind::Invalid(format!(
                    "tensor {:?} appears twice",
                    t.name
                )));
            }
            if !t.offset.is_multiple_of(alignment) {
                return Err(GgufErrorKind::Invalid(format!(
                    "tensor {:?} offset {} is not a multiple of the alignment {alignment}",
                    t.name, t.offset
                )));
            }
            let start = data_start.saturating_add(t.offset);
            let end = start.saturating_add(t.n_bytes);
            if end > c.len() {
                return Err(GgufErrorKind::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start,
                    end,
                    len: c.len(),
                });
            }
        }
        check_no_overlap(&tensors)?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            version,
            alignment,
            data_start,
            metadata,
            tensors,
            by_name,
        })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset where tensor data starts.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// All metadata, with typed lookups.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// `general.architecture` (`llama`, `qwen2`, …), the prefix of the model's own keys.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.metadata.get_str("general.architecture")
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of one tensor; a missing tensor is an error naming the file.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.by_name
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| self.error(GgufErrorKind::MissingTensor(name.to_string())))
    }

    /// The stored bytes of a tensor, borrowed from the memory map (no copy).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        let info = self.tensor_info(name)?;
        // In bounds and within usize: checked in open().
        let start = (self.data_start + info.offset) as usize;
        Ok(&self.map[start..start + info.n_bytes as usize])
    }

    /// A tensor dequantized to f32, with its row-major shape. Its mapped pages are
    /// released after ([`release_pages`]).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), GgufError> {
        let info = self.tensor_info(name)?;
        let values = dequantize(info.ggml_type, self.tensor_bytes(name)?).ok_or_else(|| {
            self.error(GgufErrorKind::UnsupportedGgmlType {
                tensor: name.to_string(),
                ggml_type: info.ggml_type,
            })
        })?;
        let start = (self.data_start + info.offset) as usize;
        release_pages(&self.map, start, start + info.n_bytes as usize);
        Ok((values, info.shape()))
    }

    /// A Llama-family q or k projection (weight or bias) dequantized and with llama.cpp's
    /// rotary row permutation undone, so it matches the Hugging Face tensor; `n_head` is the
    /// query head count for q and the key/value head count for k (see [`unpermute_qk_rows`]).
    pub fn tensor_f32_unpermuted(
        &self,
        name: &str,
        n_head: usize,
    ) -> Result<(Vec<f32>, Vec<usize>), GgufError> {
        let (values, shape) = self.tensor_f32(name)?;
        let values = unpermute_qk_rows(&values, &shape, n_head).map_err(|source| {
            self.error(GgufErrorKind::Permute {
                tensor: name.to_string(),
                source,
            })
        })?;
        Ok((values, shape))
    }

    fn error(&self, kind: GgufErrorKind) -> GgufError {
        kind.at(&self.path)
    }
}

/// `general.alignment` if present (a u32 power of two, as llama.cpp requires), else 32.
/// Refuses tensors whose data ranges overlap (two tensors at one offset): each
/// tensor's bytes must be its own, or a write to one would show in the other and a
/// corrupt table would go unnoticed.
fn check_no_overlap(tensors: &[TensorInfo]) -> Result<(), GgufErrorKind> {
    let mut ranges: Vec<(u64, u64, &str)> = tensors
        .iter()
        .filter(|t| t.n_bytes > 0)
        .map(|t| {
            (
                t.offset,
                t.offset.saturating_add(t.n_bytes),
                t.name.as_str(),
            )
        })
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        let ((_, end, a), (start, _, b)) = (w[0], w[1]);
        if start < end {
            return Err(GgufErrorKind::Invalid(format!(
                "tensors {a:?} and {b:?} overlap (data offsets {} and {start})",
                w[0].0
            )));
        }
    }
    Ok(())
}

fn alignment(metadata: &Metadata) -> Result<u64, GgufErrorKind> {
    let Some(value) = metadata.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value {
        MetadataValue::U32(a) if a.is_power_of_two() => Ok(u64::from(*a)),
        other => Err(GgufErrorKind::Invalid(format!(
            "general.alignment must be a u32 power of two, found {}",
            other.describe()
        ))),
    }
}

/// Bounds-checked little-endian reads over the mapped bytes; each read names what it reads
/// (lazily, so the happy path allocates nothing) for the truncation error.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: u64,
}

type What<'w> = &'w dyn Fn() -> String;

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// A `Vec` capacity for `count` items of at least `min_size` bytes each, never more than
    /// the rest of the file could hold (a corrupt count must not allocate terabytes).
    fn capacity_for(&self, count: u64, min_size: u64) -> usize {
        let fits = (self.len() - self.pos.min(self.len())) / min_size;
        count.min(fits) as usize
    }

    fn take(&mut self, n: u64, what: What<'_>) -> Result<&'a [u8], GgufErrorKind> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.len());
        let Some(end) = end else {
            return Err(GgufErrorKind::Truncated {
                what: what(),
                offset: self.pos,
                needed: n,
                len: self.len(),
            });
        };
        let bytes = &self.bytes[self.pos as usize..end as usize];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: What<'_>) -> Result<[u8; N], GgufErrorKind> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: What<'_>) -> Result<u32, GgufErrorKind> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: What<'_>) -> Result<u64, GgufErrorKind> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: What<'_>) -> Result<String, GgufErrorKind> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufErrorKind::InvalidUtf8 { what: what() })
    }

    /// One metadata value of type `type_id` (arrays recursively).
    fn value(
        &mut self,
        type_id: u32,
        key: &str,
        depth: usize,
    ) -> Result<MetadataValue, GgufErrorKind> {
        let what = || format!("the value of {key:?}");
        let what: What<'_> = &what;
        Ok(match type_id {
            0 => MetadataValue::U8(u8::from_le_bytes(self.array(what)?)),
            1 => MetadataValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetadataValue::U32(u32::from_le_bytes(self.array(what)?)),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)? {
                [0] => MetadataValue::Bool(false),
                [1] => MetadataValue::Bool(true),
                [b] => {
                    return Err(GgufErrorKind::Invalid(format!(
                        "bool value {b} of key {key:?}"
                    )))
                }
            },
            8 => MetadataValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_NESTING {
                    return Err(GgufErrorKind::Invalid(format!(
                        "arrays nested too deep in key {key:?}"
                    )));
                }
                let elem_type = self.u32(what)?;
                let min_size =
                    min_value_size(elem_type).ok_or_else(|| GgufErrorKind::UnknownValueType {
                        key: key.to_string(),
                        id: elem_type,
                    })?;
                let n = self.u64(what)?;
                let mut items = Vec::with_capacity(self.capacity_for(n, min_size));
                for _ in 0..n {
                    items.push(self.value(elem_type, key, depth + 1)?);
                }
                MetadataValue::Array(items)
            }
            10 => MetadataValue::U64(u64::from_le_bytes(self.array(what)?)),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(what)?)),
            id => {
                return Err(GgufErrorKind::UnknownValueType {
                    key: key.to_string(),
                    id,
                })
            }
        })
    }

    /// Tensor info number `i`; checks the type, the rank and that rows fill whole blocks.
    fn tensor_info(&mut self, i: u64) -> Result<TensorInfo, GgufErrorKind> {
        let name = self.string(&|| format!("the name of tensor #{i}"))?;
        let what = || format!("the info of tensor {name:?}");
        let what: What<'_> = &what;
        let n_dims = self.u32(what)?;
        if n_dims > MAX_DIMS {
            return Err(GgufErrorKind::Invalid(format!(
                "tensor {name:?} has {n_dims} dimensions (ggml allows at most {MAX_DIMS})"
            )));
        }
        let dims = (0..n_dims)
            .map(|_| self.u64(what))
            .collect::<Result<Vec<_>, _>>()?;
        let type_id = self.u32(what)?;
        let offset = self.u64(what)?;
        let ggml_type =
            GgmlType::from_id(type_id).ok_or_else(|| GgufErrorKind::UnknownGgmlType {
                tensor: name.clone(),
                id: type_id,
            })?;
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| usize::try_from(n).is_ok());
        let row = dims.first().copied().unwrap_or(1);
        let n_bytes = match n_elements {
            Some(n) if row.is_multiple_of(ggml_type.block_size() as u64) => ggml_type.bytes_for(n),
            _ => None,
        };
        let Some(n_bytes) = n_bytes else {
            return Err(GgufErrorKind::Invalid(format!(
                "tensor {name:?} of dims {dims:?} does not fit whole {ggml_type} blocks of {}",
                ggml_type.block_size()
            )));
        };
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        })
    }
}

/// Smallest encoded size of a value of GGUF type `type_id`, or `None` for an unknown type.
fn min_value_size(type_id: u32) -> Option<u64> {
    Some(match type_id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{damaged_copy, end_of_gguf_string, fixture};
    use super::*;

    const TYPES: &str = "gguf/types.gguf";

    fn types() -> GgufFile {
        GgufFile::open(fixture(TYPES)).unwrap()
    }

    /// Open a damaged copy of types.gguf and return the error it must give.
    fn open_damaged(damage: impl FnOnce(&mut Vec<u8>)) -> GgufError {
        let (_dir, path) = damaged_copy(TYPES, damage);
        let err = GgufFile::open(&path).unwrap_err();
        assert_eq!(err.path, path);
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
        err
    }

    #[test]
    fn header_alignment_and_offsets() {
        let f = types();
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 64, "general.alignment is 64 in the fixture");
        assert_eq!(f.data_start() % 64, 0);
        assert_eq!(f.architecture().unwrap(), "sinkscope-test");
        assert_eq!(f.tensors().len(), 14);
        for t in f.tensors() {
            assert_eq!(t.offset() % 64, 0, "{}", t.name());
            assert_eq!(f.tensor_bytes(t.name()).unwrap().len() as u64, t.n_bytes());
        }
        let llama = GgufFile::open(fixture("gguf/llama.gguf")).unwrap();
        assert_eq!(llama.alignment(), DEFAULT_ALIGNMENT);
        assert_eq!(llama.data_start() % DEFAULT_ALIGNMENT, 0);
    }

    #[test]
    fn metadata_of_every_value_type() {
        let f = types();
        let m = f.metadata();
        assert_eq!(m.get("test.u8"), Some(&MetadataValue::U8(200)));
        assert_eq!(m.get("test.i8"), Some(&MetadataValue::I8(-100)));
        assert_eq!(m.get("test.u16"), Some(&MetadataValue::U16(60000)));
        assert_eq!(m.get("test.i16"), Some(&MetadataValue::I16(-30000)));
        assert_eq!(m.get_u32("test.u32").unwrap(), 4_000_000_000);
        assert_eq!(m.value::<i32>("test.i32").unwrap(), -2_000_000_000);
        assert_eq!(m.get_f32("test.f32").unwrap(), 1.5);
        assert!(m.get_bool("test.bool").unwrap());
        assert_eq!(m.get_str("test.string").unwrap(), "héllo ▁wörld");
        assert_eq!(m.get_u64("test.u64").unwrap(), (1 << 40) + 7);
        assert_eq!(m.value::<i64>("test.i64").unwrap(), -(1 << 40));
        assert_eq!(m.value::<f64>("test.f64").unwrap(), 2.25);
        assert_eq!(m.value::<Vec<u32>>("test.array.u32").unwrap(), [1, 2, 3]);
        assert_eq!(m.get_i32_array("test.array.i32").unwrap(), [-1, 0, 7]);
        assert_eq!(m.get_f32_array("test.array.f32").unwrap(), [0.5, -1.25]);
        assert_eq!(
            m.value::<Vec<bool>>("test.array.bool").unwrap(),
            [true, false]
        );
        assert_eq!(
            m.get_str_array("test.array.string").unwrap(),
            ["a", "bé", "▁c"]
        );
        assert_eq!(
            m.value::<Vec<Vec<i32>>>("test.array.nested").unwrap(),
            [vec![1, 2], vec![3]]
        );
        // Integers widen and narrow when the value fits.
        assert_eq!(m.value::<u64>("test.u8").unwrap(), 200);
        assert_eq!(m.value::<i32>("test.i16").unwrap(), -30000);
        assert_eq!(
            m.iter().next().map(|(k, _)| k),
            Some("general.architecture")
        );
    }

    #[test]
    fn wrong_or_missing_metadata_is_a_typed_error() {
        let f = types();
        let m = f.metadata();
        let err = m.get_u32("test.string").unwrap_err();
        assert!(err.to_string().contains("types.gguf"), "{err}");
        match err.kind {
            GgufErrorKind::MetadataType {
                key,
                expected,
                found,
            } => {
                assert_eq!((key.as_str(), expected.as_str()), ("test.string", "u32"));
                assert!(found.starts_with("string"), "{found}");
            }
            other => panic!("{other:?}"),
        }
        // Present but out of range is the wrong type too, not a silent truncation.
        assert!(matches!(
            m.get_u32("test.u64").unwrap_err().kind,
            GgufErrorKind::MetadataType { .. }
        ));
        assert!(matches!(
            m.get_str_array("test.array.u32").unwrap_err().kind,
            GgufErrorKind::MetadataType { .. }
        ));
        assert!(
            matches!(m.get_str("nope").unwrap_err().kind, GgufErrorKind::MissingMetadata(k) if k == "nope")
        );
        assert_eq!(m.value_opt::<u32>("nope").unwrap(), None);
        assert!(m.value_opt::<u32>("test.string").is_err());
    }

    #[test]
    fn shapes_are_gguf_dims_reversed() {
        let f = types();
        let rank3 = f.tensor_info("t.f32_rank3").unwrap();
        assert_eq!(rank3.dims(), [4, 3, 2]);
        assert_eq!(rank3.shape(), [2, 3, 4]);
        assert_eq!(f.tensor_info("t.f32_rank1").unwrap().shape(), [5]);
        let q4k = f.tensor_info("t.q4_k").unwrap();
        assert_eq!(
            (q4k.dims(), q4k.ggml_type(), q4k.n_elements()),
            (&[512, 2][..], GgmlType::Q4_K, 1024)
        );
        assert_eq!(f.tensor_f32("t.q4_k").unwrap().1, [2, 512]);
    }

    #[test]
    fn version_2_reads_like_version_3() {
        let (_dir, path) = damaged_copy(TYPES, |b| b[4..8].copy_from_slice(&2u32.to_le_bytes()));
        let v2 = GgufFile::open(path).unwrap();
        let v3 = types();
        assert_eq!(v2.version(), 2);
        assert_eq!(v2.tensors(), v3.tensors());
        assert_eq!(
            v2.tensor_f32("t.q6_k").unwrap(),
            v3.tensor_f32("t.q6_k").unwrap()
        );
    }

    #[test]
    fn bad_magic_and_versions() {
        let err = open_damaged(|b| b[3] = b'X');
        assert!(
            matches!(err.kind, GgufErrorKind::BadMagic { ref found } if found == b"GGUX"),
            "{err}"
        );
        for (version, big_endian) in [(1u32, false), (4, false), (3u32.swap_bytes(), true)] {
            let err = open_damaged(|b| b[4..8].copy_from_slice(&version.to_le_bytes()));
            match err.kind {
                GgufErrorKind::BigEndian => assert!(big_endian),
                GgufErrorKind::UnsupportedVersion { version: v } => {
                    assert_eq!((v, big_endian), (version, false))
                }
                other => panic!("{other:?}"),
            }
        }
        let err = open_damaged(|b| b.clear());
        assert!(
            matches!(err.kind, GgufErrorKind::BadMagic { ref found } if found.is_empty()),
            "{err}"
        );
    }

    #[test]
    fn truncated_header_and_truncated_data() {
        let err = open_damaged(|b| b.truncate(200));
        match err.kind {
            GgufErrorKind::Truncated {
                offset,
                needed,
                len,
                ..
            } => {
                assert_eq!(len, 200);
                assert!(offset + needed > 200);
            }
            other => panic!("{other:?}"),
        }
        // Cut inside the data of the last tensor (the file is padded after it): the header
        // parses, the tensor does not fit.
        let f = types();
        let last = f.tensors().last().unwrap();
        let end = f.data_start() + last.offset() + last.n_bytes();
        let err = open_damaged(|b| b.truncate(end as usize - 4));
        assert!(
            matches!(err.kind, GgufErrorKind::TensorOutOfBounds { ref tensor, .. } if tensor == "t.f32_rank1"),
            "{err}"
        );
    }

    #[test]
    fn unknown_types_are_named() {
        // The u32 ggml type follows the name, n_dims (u32) and the two u64 dims of t.q8_0.
        let err = open_damaged(|b| {
            let at = end_of_gguf_string(b, "t.q8_0") + 4 + 2 * 8;
            b[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
        });
        assert!(
            matches!(err.kind, GgufErrorKind::UnknownGgmlType { ref tensor, id: 99 } if tensor == "t.q8_0"),
            "{err}"
        );
        // The u32 value type follows the key.
        let err = open_damaged(|b| {
            let at = end_of_gguf_string(b, "test.u8");
            b[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
        });
        assert!(
            matches!(err.kind, GgufErrorKind::UnknownValueType { ref key, id: 13 } if key == "test.u8"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_type_missing_tensor_and_missing_file() {
        let f = types();
        let err = f.tensor_f32("t.q2_k").unwrap_err();
        assert!(matches!(
            err.kind,
            GgufErrorKind::UnsupportedGgmlType {
                ggml_type: GgmlType::Q2_K,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("types.gguf") && msg.contains("Q2_K") && msg.contains("Q6_K"),
            "{msg}"
        );
        // Its raw bytes are still there for whoever wants them.
        assert_eq!(f.tensor_bytes("t.q2_k").unwrap().len(), 84);
        assert!(matches!(
            f.tensor_f32("nope").unwrap_err().kind,
            GgufErrorKind::MissingTensor(_)
        ));
        let err = GgufFile::open(fixture("gguf/no-such-file.gguf")).unwrap_err();
        assert!(matches!(err.kind, GgufErrorKind::Io(_)), "{err}");
    }

    #[test]
    fn llama_fixture_metadata() {
        let f = GgufFile::open(fixture("gguf/llama.gguf")).unwrap();
        let m = f.metadata();
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(m.get_str("tokenizer.ggml.model").unwrap(), "llama");
        let tokens = m.get_str_array("tokenizer.ggml.tokens").unwrap();
        assert_eq!(
            tokens.len(),
            m.get_u32("llama.vocab_size").unwrap() as usize
        );
        assert_eq!(
            tokens[m.get_u32("tokenizer.ggml.bos_token_id").unwrap() as usize],
            "<s>"
        );
        assert!(m.get_bool("tokenizer.ggml.add_bos_token").unwrap());
        assert_eq!(
            m.get_f32_array("tokenizer.ggml.scores").unwrap().len(),
            tokens.len()
        );
        assert_eq!(
            m.get_i32_array("tokenizer.ggml.token_type").unwrap()[..3],
            [2, 3, 3]
        );
        let (embd, shape) = f.tensor_f32("token_embd.weight").unwrap();
        assert_eq!(
            shape,
            [
                tokens.len(),
                m.get_u32("llama.embedding_length").unwrap() as usize
            ]
        );
        assert_eq!(embd.len(), shape[0] * shape[1]);
    }
}

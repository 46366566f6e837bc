//! A `.safetensors` file written as its data is produced: the header first (every
//! tensor's dtype and shape is known in advance), then the bytes of each tensor in
//! header order, appended as they come, the file replacing its target only when all
//! of them are in ([`AtomicFile`]).
//!
//! Why by hand: the `safetensors` crate serializes from views of tensors that are all
//! in memory at once; `analyze --dump` of a long text would then hold every layer's
//! maps (30 layers × 9 heads × 2,048² × 4 B = 4.5 GB) only to write them. The format is
//! a u64 header length, a JSON header padded with spaces to 8 bytes, then the data
//! (<https://github.com/huggingface/safetensors#format>); files written here are read
//! back with the crate in the tests.

use std::io::{self, Write};
use std::path::Path;

use safetensors::Dtype;
use serde_json::{json, Map};

use super::atomic::AtomicFile;

/// One tensor of the file: name, element type, shape.
#[derive(Debug)]
pub struct TensorSpec<'a> {
    /// The tensor's name in the header.
    pub name: &'a str,
    /// Its element type.
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
}

impl TensorSpec<'_> {
    fn bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

/// The file being written: bytes still expected, and where they go.
#[derive(Debug)]
pub struct SafetensorsStream {
    file: AtomicFile,
    remaining: usize,
}

impl SafetensorsStream {
    /// Writes the header of `tensors` (their data will follow in this order).
    pub fn create(path: &Path, tensors: &[TensorSpec<'_>]) -> io::Result<Self> {
        let mut header = Map::new();
        let mut offset = 0;
        for t in tensors {
            let end = offset + t.bytes();
            header.insert(
                t.name.to_string(),
                json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end]}),
            );
            offset = end;
        }
        let mut text = serde_json::to_string(&header)?.into_bytes();
        text.resize(text.len().div_ceil(8) * 8, b' ');
        let mut file = AtomicFile::create(path)?;
        let out = file.writer();
        out.write_all(&(text.len() as u64).to_le_bytes())?;
        out.write_all(&text)?;
        Ok(Self {
            file,
            remaining: offset,
        })
    }

    /// Appends raw little-endian tensor bytes (the next part of the data).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() > self.remaining {
            return Err(io::Error::other(format!(
                "{} bytes more than the header announces",
                bytes.len() - self.remaining
            )));
        }
        self.remaining -= bytes.len();
        self.file.writer().write_all(bytes)
    }

    /// Puts the file in place; an error if data is missing (the target is then left as
    /// it was).
    pub fn finish(self) -> io::Result<()> {
        if self.remaining > 0 {
            return Err(io::Error::other(format!(
                "{} bytes fewer than the header announces",
                self.remaining
            )));
        }
        self.file.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;

    #[test]
    fn streamed_file_reads_back_as_the_crate_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.safetensors");
        let ids: Vec<i64> = vec![5, 6, 7];
        let maps: Vec<f32> = (0..2 * 3 * 3).map(|i| i as f32 * 0.5).collect();
        let specs = [
            TensorSpec {
                name: "input_ids",
                dtype: Dtype::I64,
                shape: vec![3],
            },
            TensorSpec {
                name: "attentions",
                dtype: Dtype::F32,
                shape: vec![2, 3, 3],
            },
        ];
        let mut s = SafetensorsStream::create(&path, &specs).unwrap();
        s.write(bytemuck::cast_slice(&ids)).unwrap();
        // in two parts, as layers arrive
        s.write(bytemuck::cast_slice(&maps[..9])).unwrap();
        s.write(bytemuck::cast_slice(&maps[9..])).unwrap();
        s.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let a = st.tensor("attentions").unwrap();
        assert_eq!(a.shape(), [2, 3, 3]);
        assert_eq!(a.data(), bytemuck::cast_slice::<f32, u8>(&maps));
        assert_eq!(st.tensor("input_ids").unwrap().dtype(), Dtype::I64);
        assert_eq!(
            st.tensor("input_ids").unwrap().data(),
            bytemuck::cast_slice::<i64, u8>(&ids)
        );
    }

    #[test]
    fn short_or_long_data_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.safetensors");
        let spec = [TensorSpec {
            name: "x",
            dtype: Dtype::F32,
            shape: vec![4],
        }];
        let mut s = SafetensorsStream::create(&path, &spec).unwrap();
        assert!(s.write(&[0u8; 20]).is_err());
        s.write(&[0u8; 8]).unwrap();
        assert!(s
            .finish()
            .unwrap_err()
            .to_string()
            .contains("8 bytes fewer"));
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp file left"
        );
    }
}

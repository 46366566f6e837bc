//! TFRecord framing, the container TensorBoard event files use.
//!
//! Each record is
//!
//! ```text
//! u64 length (little endian)
//! u32 masked CRC32C of those 8 length bytes
//! length bytes of payload (one serialized `Event`)
//! u32 masked CRC32C of the payload
//! ```
//!
//! where `masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8` (a 15-bit
//! right rotation, then a wrapping add),
//! as in TensorFlow's `tsl/lib/hash/crc32c.h`. The mask keeps a CRC computed
//! over data that itself contains CRCs from degenerating.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::LogError;

/// Bytes of framing around each payload: length, its CRC, the payload's CRC.
pub const FRAMING_BYTES: u64 = 8 + 4 + 4;

/// The constant TensorFlow adds when masking a CRC.
const MASK_DELTA: u32 = 0xa282_ead8;

/// Masked CRC32C of `data`, the checksum TFRecord stores.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Frames `payload` as one record into `out`, so any TFRecord reader
/// (TensorBoard's included) can find its boundaries and check it.
pub fn write_record<W: Write>(out: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = (payload.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc32c(&len).to_le_bytes())?;
    out.write_all(payload)?;
    out.write_all(&masked_crc32c(payload).to_le_bytes())
}

/// One record read back: where it starts and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Byte offset of the record's first length byte in the file.
    pub offset: u64,
    /// The checked payload.
    pub payload: Vec<u8>,
}

impl Record {
    /// Byte offset just past this record, where the next one starts.
    pub fn end(&self) -> u64 {
        self.offset + FRAMING_BYTES + self.payload.len() as u64
    }
}

/// Reads records one by one, checking both CRCs, and reports damage with the
/// file name and the byte offset of the damaged record.
pub struct RecordReader<R> {
    inner: R,
    path: PathBuf,
    offset: u64,
}

impl<R: Read> RecordReader<R> {
    /// Reads records from `inner`; `path` is only used to name the file in
    /// errors.
    pub fn new(inner: R, path: &Path) -> Self {
        RecordReader {
            inner,
            path: path.to_path_buf(),
            offset: 0,
        }
    }

    /// The next record, `None` at a clean end of file (exactly between two
    /// records), or an error naming the file and offset when the record is
    /// corrupt or cut short.
    pub fn next_record(&mut self) -> Result<Option<Record>, LogError> {
        let start = self.offset;
        let mut header = [0u8; 12];
        let got = self.read_up_to(&mut header)?;
        if got == 0 {
            return Ok(None);
        }
        if got < header.len() {
            return Err(self.truncated(start, format!("header has {got} of 12 bytes")));
        }
        let (len_bytes, len_crc) = header.split_at(8);
        if masked_crc32c(len_bytes) != le_u32(len_crc) {
            return Err(self.corrupt(start, "length CRC mismatch"));
        }
        let mut len_le = [0u8; 8];
        len_le.copy_from_slice(len_bytes);
        let len = u64::from_le_bytes(len_le);

        // `take` + `read_to_end` grows the buffer as bytes arrive, so a huge
        // length in a damaged file cannot make us allocate it up front.
        let mut payload = Vec::new();
        let read = (&mut self.inner)
            .take(len)
            .read_to_end(&mut payload)
            .map_err(|e| LogError::io("cannot read", &self.path, e))?;
        if (read as u64) < len {
            return Err(self.truncated(start, format!("payload has {read} of {len} bytes")));
        }
        let mut crc = [0u8; 4];
        let got = self.read_up_to(&mut crc)?;
        if got < crc.len() {
            return Err(self.truncated(start, "payload CRC missing".to_string()));
        }
        if masked_crc32c(&payload) != u32::from_le_bytes(crc) {
            return Err(self.corrupt(start, "payload CRC mismatch"));
        }
        self.offset = start + FRAMING_BYTES + len;
        Ok(Some(Record {
            offset: start,
            payload,
        }))
    }

    /// Fills as much of `buf` as the input has; fewer bytes only at EOF.
    fn read_up_to(&mut self, buf: &mut [u8]) -> Result<usize, LogError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LogError::io("cannot read", &self.path, e)),
            }
        }
        Ok(filled)
    }

    fn corrupt(&self, offset: u64, problem: &str) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            offset,
            problem: problem.to_string(),
        }
    }

    fn truncated(&self, offset: u64, problem: String) -> LogError {
        LogError::Truncated {
            path: self.path.clone(),
            offset,
            problem,
        }
    }
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(bytes);
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently with Python's `crc32c` package:
    //   c = crc32c.crc32c(d); (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xffffffff
    #[test]
    fn masked_crc_matches_independent_values() {
        assert_eq!(masked_crc32c(b""), 0xa282_ead8);
        // CRC32C's standard check value is 0xe3069283 for "123456789".
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
        assert_eq!(masked_crc32c(b"hello world"), 0x6dd8_7e00);
        assert_eq!(masked_crc32c(&5u64.to_le_bytes()), 0x3e04_b2ea);
        assert_eq!(masked_crc32c(&24u64.to_le_bytes()), 0x224b_7fa3);
    }

    #[test]
    fn framing_layout() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"hello").unwrap();
        assert_eq!(buf.len(), 16 + 5);
        assert_eq!(&buf[..8], &5u64.to_le_bytes());
        assert_eq!(&buf[8..12], &0x3e04_b2eau32.to_le_bytes());
        assert_eq!(&buf[12..17], b"hello");
        assert_eq!(&buf[17..], &masked_crc32c(b"hello").to_le_bytes());
    }

    fn two_records() -> Vec<u8> {
        let mut buf = Vec::new();
        write_record(&mut buf, b"first").unwrap();
        write_record(&mut buf, b"").unwrap();
        write_record(&mut buf, b"third record").unwrap();
        buf
    }

    #[test]
    fn reads_back_with_offsets() {
        let buf = two_records();
        let mut r = RecordReader::new(buf.as_slice(), Path::new("mem"));
        let a = r.next_record().unwrap().unwrap();
        let b = r.next_record().unwrap().unwrap();
        let c = r.next_record().unwrap().unwrap();
        assert!(r.next_record().unwrap().is_none());
        assert_eq!((a.offset, a.payload.as_slice()), (0, &b"first"[..]));
        assert_eq!((b.offset, b.payload.len()), (21, 0));
        assert_eq!(c.offset, 37);
        assert_eq!(c.payload, b"third record");
        assert_eq!(c.end(), buf.len() as u64);
    }

    #[test]
    fn every_flipped_byte_is_caught_with_its_record_offset() {
        let clean = two_records();
        for i in 0..clean.len() {
            let mut buf = clean.clone();
            buf[i] ^= 0x40;
            let mut r = RecordReader::new(buf.as_slice(), Path::new("ev"));
            let err = loop {
                match r.next_record() {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("flip at {i} not detected"),
                    Err(e) => break e,
                }
            };
            let record_start = [0u64, 21, 37]
                .into_iter()
                .rfind(|&s| s <= i as u64)
                .unwrap();
            match err {
                LogError::Corrupt { offset, .. } => assert_eq!(offset, record_start, "flip at {i}"),
                other => panic!("flip at {i}: unexpected {other}"),
            }
        }
    }

    #[test]
    fn every_cut_is_reported_as_truncated() {
        let clean = two_records();
        let boundaries = [0usize, 21, 37, clean.len()];
        for cut in 0..clean.len() {
            let mut r = RecordReader::new(&clean[..cut], Path::new("ev"));
            let result = loop {
                match r.next_record() {
                    Ok(Some(_)) => continue,
                    other => break other,
                }
            };
            if boundaries.contains(&cut) {
                assert!(matches!(result, Ok(None)), "cut at {cut}");
            } else {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, LogError::Truncated { .. }),
                    "cut at {cut}: {err}"
                );
                assert!(err
                    .to_string()
                    .starts_with("ev: truncated record at byte offset"));
            }
        }
    }
}

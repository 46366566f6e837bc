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

use std::io::{self, Write};

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

/// Why the bytes at an offset are not an intact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// The file ends before the 12 bytes of length and length CRC.
    HeaderCut {
        /// Header bytes present.
        have: usize,
    },
    /// The CRC of the length does not match: the length cannot be trusted.
    LengthCrc,
    /// The file ends inside the payload or its CRC.
    PayloadCut {
        /// Payload bytes (with CRC) present.
        have: u64,
        /// Payload bytes (with CRC) the length announces.
        want: u64,
    },
    /// The CRC of the payload does not match.
    PayloadCrc,
}

impl Flaw {
    /// Whether the record runs past the end of the file (a crash mid-write) rather
    /// than failing a checksum.
    pub fn is_cut(&self) -> bool {
        matches!(self, Flaw::HeaderCut { .. } | Flaw::PayloadCut { .. })
    }
}

impl std::fmt::Display for Flaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flaw::HeaderCut { have } => write!(f, "header has {have} of 12 bytes"),
            Flaw::LengthCrc => write!(f, "length CRC mismatch"),
            Flaw::PayloadCut { have, want } => {
                write!(f, "payload and CRC have {have} of {want} bytes")
            }
            Flaw::PayloadCrc => write!(f, "payload CRC mismatch"),
        }
    }
}

/// The record framed at byte `at` of `bytes` if both its CRCs hold: its payload and
/// the offset where the next record starts.
pub fn record_at(bytes: &[u8], at: usize) -> Result<(&[u8], usize), Flaw> {
    let rest = bytes.get(at..).unwrap_or_default();
    let Some(header) = rest.get(..12) else {
        return Err(Flaw::HeaderCut { have: rest.len() });
    };
    let (len_bytes, len_crc) = header.split_at(8);
    if masked_crc32c(len_bytes) != le_u32(len_crc) {
        return Err(Flaw::LengthCrc);
    }
    let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
    let body = &rest[12..];
    let want = len.saturating_add(4);
    let Some(payload) = usize::try_from(len).ok().and_then(|l| body.get(..l)) else {
        return Err(Flaw::PayloadCut {
            have: body.len() as u64,
            want,
        });
    };
    let Some(crc) = body.get(payload.len()..payload.len() + 4) else {
        return Err(Flaw::PayloadCut {
            have: body.len() as u64,
            want,
        });
    };
    if masked_crc32c(payload) != le_u32(crc) {
        return Err(Flaw::PayloadCrc);
    }
    Ok((payload, at + 12 + payload.len() + 4))
}

/// What [`scan`] finds, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// An intact record.
    Record {
        /// Byte offset of its first length byte.
        offset: u64,
        /// The checked payload.
        payload: &'a [u8],
    },
    /// Bytes that hold no intact record, up to the next intact one or the end.
    Damaged {
        /// Byte offset where the damage starts (where a record was expected).
        offset: u64,
        /// Bytes skipped.
        len: u64,
        /// What is wrong with the record expected at `offset`.
        flaw: Flaw,
    },
}

/// Every intact record of an event file, and each damaged stretch between them. The
/// only reader of the framing, so resume, reports and tests agree on what a file
/// holds.
///
/// TFRecord framing carries a CRC of the length and one of the payload, so damage is
/// recognised and the next intact record found again: the scan resumes at the next
/// offset where a whole record (both CRCs) checks out. A false match needs two 32-bit
/// CRCs to agree by chance. Each offset costs one CRC of 8 bytes, so a damaged file is
/// scanned in time linear in its size.
pub fn scan(bytes: &[u8]) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok((payload, end)) => {
                pieces.push(Piece::Record {
                    offset: at as u64,
                    payload,
                });
                at = end;
            }
            Err(flaw) => {
                let next = (at + 1..bytes.len())
                    .find(|&q| record_at(bytes, q).is_ok())
                    .unwrap_or(bytes.len());
                pieces.push(Piece::Damaged {
                    offset: at as u64,
                    len: (next - at) as u64,
                    flaw,
                });
                at = next;
            }
        }
    }
    pieces
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes.try_into().unwrap_or_default())
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

    const STARTS: [u64; 3] = [0, 21, 37];

    fn records(pieces: &[Piece<'_>]) -> Vec<(u64, Vec<u8>)> {
        pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Record { offset, payload } => Some((*offset, payload.to_vec())),
                Piece::Damaged { .. } => None,
            })
            .collect()
    }

    #[test]
    fn reads_back_with_offsets() {
        let buf = two_records();
        let got = records(&scan(&buf));
        assert_eq!(
            got,
            vec![
                (0, b"first".to_vec()),
                (21, Vec::new()),
                (37, b"third record".to_vec())
            ]
        );
        assert_eq!(scan(&buf).len(), 3);
        assert_eq!(record_at(&buf, 37).unwrap().1, buf.len());
        assert!(scan(&[]).is_empty());
    }

    /// A flipped byte anywhere costs exactly the record holding it: the damage starts
    /// at that record's offset, and the other two records are found again.
    #[test]
    fn every_flipped_byte_costs_only_its_record() {
        let clean = two_records();
        let all = records(&scan(&clean));
        for i in 0..clean.len() {
            let mut buf = clean.clone();
            buf[i] ^= 0x40;
            let pieces = scan(&buf);
            let start = STARTS.into_iter().rfind(|&s| s <= i as u64).unwrap();
            let damaged: Vec<(u64, Flaw)> = pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Damaged { offset, flaw, .. } => Some((*offset, *flaw)),
                    Piece::Record { .. } => None,
                })
                .collect();
            assert_eq!(damaged.len(), 1, "flip at {i}: {pieces:?}");
            assert_eq!(damaged[0].0, start, "flip at {i}");
            assert!(!damaged[0].1.is_cut(), "flip at {i}");
            let kept: Vec<_> = all.iter().filter(|(o, _)| *o != start).cloned().collect();
            assert_eq!(records(&pieces), kept, "flip at {i}");
        }
    }

    #[test]
    fn every_cut_is_a_cut_short_tail() {
        let clean = two_records();
        for cut in 0..clean.len() {
            let pieces = scan(&clean[..cut]);
            let whole = STARTS.iter().filter(|&&s| s < cut as u64).count();
            if STARTS.contains(&(cut as u64)) {
                assert_eq!(records(&pieces).len(), whole, "cut at {cut}");
                assert!(pieces.iter().all(|p| matches!(p, Piece::Record { .. })));
            } else {
                assert_eq!(records(&pieces).len(), whole - 1, "cut at {cut}");
                match pieces.last().unwrap() {
                    Piece::Damaged { offset, len, flaw } => {
                        assert!(flaw.is_cut(), "cut at {cut}: {flaw}");
                        assert_eq!(offset + len, cut as u64);
                    }
                    other => panic!("cut at {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn garbage_between_records_is_one_damaged_stretch() {
        let clean = two_records();
        let mut buf = clean[..21].to_vec();
        buf.extend_from_slice(&[0xAB; 100]);
        buf.extend_from_slice(&clean[21..]);
        let pieces = scan(&buf);
        assert_eq!(records(&pieces).len(), 3);
        assert_eq!(
            pieces[1],
            Piece::Damaged {
                offset: 21,
                len: 100,
                flaw: Flaw::LengthCrc
            }
        );
        // A huge length with a valid CRC is a cut, not an allocation.
        let mut huge = Vec::new();
        let len = u64::MAX.to_le_bytes();
        huge.extend_from_slice(&len);
        huge.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        huge.extend_from_slice(b"tiny");
        assert!(matches!(
            record_at(&huge, 0),
            Err(Flaw::PayloadCut { have: 4, .. })
        ));
    }
}

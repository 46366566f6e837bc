//! Dequantization of ggml tensor data to f32.
//!
//! Block layouts are those of ggml's `ggml-common.h` (`block_q4_0` … `block_q6_K`) and the
//! arithmetic that of `dequantize_row_*` in `ggml-quants.c`, in the same operation order as
//! gguf-py's numpy reference (`gguf/quants.py`), so results agree to the bit: products like
//! `d * sc * q - dmin * m` are evaluated left to right in f32, as both references do.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use super::ggml_type::{GgmlType, QK_K};

/// Dequantize `bytes` (whole blocks of `ty`) to f32 in storage order.
///
/// `None` if sinkscope does not support `ty` (see [`GgmlType::SUPPORTED`]) or `bytes` is not
/// a whole number of blocks; the GGUF reader checks both before calling.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(ty.type_size()) {
        return None;
    }
    Some(match ty {
        GgmlType::F32 => blocks(ty, bytes, |b, y| {
            y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }),
        GgmlType::F16 => f16_slice(bytes),
        GgmlType::BF16 => blocks(ty, bytes, |b, y| {
            y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()
        }),
        GgmlType::Q8_0 => blocks(ty, bytes, q8_0),
        GgmlType::Q4_0 => blocks(ty, bytes, q4_0),
        GgmlType::Q4_1 => blocks(ty, bytes, q4_1),
        GgmlType::Q5_0 => blocks(ty, bytes, q5_0),
        GgmlType::Q5_1 => blocks(ty, bytes, q5_1),
        GgmlType::Q4_K => blocks(ty, bytes, q4_k),
        GgmlType::Q5_K => blocks(ty, bytes, q5_k),
        GgmlType::Q6_K => blocks(ty, bytes, q6_k),
        _ => return None,
    })
}

/// Runs `block` over each block of `bytes`, writing `ty.block_size()` values per block.
/// Generic over the block function so each type's loop is compiled (and inlined) on its own.
fn blocks(ty: GgmlType, bytes: &[u8], block: impl Fn(&[u8], &mut [f32])) -> Vec<f32> {
    let (size, n) = (ty.type_size(), ty.block_size());
    let mut out = vec![0.0f32; bytes.len() / size * n];
    for (b, y) in bytes.chunks_exact(size).zip(out.chunks_exact_mut(n)) {
        block(b, y);
    }
    out
}

/// F16 data through `half`'s slice conversion, which uses the CPU's F16C instructions when
/// present (several times faster than converting one value at a time; same values).
fn f16_slice(bytes: &[u8]) -> Vec<f32> {
    const CHUNK: usize = 1024;
    let mut out = vec![0.0f32; bytes.len() / 2];
    let mut buf = [f16::ZERO; CHUNK];
    for (src, dst) in bytes.chunks(2 * CHUNK).zip(out.chunks_mut(CHUNK)) {
        for (h, b) in buf.iter_mut().zip(src.chunks_exact(2)) {
            *h = f16::from_le_bytes([b[0], b[1]]);
        }
        buf[..dst.len()].convert_to_f32_slice(dst);
    }
    out
}

/// The little-endian f16 at byte `i`, widened exactly.
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `block_q8_0`: d (f16), 32 × i8. x = q·d.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = f32::from(q as i8) * d;
    }
}

/// `block_q4_0`: d (f16), 16 bytes of nibbles; low nibbles are elements 0..16, high 16..32.
/// x = (q − 8)·d.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = f32::from(i16::from(q & 0x0F) - 8) * d;
        y[j + 16] = f32::from(i16::from(q >> 4) - 8) * d;
    }
}

/// `block_q4_1`: d, m (f16), 16 bytes of nibbles. x = q·d + m.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = f32::from(q & 0x0F) * d + m;
        y[j + 16] = f32::from(q >> 4) * d + m;
    }
}

/// The 5-bit quants of `block_q5_0` / `block_q5_1`: nibbles plus bit `j` of the
/// little-endian u32 `qh` as the fifth bit of element `j`.
fn five_bit(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; 32];
    for (j, &byte) in qs.iter().enumerate() {
        let high = |bit: usize| (((qh >> bit) & 1) as u8) << 4;
        q[j] = (byte & 0x0F) | high(j);
        q[j + 16] = (byte >> 4) | high(j + 16);
    }
    q
}

/// `block_q5_0`: d (f16), qh (4 bytes), 16 bytes of nibbles. x = (q − 16)·d.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, q) in y.iter_mut().zip(five_bit(&b[2..6], &b[6..22])) {
        *y = f32::from(i16::from(q) - 16) * d;
    }
}

/// `block_q5_1`: d, m (f16), qh (4 bytes), 16 bytes of nibbles. x = q·d + m.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (y, q) in y.iter_mut().zip(five_bit(&b[4..8], &b[8..24])) {
        *y = f32::from(q) * d + m;
    }
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed 6-bit values of a Q4_K/Q5_K
/// block (`get_scale_min_k4` in ggml-quants.c).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The K-quant super-scales and the (scale, min) of the 8 sub-blocks of 32, multiplied out
/// as ggml does (`d1 = d * sc`, `m1 = min * m`).
fn k_sub_blocks(b: &[u8]) -> [(f32, f32); 8] {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    std::array::from_fn(|j| {
        let (sc, m) = scale_min_k4(j, &b[4..16]);
        (d * f32::from(sc), dmin * f32::from(m))
    })
}

/// `block_q4_K`: d, dmin (f16), 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
/// Each 64 elements use 32 bytes: low nibbles for the first 32, high for the next 32.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let sub = k_sub_blocks(b);
    let qs = &b[16..16 + QK_K / 2];
    for (j, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let ((d1, m1), (d2, m2)) = (sub[2 * j], sub[2 * j + 1]);
        for l in 0..32 {
            y[l] = d1 * f32::from(q[l] & 0x0F) - m1;
            y[l + 32] = d2 * f32::from(q[l] >> 4) - m2;
        }
    }
}

/// `block_q5_K`: d, dmin (f16), 12 bytes of scales/mins, qh (32 bytes), 128 bytes of nibbles.
/// Sub-block `i` takes its fifth bit from bit `i` of `qh[l]`.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let sub = k_sub_blocks(b);
    let qh = &b[16..16 + QK_K / 8];
    let qs = &b[48..48 + QK_K / 2];
    for (j, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let ((d1, m1), (d2, m2)) = (sub[2 * j], sub[2 * j + 1]);
        let (u1, u2) = (1u8 << (2 * j), 1u8 << (2 * j + 1));
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * f32::from((q[l] & 0x0F) + h1) - m1;
            y[l + 32] = d2 * f32::from((q[l] >> 4) + h2) - m2;
        }
    }
}

/// `block_q6_K`: ql (128 bytes, low nibbles), qh (64 bytes, 2 high bits each), 16 i8 scales,
/// d (f16). Each half of 128 elements uses 64 bytes of ql, 32 of qh and 8 scales;
/// x = d·scale·(q − 32), with one scale per 16 elements.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    for (n, y) in y.chunks_exact_mut(128).enumerate() {
        let (ql, qh, sc) = (&ql[64 * n..], &qh[32 * n..], &scales[8 * n..]);
        let scale = |i: usize| d * f32::from(sc[i] as i8);
        for l in 0..32 {
            let is = l / 16;
            let q = |low: u8, shift: u32| {
                f32::from(i16::from(low | (((qh[l] >> shift) & 3) << 4)) - 32)
            };
            y[l] = scale(is) * q(ql[l] & 0x0F, 0);
            y[l + 32] = scale(is + 2) * q(ql[l + 32] & 0x0F, 2);
            y[l + 64] = scale(is + 4) * q(ql[l] >> 4, 4);
            y[l + 96] = scale(is + 6) * q(ql[l + 32] >> 4, 6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::reader::GgufFile;
    use super::super::test_support::{fixture, read_safetensors};
    use super::*;

    /// One block of each layout with hand-computed values, independent of gguf-py.
    #[test]
    fn hand_made_blocks() {
        let half = |x: f32| f16::from_f32(x).to_le_bytes();

        let mut q8 = half(0.5).to_vec();
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let y = dequantize(GgmlType::Q8_0, &q8).unwrap();
        assert_eq!(y[0], -8.0);
        assert_eq!(y[31], 7.5);

        // Q4_0: byte j = (hi << 4) | lo; elements j and j + 16.
        let mut q4 = half(2.0).to_vec();
        q4.extend((0..16).map(|j| ((15 - j) << 4 | j) as u8));
        let y = dequantize(GgmlType::Q4_0, &q4).unwrap();
        assert_eq!((y[0], y[15], y[16], y[31]), (-16.0, 14.0, 14.0, -16.0));

        // Q5_0: only bit 17 of qh set → element 17 gets +16.
        let mut q5 = half(1.0).to_vec();
        q5.extend((1u32 << 17).to_le_bytes());
        q5.extend([0u8; 16]);
        let y = dequantize(GgmlType::Q5_0, &q5).unwrap();
        assert_eq!((y[0], y[1], y[17]), (-16.0, -16.0, 0.0));

        // Q4_K: sub-block 5 scale = (q[9] & 15) | (q[1] >> 6) << 4, min = (q[9] >> 4) | (q[5] >> 6) << 4.
        let mut k = [0u8; 144];
        k[0..2].copy_from_slice(&half(1.0));
        k[2..4].copy_from_slice(&half(0.5));
        k[4 + 1] = 0b0100_0000; // high bits of scale 5 = 1
        k[4 + 5] = 0b1000_0000; // high bits of min 5 = 2
        k[4 + 9] = 0x3_2; // scale low 2, min low 3
        k[16 + 2 * 32..16 + 3 * 32].fill(0x70); // sub-block 5 = high nibbles of bytes 64..96 → q = 7
        let y = dequantize(GgmlType::Q4_K, &k).unwrap();
        let (scale, min) = (16.0 + 2.0, 32.0 + 3.0);
        assert_eq!(y[5 * 32], scale * 7.0 - 0.5 * min);
        assert_eq!(y[4 * 32], 0.0); // sub-block 4: scale 0, min 0
    }

    #[test]
    fn partial_blocks_and_unsupported_types_give_none() {
        assert_eq!(dequantize(GgmlType::Q8_0, &[0u8; 33]), None);
        assert_eq!(dequantize(GgmlType::Q2_K, &[0u8; 84]), None);
    }

    /// Every supported type against gguf-py's `gguf.quants.dequantize` on the same bytes
    /// (tests/fixtures/gguf/make_gguf_fixtures.py): bit-exact for F32/F16/BF16 (NaN as NaN),
    /// within 1e-6 otherwise.
    #[test]
    fn every_supported_type_matches_gguf_py() {
        let file = GgufFile::open(fixture("gguf/types.gguf")).unwrap();
        let expected = read_safetensors(&fixture("gguf/types.expected.safetensors"));
        let mut covered = Vec::new();
        for info in file.tensors() {
            let ty = info.ggml_type();
            if !ty.is_supported() {
                continue;
            }
            let (got, shape) = file.tensor_f32(info.name()).unwrap();
            let (want, want_shape) = &expected[info.name()];
            assert_eq!(&shape, want_shape, "{}", info.name());
            assert_eq!(got.len(), want.len());
            let exact = matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
            for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
                let same = if exact {
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())
                } else {
                    (g - w).abs() <= 1e-6
                };
                assert!(
                    same,
                    "{} ({ty}) element {i}: {g} vs gguf-py {w}",
                    info.name()
                );
            }
            covered.push(ty);
        }
        for ty in GgmlType::SUPPORTED {
            assert!(covered.contains(&ty), "fixture has no {ty} tensor");
        }
    }
}

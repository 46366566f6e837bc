//! Undoing llama.cpp's q/k row permutation for Llama-family GGUF files.
//!
//! Hugging Face Llama rotates dimension `i` of a head with `i + head_dim/2` ("rotate_half");
//! llama.cpp's `LLAMA_ROPE_TYPE_NORM` kernel rotates adjacent pairs `(2i, 2i + 1)`. So that
//! both compute the same attention, `convert_hf_to_gguf.py` reorders the output rows of
//! `q_proj` and `k_proj` (weights and biases) when writing a GGUF, in
//! `LlamaModel.permute` (ggml-org/llama.cpp, convert_hf_to_gguf.py):
//!
//! ```python
//! @staticmethod
//! def permute(weights: Tensor, n_head: int, n_head_kv: int | None):
//!     if n_head_kv is not None and n_head != n_head_kv:
//!         n_head = n_head_kv
//!     return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
//!             .swapaxes(1, 2)
//!             .reshape(weights.shape))
//! ```
//!
//! called as `permute(q, n_head, n_head)` and `permute(k, n_head, n_head_kv)`. Within each
//! head of `d` rows, row `s·d/2 + i` (half `s`, index `i`) moves to row `2i + s`. Architectures
//! whose llama.cpp rope is NEOX-style (qwen2, phi2, gptneox, gemma…) are written unpermuted.

/// Why a tensor cannot be un-permuted with the given head count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PermuteError {
    /// A scalar has no rows to reorder.
    #[error("it has no rows")]
    NoRows,
    /// Zero heads, or rows that do not split into heads of an even number of rows.
    #[error("its {rows} rows do not split into heads of an even size")]
    RowsNotDivisible {
        /// Rows of the tensor.
        rows: usize,
    },
    /// The data length does not match the shape.
    #[error("{len} values do not fill the shape")]
    LengthMismatch {
        /// Values given.
        len: usize,
    },
}

/// Undo `LlamaModel.permute` on row-major `data` of `shape` (`[rows]` for a bias,
/// `[rows, cols]` for a weight), with `n_head` heads: the query head count for `attn_q`, the
/// key/value head count for `attn_k`.
pub fn unpermute_qk_rows(
    data: &[f32],
    shape: &[usize],
    n_head: usize,
) -> Result<Vec<f32>, PermuteError> {
    let (&rows, rest) = shape.split_first().ok_or(PermuteError::NoRows)?;
    let row_len: usize = rest.iter().product();
    if rows.checked_mul(row_len) != Some(data.len()) {
        return Err(PermuteError::LengthMismatch { len: data.len() });
    }
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return Err(PermuteError::RowsNotDivisible { rows });
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for i in 0..half {
                let original = h * head_dim + s * half + i;
                let permuted = h * head_dim + 2 * i + s;
                out[original * row_len..(original + 1) * row_len]
                    .copy_from_slice(&data[permuted * row_len..(permuted + 1) * row_len]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::reader::GgufFile;
    use super::super::test_support::{fixture, read_safetensors};
    use super::*;

    /// Rows named by their Hugging Face index: 2 heads of 4 rows, one column.
    /// Permuted per head: [0, 2, 1, 3 | 4, 6, 5, 7].
    #[test]
    fn small_case_by_hand() {
        let permuted = [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0];
        let hf = unpermute_qk_rows(&permuted, &[8, 1], 2).unwrap();
        assert_eq!(hf, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        // The same rows as a bias (1-D) and with two columns per row.
        assert_eq!(unpermute_qk_rows(&permuted, &[8], 2).unwrap(), hf);
        let wide: Vec<f32> = permuted.iter().flat_map(|&r| [r, -r]).collect();
        let back = unpermute_qk_rows(&wide, &[8, 2], 2).unwrap();
        assert_eq!(back.iter().step_by(2).copied().collect::<Vec<_>>(), hf);
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        assert_eq!(
            unpermute_qk_rows(&[0.0; 6], &[6], 2),
            Err(PermuteError::RowsNotDivisible { rows: 6 })
        );
        assert_eq!(
            unpermute_qk_rows(&[0.0; 8], &[8], 0),
            Err(PermuteError::RowsNotDivisible { rows: 8 })
        );
        assert_eq!(
            unpermute_qk_rows(&[0.0; 7], &[8], 2),
            Err(PermuteError::LengthMismatch { len: 7 })
        );
        assert_eq!(unpermute_qk_rows(&[1.0], &[], 1), Err(PermuteError::NoRows));
    }

    /// llama.gguf was written from tests/fixtures/hf/llama with `LlamaModel.permute`; undoing
    /// it must give the Hugging Face q/k weights back bit for bit (and not undoing it must not).
    #[test]
    fn restores_the_hugging_face_llama_fixture() {
        let gguf = GgufFile::open(fixture("gguf/llama.gguf")).unwrap();
        let hf = read_safetensors(&fixture("hf/llama/model.safetensors"));
        let meta = gguf.metadata();
        let n_head = meta.get_u32("llama.attention.head_count").unwrap() as usize;
        let n_kv = meta.get_u32("llama.attention.head_count_kv").unwrap() as usize;
        assert!(
            n_kv < n_head,
            "the fixture should use grouped-query attention"
        );
        let n_layers = meta.get_u32("llama.block_count").unwrap();
        for layer in 0..n_layers {
            for (gguf_name, hf_name, heads) in
                [("attn_q", "q_proj", n_head), ("attn_k", "k_proj", n_kv)]
            {
                let name = format!("blk.{layer}.{gguf_name}.weight");
                let (want, want_shape) =
                    &hf[&format!("model.layers.{layer}.self_attn.{hf_name}.weight")];
                let (got, shape) = gguf.tensor_f32_unpermuted(&name, heads).unwrap();
                assert_eq!(&shape, want_shape, "{name}");
                assert!(
                    got == *want,
                    "{name} differs from {hf_name} after un-permuting"
                );
                let (raw, _) = gguf.tensor_f32(&name).unwrap();
                assert!(raw != *want, "{name} was not permuted in the fixture");
            }
            // Tensors the converter does not permute come through as they are.
            let (v, _) = gguf
                .tensor_f32(&format!("blk.{layer}.attn_v.weight"))
                .unwrap();
            assert!(v == hf[&format!("model.layers.{layer}.self_attn.v_proj.weight")].0);
        }
    }
}

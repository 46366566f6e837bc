//! ggml tensor types: ids, names and block geometry, as in gguf-py's `constants.py`
//! (`GGMLQuantizationType`, `GGML_QUANT_SIZES`), which mirrors ggml's `ggml.h` / `ggml-common.h`.

use std::fmt;

/// Defines [`GgmlType`] and its tables from one list, so ids, names and sizes cannot drift apart.
macro_rules! ggml_types {
    ($($variant:ident = $id:literal, $name:literal, $block:literal, $bytes:expr;)*) => {
        /// A ggml tensor type. Every type ggml defines is listed, so an unsupported one can be
        /// named in errors and its size still checked; [`GgmlType::SUPPORTED`] are the ones
        /// sinkscope dequantizes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types, reason = "ggml's own type names (Q4_K, IQ2_XXS)")]
        pub enum GgmlType {
            $(
                #[doc = concat!("`", $name, "` (id ", $id, ")")]
                $variant,
            )*
        }

        impl GgmlType {
            /// The type with this id in the file, if ggml defines one.
            pub fn from_id(id: u32) -> Option<Self> {
                match id {
                    $($id => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The id stored in GGUF tensor infos.
            pub fn id(self) -> u32 {
                match self {
                    $(Self::$variant => $id,)*
                }
            }

            /// ggml's name for the type, as llama.cpp prints it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// Elements per block (1 for plain float and integer types).
            pub fn block_size(self) -> usize {
                match self {
                    $(Self::$variant => $block,)*
                }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self {
                    $(Self::$variant => $bytes,)*
                }
            }
        }
    };
}

/// Super-block size of the K-quants (`QK_K` in ggml-common.h).
pub const QK_K: usize = 256;

ggml_types! {
    F32 = 0, "F32", 1, 4;
    F16 = 1, "F16", 1, 2;
    Q4_0 = 2, "Q4_0", 32, 2 + 16;
    Q4_1 = 3, "Q4_1", 32, 2 + 2 + 16;
    Q5_0 = 6, "Q5_0", 32, 2 + 4 + 16;
    Q5_1 = 7, "Q5_1", 32, 2 + 2 + 4 + 16;
    Q8_0 = 8, "Q8_0", 32, 2 + 32;
    Q8_1 = 9, "Q8_1", 32, 4 + 4 + 32;
    Q2_K = 10, "Q2_K", 256, 2 + 2 + QK_K / 16 + QK_K / 4;
    Q3_K = 11, "Q3_K", 256, 2 + QK_K / 4 + QK_K / 8 + 12;
    Q4_K = 12, "Q4_K", 256, 2 + 2 + QK_K / 2 + 12;
    Q5_K = 13, "Q5_K", 256, 2 + 2 + QK_K / 2 + QK_K / 8 + 12;
    Q6_K = 14, "Q6_K", 256, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16;
    Q8_K = 15, "Q8_K", 256, 4 + QK_K + QK_K / 8;
    IQ2_XXS = 16, "IQ2_XXS", 256, 2 + QK_K / 4;
    IQ2_XS = 17, "IQ2_XS", 256, 2 + QK_K / 4 + QK_K / 32;
    IQ3_XXS = 18, "IQ3_XXS", 256, 2 + QK_K / 4 + QK_K / 8;
    IQ1_S = 19, "IQ1_S", 256, 2 + QK_K / 8 + QK_K / 16;
    IQ4_NL = 20, "IQ4_NL", 32, 2 + 16;
    IQ3_S = 21, "IQ3_S", 256, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4;
    IQ2_S = 22, "IQ2_S", 256, 2 + QK_K / 4 + QK_K / 16;
    IQ4_XS = 23, "IQ4_XS", 256, 2 + 2 + QK_K / 2 + QK_K / 64;
    I8 = 24, "I8", 1, 1;
    I16 = 25, "I16", 1, 2;
    I32 = 26, "I32", 1, 4;
    I64 = 27, "I64", 1, 8;
    F64 = 28, "F64", 1, 8;
    IQ1_M = 29, "IQ1_M", 256, QK_K / 8 + QK_K / 16 + QK_K / 32;
    BF16 = 30, "BF16", 1, 2;
    TQ1_0 = 34, "TQ1_0", 256, 2 + 4 * 13;
    TQ2_0 = 35, "TQ2_0", 256, 2 + 64;
    MXFP4 = 39, "MXFP4", 32, 1 + 16;
    NVFP4 = 40, "NVFP4", 64, 4 + 32;
    Q1_0 = 41, "Q1_0", 128, 2 + 16;
}

impl GgmlType {
    /// The types [`super::quant::dequantize`] turns into f32: what llama.cpp model files use
    /// for the models sinkscope analyzes (see issue 5).
    pub const SUPPORTED: [GgmlType; 11] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
    ];

    /// Whether sinkscope can dequantize this type.
    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// Bytes taken by `n_elements` values, or `None` if they do not fill whole blocks
    /// (or the count overflows).
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(self.type_size() as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_rejected() {
        for id in 0..64 {
            if let Some(t) = GgmlType::from_id(id) {
                assert_eq!(t.id(), id);
            }
        }
        // 4 and 5 were Q4_2/Q4_3, removed from ggml; 31-33 and 36-38 were repacked variants.
        for gone in [4, 5, 31, 32, 33, 36, 37, 38, 42, 99] {
            assert_eq!(GgmlType::from_id(gone), None, "id {gone}");
        }
    }

    #[test]
    fn block_sizes_match_ggml_common_h() {
        // sizeof(block_*) from ggml-common.h's static_asserts.
        let expected = [
            (GgmlType::Q4_0, 32, 18),
            (GgmlType::Q4_1, 32, 20),
            (GgmlType::Q5_0, 32, 22),
            (GgmlType::Q5_1, 32, 24),
            (GgmlType::Q8_0, 32, 34),
            (GgmlType::Q4_K, 256, 144),
            (GgmlType::Q5_K, 256, 176),
            (GgmlType::Q6_K, 256, 210),
            (GgmlType::Q2_K, 256, 84),
        ];
        for (t, block, bytes) in expected {
            assert_eq!((t.block_size(), t.type_size()), (block, bytes), "{t}");
        }
        assert_eq!(GgmlType::Q4_K.bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q4_K.bytes_for(100), None);
    }
}

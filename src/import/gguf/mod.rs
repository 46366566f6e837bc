//! Reading llama.cpp's GGUF model files: header and metadata (versions 2 and 3), tensor
//! infos, tensor data memory-mapped and dequantized to f32 (F32, F16, BF16, Q8_0, Q4_0,
//! Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), and the Llama q/k un-permutation that turns
//! llama.cpp's rotary layout back into Hugging Face's.
//!
//! Every failure is a [`GgufError`] naming the file and the problem; nothing here panics on
//! a corrupt file. Mapping GGUF names and metadata onto sinkscope's model is the family
//! tables' job, not this module's.

mod error;
mod ggml_type;
mod metadata;
mod permute;
mod quant;
mod reader;
#[cfg(test)]
mod test_support;

pub use error::{GgufError, GgufErrorKind};
pub use ggml_type::{GgmlType, QK_K};
pub use metadata::{FromMetadata, Metadata, MetadataValue};
pub use permute::{unpermute_qk_rows, PermuteError};
pub use quant::dequantize;
pub use reader::{GgufFile, TensorInfo, DEFAULT_ALIGNMENT};

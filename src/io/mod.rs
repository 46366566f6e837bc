//! Reading arrays from disk for the commands: `.npy` files, `.safetensors` files and
//! Hugging Face model folders. Every error names the file and the problem.

pub mod arrays;
pub mod atomic;
pub mod error;
pub mod npy;
pub mod safetensors_stream;
pub mod tensor_file;

pub use arrays::read_attention_file;
pub use error::{Problem, ReadError};
pub use npy::{read_npy, NpyArray};

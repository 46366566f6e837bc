//! The arrays the commands read: attention maps (with optional hidden states) from `.npy`
//! or `.safetensors`, and the 2-D weights of a `.safetensors` file or model folder.

use std::path::Path;

use super::error::{Problem, ReadError};
use super::npy::read_npy;
use super::tensor_file::TensorFiles;
use crate::analysis::{AttentionMaps, HiddenStates};

/// Name of the attention tensor in a `.safetensors` input.
pub const ATTENTIONS: &str = "attentions";
/// Name of the optional residual-stream tensor.
pub const HIDDEN_STATES: &str = "hidden_states";

/// Attention maps `[L, H, T, T]`, `[H, T, T]` (one layer) or `[T, T]` (one head) from a
/// shape and values; the error says what was wrong with the shape.
pub fn attention_from_shape(shape: &[usize], data: Vec<f32>) -> Result<AttentionMaps, Problem> {
    let (l, h, t, t2) = match *shape {
        [l, h, t, t2] => (l, h, t, t2),
        [h, t, t2] => (1, h, t, t2),
        [t, t2] => (1, 1, t, t2),
        _ => {
            return Err(Problem::Shape(format!(
                "attention maps have shape {shape:?}; expected rank 4 [L, H, T, T], 3 [H, T, T] \
                 or 2 [T, T] (one sequence, no batch dimension)"
            )))
        }
    };
    if t != t2 {
        return Err(Problem::Shape(format!(
            "attention maps are not square: the last two dimensions of {shape:?} are {t} × {t2}"
        )));
    }
    Ok(AttentionMaps::new(l, h, t, data)?)
}

fn hidden_from_shape(shape: &[usize], data: Vec<f32>) -> Result<HiddenStates, Problem> {
    match *shape {
        [n, t, d] => Ok(HiddenStates::new(n, t, d, data)?),
        _ => Err(Problem::Shape(format!(
            "hidden states have shape {shape:?}; expected [L + 1, T, d]"
        ))),
    }
}

/// Hidden states describe the same tokens as the maps: one row per position.
fn check_hidden_fits(maps: &AttentionMaps, hidden: &HiddenStates) -> Result<(), Problem> {
    if hidden.seq_len() != maps.seq_len() {
        return Err(Problem::Shape(format!(
            "hidden_states cover {} positions but the attention maps {}",
            hidden.seq_len(),
            maps.seq_len()
        )));
    }
    Ok(())
}

/// Reads attention maps and, from a `.safetensors` file, the optional `hidden_states`.
/// `.npy` files hold the maps alone (float32 or float64). The format is chosen by
/// extension, or by the `.npy` magic string when the extension is neither.
pub fn read_attention_file(
    path: &Path,
) -> Result<(AttentionMaps, Option<HiddenStates>), ReadError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let is_npy = match ext {
        "npy" => true,
        "safetensors" => false,
        _ => {
            let mut magic = [0u8; 6];
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(|e| ReadError::new(path, e))?;
            f.read(&mut magic).map_err(|e| ReadError::new(path, e))? == 6 && &magic == b"\x93NUMPY"
        }
    };
    if is_npy {
        let a = read_npy(path)?;
        let shape = a.shape.clone();
        let maps =
            attention_from_shape(&shape, a.into_f32()).map_err(|p| ReadError::new(path, p))?;
        return Ok((maps, None));
    }
    let files = TensorFiles::open_file(path)?;
    let entry = files.get(ATTENTIONS).ok_or_else(|| {
        let names: Vec<&str> = files.tensors().iter().map(|t| t.name.as_str()).collect();
        ReadError::new(
            path,
            Problem::Shape(format!(
                "no tensor named `{ATTENTIONS}` (the file holds {names:?})"
            )),
        )
    })?;
    let maps = attention_from_shape(&entry.shape, files.read_f32(entry)?)
        .map_err(|p| ReadError::new(path, p))?;
    let hidden = match files.get(HIDDEN_STATES) {
        Some(e) => Some(
            hidden_from_shape(&e.shape, files.read_f32(e)?).map_err(|p| ReadError::new(path, p))?,
        ),
        None => None,
    };
    if let Some(h) = &hidden {
        check_hidden_fits(&maps, h).map_err(|p| ReadError::new(path, p))?;
    }
    Ok((maps, hidden))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::npy::write_npy_f32;
    use crate::io::tensor_file::tests::{f32_bytes, write};
    use safetensors::Dtype;

    #[test]
    fn npy_ranks_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let head = [1.0, 0.0, 0.5, 0.5];
        write_npy_f32(&p, &[2, 2], &head).unwrap();
        let (m, h) = read_attention_file(&p).unwrap();
        assert_eq!((m.layers(), m.heads(), m.seq_len()), (1, 1, 2));
        assert!(h.is_none());
        write_npy_f32(&p, &[3, 2, 2], &head.repeat(3)).unwrap();
        assert_eq!(read_attention_file(&p).unwrap().0.heads(), 3);
        write_npy_f32(&p, &[2, 3, 2, 2], &head.repeat(6)).unwrap();
        assert_eq!(read_attention_file(&p).unwrap().0.layers(), 2);
        // wrong rank, non-square, bad rows: errors name the file and the problem
        write_npy_f32(&p, &[4], &head).unwrap();
        let e = read_attention_file(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy") && e.contains("rank"), "{e}");
        write_npy_f32(&p, &[2, 3], &[0.5; 6]).unwrap();
        let e = read_attention_file(&p).unwrap_err().to_string();
        assert!(e.contains("not square"), "{e}");
        write_npy_f32(&p, &[2, 2], &[0.5, 0.4, 0.5, 0.5]).unwrap();
        let e = read_attention_file(&p).unwrap_err().to_string();
        assert!(e.contains("row 0 sums to"), "{e}");
        write_npy_f32(&p, &[2, 2], &[f32::NAN, 0.4, 0.5, 0.5]).unwrap();
        let e = read_attention_file(&p).unwrap_err().to_string();
        assert!(e.contains("non-finite"), "{e}");
    }

    #[test]
    fn safetensors_with_hidden_states() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.safetensors");
        let head = [1.0f32, 0.0, 0.5, 0.5];
        write(
            &p,
            &[
                (
                    "attentions",
                    Dtype::F32,
                    vec![1, 2, 2, 2],
                    f32_bytes(&head.repeat(2)),
                ),
                (
                    "hidden_states",
                    Dtype::F32,
                    vec![2, 2, 3],
                    f32_bytes(&[0.5; 12]),
                ),
            ],
        );
        let (m, h) = read_attention_file(&p).unwrap();
        assert_eq!(m.heads(), 2);
        assert_eq!(h.unwrap().len(), 2);
        write(&p, &[("attn", Dtype::F32, vec![2, 2], f32_bytes(&head))]);
        let e = read_attention_file(&p).unwrap_err().to_string();
        assert!(e.contains("attentions") && e.contains("attn"), "{e}");
    }
}

//! A reader for NumPy `.npy` files of float32 or float64, C order, format versions 1–3.
//!
//! Written here rather than pulled in because the format is small and the errors matter:
//! a truncated file, a Fortran-ordered array or an integer dtype must each say so, with
//! the file name, instead of producing garbage or a panic.
//! Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.

use std::path::Path;

use super::error::{Problem, ReadError};

/// The values of an `.npy` array, in its stored precision.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// float32 (`<f4`/`>f4`).
    F32(Vec<f32>),
    /// float64 (`<f8`/`>f8`).
    F64(Vec<f64>),
}

/// A parsed `.npy` array: shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: NpyData,
}

impl NpyArray {
    /// The values as f32 (float64 rounded).
    pub fn into_f32(self) -> Vec<f32> {
        match self.data {
            NpyData::F32(v) => v,
            NpyData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        }
    }

    /// The values as f64 (float32 widened exactly).
    pub fn into_f64(self) -> Vec<f64> {
        match self.data {
            NpyData::F32(v) => v.into_iter().map(f64::from).collect(),
            NpyData::F64(v) => v,
        }
    }
}

/// One token of the header's Python literal.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Str(String),
    Int(usize),
    Ident(String),
    Punct(char),
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '\'' | '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(ch) => text.push(ch),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Token::Str(text));
            }
            '0'..='9' => {
                let mut n: usize = 0;
                while let Some(d) = chars.peek().and_then(|ch| ch.to_digit(10)) {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(d as usize))
                        .ok_or("shape value too large")?;
                    chars.next();
                }
                // Python 2 long suffix
                if chars.peek() == Some(&'L') {
                    chars.next();
                }
                out.push(Token::Int(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut id = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_ascii_alphanumeric() || ch == '_' {
                        id.push(ch);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Ident(id));
            }
            '{' | '}' | '(' | ')' | ':' | ',' => {
                out.push(Token::Punct(c));
                chars.next();
            }
            other => return Err(format!("unexpected character `{other}`")),
        }
    }
    Ok(out)
}

/// The three header fields.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the header dict with Python's literal grammar, as `numpy.lib.format`
/// (`ast.literal_eval`) does: entries separated by single commas (one trailing comma
/// allowed), a shape that is a real tuple (`(7,)`, not `(7)`), and nothing but
/// whitespace after the closing brace. What numpy rejects is refused here too.
fn parse_header(text: &str) -> Result<Header, String> {
    let tokens = tokenize(text)?;
    let mut it = tokens.into_iter();
    if it.next() != Some(Token::Punct('{')) {
        return Err("header is not a dict".into());
    }
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        let key = match it.next() {
            Some(Token::Punct('}')) => break,
            Some(Token::Str(key)) => key,
            _ => return Err("malformed dict".into()),
        };
        if it.next() != Some(Token::Punct(':')) {
            return Err(format!("expected `:` after '{key}'"));
        }
        match key.as_str() {
            "descr" => match it.next() {
                Some(Token::Str(d)) => descr = Some(d),
                _ => return Err(
                    "'descr' is not a simple dtype string (structured arrays are not supported)"
                        .into(),
                ),
            },
            "fortran_order" => match it.next() {
                Some(Token::Ident(b)) if b == "True" => fortran = Some(true),
                Some(Token::Ident(b)) if b == "False" => fortran = Some(false),
                _ => return Err("'fortran_order' is not True or False".into()),
            },
            "shape" => shape = Some(parse_shape(&mut it)?),
            other => return Err(format!("unknown key '{other}'")),
        }
        match it.next() {
            Some(Token::Punct(',')) => {}
            Some(Token::Punct('}')) => break,
            _ => return Err(format!("expected `,` or `}}` after the value of '{key}'")),
        }
    }
    if it.next().is_some() {
        return Err("text after the header dict".into());
    }
    Ok(Header {
        descr: descr.ok_or("missing 'descr'")?,
        fortran_order: fortran.ok_or("missing 'fortran_order'")?,
        shape: shape.ok_or("missing 'shape'")?,
    })
}

/// A Python tuple of integers: `()`, `(n,)`, `(n, m)`, `(n, m,)`.
fn parse_shape(it: &mut impl Iterator<Item = Token>) -> Result<Vec<usize>, String> {
    const NOT_TUPLE: &str = "'shape' is not a tuple of integers";
    if it.next() != Some(Token::Punct('(')) {
        return Err(NOT_TUPLE.into());
    }
    let mut dims = Vec::new();
    let mut comma = false;
    loop {
        match it.next() {
            Some(Token::Punct(')')) if dims.is_empty() || comma || dims.len() > 1 => {
                return Ok(dims)
            }
            Some(Token::Int(n)) if dims.is_empty() || comma => {
                dims.push(n);
                comma = false;
            }
            Some(Token::Punct(',')) if !dims.is_empty() && !comma => comma = true,
            _ => return Err(NOT_TUPLE.into()),
        }
    }
}

/// Parses the bytes of an `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, Problem> {
    let bad = |m: &str| Problem::NpyHeader(m.to_string());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file (magic string \\x93NUMPY missing)"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len_bytes, start) = match major {
        1 => (2, 10),
        2 | 3 => (4, 12),
        _ => {
            return Err(bad(&format!(
                "format version {major}.{minor} is not supported (1–3)"
            )))
        }
    };
    if bytes.len() < start {
        return Err(bad("file ends inside the header"));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let header_end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad(&format!("file ends inside the {header_len}-byte header")))?;
    let text: String = if major == 3 {
        std::str::from_utf8(&bytes[start..header_end])
            .map_err(|_| bad("header is not UTF-8"))?
            .to_string()
    } else {
        // versions 1 and 2 are latin-1
        bytes[start..header_end]
            .iter()
            .map(|&b| char::from(b))
            .collect()
    };
    let header = parse_header(&text).map_err(|e| bad(&e))?;
    if header.fortran_order {
        return Err(bad(
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let (little, size) = match header.descr.as_str() {
        "<f4" | "=f4" => (true, 4),
        ">f4" => (false, 4),
        "<f8" | "=f8" => (true, 8),
        ">f8" => (false, 8),
        other => {
            return Err(Problem::Dtype {
                what: "array".into(),
                dtype: other.to_string(),
                expected: "float32 or float64",
            })
        }
    };
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("shape overflows"))?;
    let expected = count
        .checked_mul(size)
        .ok_or_else(|| bad("shape overflows"))?;
    let data = &bytes[header_end..];
    if data.len() < expected {
        return Err(Problem::Truncated {
            expected,
            found: data.len(),
        });
    }
    if data.len() > expected {
        return Err(bad(&format!(
            "{} bytes follow the {expected} bytes of data the header announces",
            data.len() - expected
        )));
    }
    let values = if size == 4 {
        NpyData::F32(
            data.chunks_exact(4)
                .map(|c| {
                    let b = [c[0], c[1], c[2], c[3]];
                    if little {
                        f32::from_le_bytes(b)
                    } else {
                        f32::from_be_bytes(b)
                    }
                })
                .collect(),
        )
    } else {
        NpyData::F64(
            data.chunks_exact(8)
                .map(|c| {
                    let b: [u8; 8] = c.try_into().expect("chunk of 8");
                    if little {
                        f64::from_le_bytes(b)
                    } else {
                        f64::from_be_bytes(b)
                    }
                })
                .collect(),
        )
    };
    Ok(NpyArray {
        shape: header.shape,
        data: values,
    })
}

/// Reads an `.npy` file; errors name the file.
pub fn read_npy(path: &Path) -> Result<NpyArray, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| ReadError::new(path, e))?;
    parse_npy(&bytes).map_err(|p| ReadError::new(path, p))
}

/// Writes a little-endian float32 `.npy` (version 1), for tests and for commands that save
/// arrays.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), ReadError> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // pad so that the data starts on a 64-byte boundary, newline-terminated
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).map_err(|e| ReadError::new(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut b = b"\x93NUMPY".to_vec();
        b.push(version);
        b.push(0);
        if version == 1 {
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_all_versions_and_dtypes() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
        let d = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        for v in 1..=3 {
            let a = parse_npy(&npy(v, h, &d)).unwrap();
            assert_eq!(a.shape, vec![2, 3]);
            assert_eq!(a.data, NpyData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        }
        let h = "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }";
        let d: Vec<u8> = [1.5f64, -2.0]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        assert_eq!(
            parse_npy(&npy(1, h, &d)).unwrap().into_f64(),
            vec![1.5, -2.0]
        );
        // a scalar has shape () and one value
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (), }";
        let a = parse_npy(&npy(1, h, &2.5f64.to_le_bytes())).unwrap();
        assert!(a.shape.is_empty());
        assert_eq!(a.into_f32(), vec![2.5]);
    }

    #[test]
    fn clear_errors() {
        let d = f32_bytes(&[1.0; 6]);
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        let err = parse_npy(&npy(1, h, &d[..20])).unwrap_err();
        assert!(
            matches!(
                err,
                Problem::Truncated {
                    expected: 24,
                    found: 20
                }
            ),
            "{err}"
        );
        let h = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
        assert!(parse_npy(&npy(1, h, &d))
            .unwrap_err()
            .to_string()
            .contains("Fortran"));
        let h = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }";
        let err = parse_npy(&npy(1, h, &[0u8; 24])).unwrap_err().to_string();
        assert!(
            err.contains("<i8") && err.contains("float32 or float64"),
            "{err}"
        );
        assert!(parse_npy(b"PK\x03\x04 not numpy")
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let h = "{'descr': '<f4', 'shape': (2, 3), }";
        assert!(parse_npy(&npy(1, h, &d))
            .unwrap_err()
            .to_string()
            .contains("fortran_order"));
        let mut b = npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &d,
        );
        b.truncate(30);
        assert!(parse_npy(&b)
            .unwrap_err()
            .to_string()
            .contains("inside the"));
        assert!(parse_npy(&npy(4, "{}", &[]))
            .unwrap_err()
            .to_string()
            .contains("version 4"));
    }

    #[test]
    fn headers_numpy_rejects_are_refused() {
        let d = f32_bytes(&[0.0; 6]);
        for shape in ["(2 3)", "(2, 3,,,)", "(6)", "(,)", "(2,, 3)"] {
            let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
            let err = parse_npy(&npy(1, &h, &d)).unwrap_err().to_string();
            assert!(err.contains("shape"), "{shape}: {err}");
        }
        for h in [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } junk",
            "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3), }",
            "{'descr': '<f4', , 'fortran_order': False, 'shape': (2, 3)}",
        ] {
            assert!(parse_npy(&npy(1, h, &d)).is_err(), "{h}");
        }
        // What numpy accepts still reads.
        for shape in ["(2, 3)", "(2, 3,)", "(6,)"] {
            let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}}}");
            assert!(parse_npy(&npy(1, &h, &d)).is_ok(), "{shape}");
        }
    }

    #[test]
    fn write_then_read_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy_f32(&p, &[2, 2], &[1.0, 0.0, 0.5, 0.5]).unwrap();
        let a = read_npy(&p).unwrap();
        assert_eq!(a.shape, vec![2, 2]);
        let err = read_npy(&dir.path().join("missing.npy"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.npy"), "{err}");
    }
}

//! NumPy `.npy` activations: f32, C order (docs/files.md).
//!
//! The format is small enough to read by hand, and reading it by hand bounds the work a hostile
//! file can cause: the header is at most [`MAX_HEADER`] bytes and is parsed in one pass (a
//! Python dict literal with exactly the keys `descr`, `fortran_order` and `shape`, no nesting
//! beyond the shape's tuple), the shape's product is checked, and no more data is read than the
//! header declares (a file with more or less data than that is an error).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The longest header accepted, in bytes. NumPy writes about 128 for any shape.
pub const MAX_HEADER: usize = 1 << 16;

const MAGIC: &[u8] = b"\x93NUMPY";

/// What can be wrong with an `.npy` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("cannot access {}: {source}", quoted(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid `.npy`.
    #[error("{} is not a valid .npy file: {message}", quoted(path))]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, on one line.
        message: String,
    },
    /// The array is not little-endian f32.
    #[error("{} holds {dtype} values, expected float32 ('<f4')", quoted(path))]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The dtype found.
        dtype: String,
    },
    /// The array is in Fortran order.
    #[error("{} is in Fortran order, expected C order", quoted(path))]
    Order {
        /// The file.
        path: PathBuf,
    },
    /// The array holds a NaN or an infinity.
    #[error("{} holds a non-finite value ({value}) at element {index}", quoted(path))]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The position of the first such element.
        index: usize,
        /// The value found there.
        value: f32,
    },
}

/// A path as it prints in an error: as is, unless it holds a character that would break the
/// line (then quoted and escaped).
fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    if text.chars().any(char::is_control) {
        format!("{text:?}")
    } else {
        text
    }
}

/// An f32 array read from a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The values, C order.
    pub data: Vec<f32>,
}

/// What a header declares.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Read a C-order float32 `.npy` file whose values are all finite.
pub fn read(path: &Path) -> Result<Array, NpyError> {
    let io = |source| NpyError::Io { path: path.into(), source };
    let format = |message: String| NpyError::Format { path: path.into(), message };
    let mut file = File::open(path).map_err(io)?;
    let mut preamble = [0u8; 8];
    read_fully(&mut file, &mut preamble).map_err(io)?.then_some(()).ok_or_else(|| format("too short".into()))?;
    if &preamble[..6] != MAGIC {
        return Err(format("it does not start with the .npy magic string".into()));
    }
    let length_bytes = match preamble[6] {
        1 => 2,
        2 | 3 => 4,
        v => return Err(format(format!("unknown format version {v}"))),
    };
    let mut length = [0u8; 4];
    read_fully(&mut file, &mut length[..length_bytes])
        .map_err(io)?
        .then_some(())
        .ok_or_else(|| format("too short".into()))?;
    let header_len = u32::from_le_bytes(length) as usize;
    if header_len > MAX_HEADER {
        return Err(format(format!("a header of {header_len} bytes, more than the {MAX_HEADER} allowed")));
    }
    let mut text = vec![0u8; header_len];
    read_fully(&mut file, &mut text).map_err(io)?.then_some(()).ok_or_else(|| format("truncated header".into()))?;
    let text = std::str::from_utf8(&text).map_err(|_| format("the header is not text".into()))?;
    let header = parse_header(text).map_err(format)?;
    if header.descr != "<f4" {
        return Err(NpyError::Dtype { path: path.into(), dtype: format!("'{}'", header.descr) });
    }
    if header.fortran_order && header.shape.len() > 1 {
        return Err(NpyError::Order { path: path.into() });
    }
    let count = header.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let bytes = count.and_then(|n| n.checked_mul(4)).filter(|&b| b <= isize::MAX as usize);
    let Some(bytes) = bytes else {
        return Err(format(format!("shape {:?} has more elements than any file can hold", header.shape)));
    };
    // No more than the header declares: the vector grows with what the file really holds.
    let mut data = Vec::new();
    data.try_reserve_exact(bytes.min(1 << 26)).map_err(|_| format("out of memory".into()))?;
    (&mut file).take(bytes as u64).read_to_end(&mut data).map_err(io)?;
    if data.len() < bytes {
        return Err(format(format!(
            "shape {:?} needs {bytes} bytes of data, the file holds {}",
            header.shape,
            data.len()
        )));
    }
    if file.read(&mut [0u8; 1]).map_err(io)? > 0 {
        return Err(format(format!("more data than shape {:?} holds", header.shape)));
    }
    let data: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some(index) = data.iter().position(|v| !v.is_finite()) {
        return Err(NpyError::NonFinite { path: path.into(), index, value: data[index] });
    }
    Ok(Array { shape: header.shape, data })
}

/// Fill `buf` from `r`; false if the input ends first.
fn read_fully(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Parse the header's dict literal, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape':
/// (2, 30), }`, in one pass over its characters.
fn parse_header(text: &str) -> Result<Header, String> {
    let mut p = Parser { s: text.as_bytes(), at: 0 };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        let duplicate = match key.as_str() {
            "descr" => descr.replace(p.string()?).is_some(),
            "fortran_order" => fortran_order.replace(p.boolean()?).is_some(),
            "shape" => shape.replace(p.tuple()?).is_some(),
            other => return Err(format!("unexpected key '{}' in the header", other.escape_debug())),
        };
        if duplicate {
            return Err(format!("key '{key}' twice in the header"));
        }
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_space();
    if p.at != p.s.len() {
        return Err(format!("unexpected text after the header's dict at byte {}", p.at));
    }
    let missing = |key: &str| format!("the header has no '{key}'");
    Ok(Header {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

/// A cursor over the header.
struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    /// Skip spaces, then take `c` if it comes next.
    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        let next = self.s.get(self.at) == Some(&c);
        self.at += usize::from(next);
        next
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            return Ok(());
        }
        let found = self.s.get(self.at).map_or_else(|| "the end".to_string(), |&b| format!("'{}'", b.escape_ascii()));
        Err(format!("expected '{}' at byte {} of the header, found {found}", c as char, self.at))
    }

    /// A Python string literal in single or double quotes, without escapes.
    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let quote = match self.s.get(self.at) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {} of the header", self.at)),
        };
        let start = self.at + 1;
        let len =
            self.s[start..].iter().position(|&b| b == quote || b == b'\\').filter(|&k| self.s[start + k] == quote);
        let Some(len) = len else { return Err(format!("unterminated or escaped string at byte {}", self.at)) };
        self.at = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, String> {
        self.skip_space();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.at..].starts_with(word) {
                self.at += word.len();
                return Ok(value);
            }
        }
        Err(format!("expected True or False at byte {} of the header", self.at))
    }

    /// A tuple of non-negative integers: `()`, `(5,)`, `(2, 30)`.
    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.at;
            while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
                self.at += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
            if digits.is_empty() {
                return Err(format!("expected a dimension at byte {start} of the header"));
            }
            let dim = digits.parse::<usize>().map_err(|_| format!("dimension {digits} does not fit a usize"))?;
            dims.push(dim);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

/// Write a C-order float32 `.npy` file: complete, or not at all (an old file of that name stays
/// as it was).
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic, version, length, header and its newline: a multiple of 64 bytes.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let length = u16::try_from(header.len()).map_err(|_| NpyError::Format {
        path: path.into(),
        message: format!("shape {shape:?} needs a header longer than version 1 allows"),
    })?;
    kcp_runtime::write_atomically(path, |out| {
        out.write_all(MAGIC)?;
        out.write_all(&[1, 0])?;
        out.write_all(&length.to_le_bytes())?;
        out.write_all(header.as_bytes())?;
        for chunk in data.chunks(4096) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            out.write_all(&bytes)?;
        }
        Ok(())
    })
    .map_err(|source| NpyError::Io { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_numpy_writes_parse() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 30), }                \n").unwrap();
        assert_eq!(h, Header { descr: "<f4".into(), fortran_order: false, shape: vec![2, 30] });
        assert_eq!(parse_header("{'shape': (5,), 'fortran_order': True, 'descr': '>f8'}").unwrap().shape, [5]);
        assert_eq!(
            parse_header("{'descr':'<f4','fortran_order':False,'shape':()}").unwrap().shape,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn bad_headers_give_one_line() {
        for (text, expected) in [
            ("", "expected '{'"),
            ("{'descr': '<f4', 'fortran_order': False}", "no 'shape'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': ((2,), 3)}", "expected a dimension"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", "unexpected key 'x'"),
            ("{'descr': '<f4', 'descr': '<f4'}", "key 'descr' twice"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}", "does not fit"),
            ("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}", "expected True or False"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} extra", "unexpected text"),
        ] {
            let error = parse_header(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains('\n'), "{text}: {error}");
        }
    }
}

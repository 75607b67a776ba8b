//! Weight files (docs/files.md): safetensors files of a layer's cores under their names, its
//! bias, and a recurrent layer's cell; reading them whole and checked, writing them complete or
//! not at all. Behind the default feature `files`: a program that gets its weights otherwise
//! builds without safetensors and its JSON parser.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};

use crate::recurrent::Recurrent;
use crate::weights::check_values;
use crate::{CellKind, CoreShape, Error, Executor, NamedTensor, Program, RecurrentExecutor, Weights};

impl Weights {
    /// Read the cores (and the bias, if `bias_len` is given) from a safetensors file, every
    /// name prefixed with `prefix` (`""` for a plain layer), and check them (see
    /// [`Weights::from_file`]).
    pub fn load(path: &Path, prefix: &str, cores: &[CoreShape], bias_len: Option<usize>) -> Result<Weights, Error> {
        Weights::from_file(&TensorFile::read(path)?, prefix, cores, bias_len)
    }

    /// The cores from a file already read (a core stacked from several tensors, as a block
    /// term's, is read from each). A plain layer's file (`prefix` empty) must hold nothing
    /// else; any file, no tensor of the layer's kinds (`factor.`, `core.`, ...) that the layer
    /// does not have.
    pub fn from_file(
        file: &TensorFile,
        prefix: &str,
        cores: &[CoreShape],
        bias_len: Option<usize>,
    ) -> Result<Weights, Error> {
        let names: Vec<String> = cores.iter().flat_map(|c| &c.tensors).map(|t| format!("{prefix}{t}")).collect();
        let layer = format!("it has {}{}", names.join(", "), if bias_len.is_some() { " and a bias" } else { "" });
        if prefix.is_empty() {
            let mut expected = names.clone();
            expected.extend(bias_len.map(|_| "bias".to_string()));
            file.expect_only(&expected, &layer)?;
        } else {
            // A tensor of the same kind as the layer's (up to the last dot) that it lacks.
            let kind = |name: &str| name.rsplit_once('.').map_or(name.to_string(), |(k, _)| k.to_string());
            let kinds: Vec<String> = names.iter().map(|n| kind(n)).collect();
            if let Some(extra) = file.names().into_iter().find(|n| kinds.contains(&kind(n)) && !names.contains(n)) {
                return Err(Error::UnexpectedTensor { name: extra, why: layer });
            }
        }
        let values = cores
            .iter()
            .map(|core| {
                let mut data = Vec::with_capacity(core.len());
                for tensor in &core.tensors {
                    data.extend(file.tensor(&format!("{prefix}{tensor}"), core.tensor_shape())?);
                }
                Ok(data)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let bias = bias_len.map(|m| file.tensor(&format!("{prefix}bias"), &[m])).transpose()?;
        let weights = Weights { cores: values, bias };
        weights.check(cores, bias_len)?;
        Ok(weights)
    }
}

impl Recurrent {
    /// Read `{prefix}weight_hh` and `{prefix}bias_hh` from a weight file.
    pub fn load(file: &TensorFile, prefix: &str, kind: CellKind, hidden: usize) -> Result<Recurrent, Error> {
        let g = kind.gates() * hidden;
        let weight_hh = file.tensor(&format!("{prefix}weight_hh"), &[g, hidden])?;
        let bias_hh = file.tensor(&format!("{prefix}bias_hh"), &[g])?;
        Recurrent::new(kind, hidden, weight_hh, bias_hh)
    }
}

impl RecurrentExecutor {
    /// Load a layer saved with the names of docs/files.md: `weight_ih.factor.{d}`, `weight_hh`,
    /// `bias_ih`, `bias_hh`.
    pub fn load(
        path: &std::path::Path,
        program: Program,
        kind: CellKind,
        hidden: usize,
    ) -> Result<RecurrentExecutor, Error> {
        let (weights, cell) = load_recurrent(path, &program.cores, kind, hidden)?;
        RecurrentExecutor::new(Executor::new(program, weights)?, cell)
    }
}

/// Read a recurrent layer's weights with the names of docs/files.md: its input weight's cores
/// prefixed `weight_ih.` (a KCP layer's `weight_ih.factor.{d}`), `bias_ih`, `weight_hh` and
/// `bias_hh`.
pub fn load_recurrent(
    path: &std::path::Path,
    cores: &[crate::CoreShape],
    kind: CellKind,
    hidden: usize,
) -> Result<(crate::Weights, Recurrent), Error> {
    let gates = kind.gates() * hidden;
    let file = TensorFile::read(path)?;
    let weights = crate::Weights::from_file(&file, "weight_ih.", cores, None)?;
    let mut expected: Vec<String> = cores.iter().flat_map(|c| &c.tensors).map(|t| format!("weight_ih.{t}")).collect();
    expected.extend(["bias_ih", "weight_hh", "bias_hh"].map(String::from));
    file.expect_only(
        &expected,
        "a recurrent layer has its input weight's cores (weight_ih.*), bias_ih, weight_hh and bias_hh",
    )?;
    let bias = file.tensor("bias_ih", &[gates])?;
    let cell = Recurrent::load(&file, "", kind, hidden)?;
    Ok((crate::Weights { cores: weights.cores, bias: Some(bias) }, cell))
}

/// The longest safetensors header kcp reads: 16 MiB, room for some 100,000 tensors (a layer has
/// a dozen; a PyTorch model for `kcp compress`, its layers').
pub const MAX_HEADER: u64 = 16 << 20;

/// A safetensors file read into memory, its header parsed once.
pub struct TensorFile {
    bytes: Vec<u8>,
    /// Where the data starts.
    data: usize,
    metadata: Metadata,
}

impl TensorFile {
    /// Read and validate a safetensors file, reading no more than its header declares: the
    /// header first (at most `MAX_HEADER`, 16 MiB), then exactly the data it describes (a file
    /// with more or less is an error).
    pub fn read(path: &Path) -> Result<TensorFile, Error> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let invalid = |message: String| Error::SafeTensors { path: path.to_path_buf(), message };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        (&mut file).take(8).read_to_end(&mut bytes).map_err(io)?;
        let Ok(length) = <[u8; 8]>::try_from(&bytes[..]) else {
            return Err(invalid(format!("{} bytes, shorter than the 8-byte header length", bytes.len())));
        };
        let header_len = u64::from_le_bytes(length);
        if header_len > MAX_HEADER {
            return Err(invalid(format!("a header of {header_len} bytes, more than the {MAX_HEADER} kcp reads")));
        }
        (&mut file).take(header_len).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 != 8 + header_len {
            return Err(invalid(format!("the file ends inside its {header_len}-byte header")));
        }
        let data_len = declared_data(&bytes[8..]).map_err(invalid)?;
        (&mut file).take(data_len).read_to_end(&mut bytes).map_err(io)?;
        let more = file.read(&mut [0u8; 1]).map_err(io)? > 0;
        if bytes.len() as u64 != 8 + header_len + data_len || more {
            let what = if more { "more" } else { "less" };
            return Err(invalid(format!("{what} data than the {data_len} bytes its header describes")));
        }
        let (n, metadata) =
            SafeTensors::read_metadata(&bytes).map_err(|e| invalid(collapse_whitespace(&e.to_string())))?;
        Ok(TensorFile { data: 8 + n, bytes, metadata })
    }

    /// Whether the file holds a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.metadata.info(name).is_some()
    }

    /// The names of its tensors, in the order of their data.
    pub fn names(&self) -> Vec<String> {
        self.metadata.offset_keys()
    }

    /// An error for the first tensor (in the order of the data) whose name is not in
    /// `expected`: a file must hold exactly the tensors of its layer.
    pub fn expect_only(&self, expected: &[String], layer: &str) -> Result<(), Error> {
        match self.names().into_iter().find(|name| !expected.contains(name)) {
            Some(name) => Err(Error::UnexpectedTensor { name, why: layer.into() }),
            None => Ok(()),
        }
    }

    /// The f32 tensor `name`, which must have exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, Error> {
        let info = self.metadata.info(name).ok_or_else(|| Error::MissingTensor { name: name.into() })?;
        if info.dtype != Dtype::F32 {
            return Err(Error::Dtype { name: name.into(), found: format!("{:?}", info.dtype) });
        }
        if info.shape != shape {
            return Err(Error::TensorShape { name: name.into(), expected: shape.to_vec(), found: info.shape.clone() });
        }
        let (start, end) = info.data_offsets;
        let data = &self.bytes[self.data + start..self.data + end];
        let values: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        check_values(name, &values, shape)?;
        Ok(values)
    }
}

/// The bytes of data a safetensors header describes: the largest end of its tensors' data
/// offsets (the full validation comes after, by the safetensors crate, on the whole file).
fn declared_data(header: &[u8]) -> Result<u64, String> {
    let entries: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| format!("its header is not a JSON object ({})", collapse_whitespace(&e.to_string())))?;
    let mut end = 0;
    for (name, entry) in entries.iter().filter(|(name, _)| *name != "__metadata__") {
        let offsets = entry.get("data_offsets").and_then(|o| o.as_array()).filter(|o| o.len() == 2);
        let last = offsets.and_then(|o| o[1].as_u64());
        let Some(last) = last else {
            return Err(format!("tensor `{}` has no valid data_offsets", name.escape_debug()));
        };
        end = end.max(last);
    }
    Ok(end)
}

/// A message on one line: its whitespace runs (line breaks included) collapsed to one space.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Write named f32 tensors to a safetensors file: complete, or not at all (an old file of that
/// name stays as it was).
pub fn save(path: &Path, tensors: &[NamedTensor]) -> Result<(), Error> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone(), t.values.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.clone(), v))
        })
        .collect::<Result<HashMap<_, _>, _>>()
        .map_err(|e| Error::SafeTensors { path: path.to_path_buf(), message: e.to_string() })?;
    let data = safetensors::serialize(views, None)
        .map_err(|e| Error::SafeTensors { path: path.to_path_buf(), message: e.to_string() })?;
    crate::write_atomically(path, |out| std::io::Write::write_all(out, &data))
        .map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

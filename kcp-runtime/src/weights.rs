//! Weights of a layer of any format and their safetensors files (docs/files.md): the
//! format's cores under their names (a KCP layer's `factor.0` .. `factor.{D-1}`, each
//! `[R, m_d, n_d]`), f32, and optionally `bias` `[M]`.

use std::collections::HashMap;
use std::path::Path;

use std::io::Read;

use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};

use crate::{CoreShape, Error, Rng};

/// A named f32 tensor: name, shape, values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The cores and bias of one layer of any format, f32, row-major: core k in the layer's
/// `CORE_NAMES` order, each of its [`CoreShape`].
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    /// The cores (a KCP layer's factor stacks `[R, m_d, n_d]`).
    pub cores: Vec<Vec<f32>>,
    /// b, `[M]`, if the layer has one.
    pub bias: Option<Vec<f32>>,
}

impl Weights {
    /// Every weight zero.
    pub fn zeros(cores: &[CoreShape], bias_len: Option<usize>) -> Weights {
        Weights { cores: cores.iter().map(|c| vec![0.0; c.len()]).collect(), bias: bias_len.map(|m| vec![0.0; m]) }
    }

    /// Seeded weights: core k uniform in `±scales[k]` (the network's `init_scales`, which make
    /// the dense weight's entries of variance 1/N; a scale missing reads as 1), drawn core by
    /// core; the bias uniform in ±1/sqrt(N) for N = `input`.
    pub fn random(cores: &[CoreShape], scales: &[f64], input: usize, bias_len: Option<usize>, seed: u64) -> Weights {
        let mut rng = Rng::new(seed);
        let scale = |k: usize| scales.get(k).copied().unwrap_or(1.0);
        let cores = cores.iter().enumerate().map(|(k, c)| rng.vec_f32(c.len(), scale(k))).collect();
        let bias = bias_len.map(|m| rng.vec_f32(m, 1.0 / (input as f64).sqrt()));
        Weights { cores, bias }
    }

    /// The dense weight of a KCP layer's weights, `W = sum_r A1[r] (x) ... (x) AD[r]`, `[M, N]`
    /// row-major, built one Kronecker product at a time (R * M * N multiply-adds for the last
    /// product of each term).
    pub fn dense(&self, factor_shapes: &[[usize; 3]]) -> Vec<f32> {
        let m: usize = factor_shapes.iter().map(|s| s[1]).product();
        let n: usize = factor_shapes.iter().map(|s| s[2]).product();
        let rank = factor_shapes.first().map_or(0, |s| s[0]);
        let mut w = vec![0.0f32; m * n];
        for r in 0..rank {
            let (mut term, mut rows, mut cols) = (vec![1.0f32], 1, 1);
            for (factor, &[_, fm, fnn]) in self.cores.iter().zip(factor_shapes) {
                let block = &factor[r * fm * fnn..(r + 1) * fm * fnn];
                let mut next = vec![0.0f32; rows * fm * cols * fnn];
                for i in 0..rows {
                    for k in 0..fm {
                        let row = &mut next[(i * fm + k) * cols * fnn..][..cols * fnn];
                        for j in 0..cols {
                            let t = term[i * cols + j];
                            for (out, &b) in row[j * fnn..][..fnn].iter_mut().zip(&block[k * fnn..][..fnn]) {
                                *out = t * b;
                            }
                        }
                    }
                }
                (term, rows, cols) = (next, rows * fm, cols * fnn);
            }
            w.iter_mut().zip(&term).for_each(|(w, t)| *w += t);
        }
        w
    }

    /// Check every core against its shape and the bias against `bias_len` (`None`: no bias
    /// allowed), and that every value is finite.
    pub fn check(&self, cores: &[CoreShape], bias_len: Option<usize>) -> Result<(), Error> {
        if self.cores.len() != cores.len() {
            return Err(match cores.get(self.cores.len()) {
                Some(core) => Error::MissingTensor { name: core.name.clone() },
                None => Error::CoreCount {
                    found: self.cores.len(),
                    expected: cores.len(),
                    names: cores.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                },
            });
        }
        for (values, core) in self.cores.iter().zip(cores) {
            check_values(&core.name, values, &core.shape)?;
        }
        match (&self.bias, bias_len) {
            (Some(bias), Some(m)) => check_values("bias", bias, &[m]),
            (None, Some(_)) => Err(Error::MissingTensor { name: "bias".into() }),
            (Some(_), None) => Err(Error::UnexpectedTensor { name: "bias".into(), why: "it has no bias".into() }),
            (None, None) => Ok(()),
        }
    }

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

    /// The named tensors of these weights, ready for [`save`], every name prefixed with
    /// `prefix` (a stacked core as its tensors).
    pub fn tensors(&self, prefix: &str, cores: &[CoreShape]) -> Vec<NamedTensor> {
        let mut out = Vec::new();
        for (data, core) in self.cores.iter().zip(cores) {
            let part = core.tensor_shape().iter().product::<usize>();
            for (tensor, chunk) in core.tensors.iter().zip(data.chunks(part.max(1))) {
                out.push((format!("{prefix}{tensor}"), core.tensor_shape().to_vec(), chunk.to_vec()));
            }
        }
        if let Some(bias) = &self.bias {
            out.push((format!("{prefix}bias"), vec![bias.len()], bias.clone()));
        }
        out
    }
}

/// The cores of a KCP layer: `factor.d`, `[R, m_d, n_d]`.
pub fn kcp_cores(factor_shapes: &[[usize; 3]]) -> Vec<CoreShape> {
    let core = |(d, shape): (usize, &[usize; 3])| {
        let name = format!("factor.{d}");
        CoreShape { tensors: vec![name.clone()], name, shape: shape.to_vec() }
    };
    factor_shapes.iter().enumerate().map(core).collect()
}

pub(crate) fn check_values(name: &str, values: &[f32], shape: &[usize]) -> Result<(), Error> {
    if values.len() != shape.iter().product::<usize>() {
        return Err(Error::TensorShape { name: name.into(), expected: shape.to_vec(), found: vec![values.len()] });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite { name: name.into(), index, value: values[index] }),
        None => Ok(()),
    }
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
        .map(|(name, shape, values)| {
            (name.clone(), shape.clone(), values.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
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

//! NumPy `.npy` activations: f32, C order (docs/files.md).

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;

/// What can be wrong with an `.npy` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid `.npy`.
    #[error("{} is not a valid .npy file: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The array is not little-endian f32.
    #[error("{} holds {dtype} values, expected float32 ('<f4')", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The dtype found.
        dtype: String,
    },
    /// The array is in Fortran order.
    #[error("{} is in Fortran order, expected C order", path.display())]
    Order {
        /// The file.
        path: PathBuf,
    },
    /// The array holds a NaN or an infinity.
    #[error("{} holds a non-finite value ({value}) at element {index}", path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The position of the first such element.
        index: usize,
        /// The value found there.
        value: f32,
    },
}

/// An f32 array read from a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The values, C order.
    pub data: Vec<f32>,
}

/// Read a C-order float32 `.npy` file whose values are all finite.
pub fn read(path: &Path) -> Result<Array, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io { path: path.into(), source })?;
    let format = |e: std::io::Error| NpyError::Format { path: path.into(), message: e.to_string() };
    let file = npyz::NpyFile::new(&bytes[..]).map_err(format)?;
    let descr = file.dtype().descr();
    if descr != "'<f4'" {
        return Err(NpyError::Dtype { path: path.into(), dtype: descr });
    }
    if file.order() != npyz::Order::C && file.shape().len() > 1 {
        return Err(NpyError::Order { path: path.into() });
    }
    let shape = file.shape().iter().map(|&d| d as usize).collect();
    let data: Vec<f32> = file.into_vec().map_err(format)?;
    if let Some(index) = data.iter().position(|v| !v.is_finite()) {
        return Err(NpyError::NonFinite { path: path.into(), index, value: data[index] });
    }
    Ok(Array { shape, data })
}

/// Write a C-order float32 `.npy` file.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let io = |source| NpyError::Io { path: path.into(), source };
    let file = std::fs::File::create(path).map_err(io)?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer =
        npyz::WriteOptions::new().default_dtype().shape(&shape).writer(BufWriter::new(file)).begin_nd().map_err(io)?;
    writer.extend(data.iter().copied()).map_err(io)?;
    writer.finish().map_err(io)
}

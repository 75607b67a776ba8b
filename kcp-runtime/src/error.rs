//! The runtime's errors: [`ShapeError`] for slices of the wrong length (and programs whose
//! kernels do not fit their buffers), [`Error`] for everything that can be wrong with weights
//! and files.

use std::path::PathBuf;

/// A slice handed to a layer has the wrong length.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// x is not a whole number of rows.
    #[error("x has {len} elements, not a multiple of the input size {input}")]
    Input {
        /// The slice's length.
        len: usize,
        /// The input size N.
        input: usize,
    },
    /// y does not hold one output row per input row.
    #[error("y has {len} elements but {rows} rows of output size {output} need {}", *rows as u128 * *output as u128)]
    Output {
        /// The slice's length.
        len: usize,
        /// The rows of x.
        rows: usize,
        /// The output size M.
        output: usize,
    },
    /// A sequence x `[T, B, N]` that is not a whole number of time steps.
    #[error("x has {len} elements, not a whole number of time steps of {batch} rows of input size {input}")]
    Sequence {
        /// The slice's length.
        len: usize,
        /// The batch size B.
        batch: usize,
        /// The input size N.
        input: usize,
    },
    /// A state or other buffer of the wrong length.
    #[error("{name} has {len} elements, expected {expected}")]
    Buffer {
        /// The tensor's (or buffer's) name.
        name: &'static str,
        /// The slice's length.
        len: usize,
        /// What was expected.
        expected: usize,
    },
    /// A backward program run with another layer than the one it was lowered for.
    #[error("the backward program is of another layer: its {what} differ from the layer's")]
    OtherLayer {
        /// What differs: "shapes" (of x and y) or "cores" (their shapes).
        what: &'static str,
    },
    /// A program built outside the compiler whose kernels reach outside their buffers (or name
    /// a buffer its kind of program has none of): `Executor::new` and the training passes check
    /// every program they are handed.
    #[error(transparent)]
    Program(#[from] kcp_core::ProgramError),
}

/// Something wrong with weights or a weight file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A slice of the wrong length.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// The file could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid safetensors.
    #[error("{} is not a valid safetensors file: {message}", path.display())]
    SafeTensors {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A tensor the layer needs is not there.
    #[error("tensor `{name}` is missing")]
    MissingTensor {
        /// The tensor's (or buffer's) name.
        name: String,
    },
    /// More cores than the layer has.
    #[error("{found} cores given, the layer has {expected} ({names})")]
    CoreCount {
        /// How many were given.
        found: usize,
        /// How many the layer has.
        expected: usize,
        /// Their names.
        names: String,
    },
    /// A tensor the layer has no place for (a bias on a layer without one, an extra factor).
    #[error("tensor `{name}` is not part of this layer ({why})")]
    UnexpectedTensor {
        /// The tensor's (or buffer's) name.
        name: String,
        /// Why it has no place.
        why: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor's (or buffer's) name.
        name: String,
        /// What was expected.
        expected: Vec<usize>,
        /// What was found.
        found: Vec<usize>,
    },
    /// A tensor has the wrong element type.
    #[error("tensor `{name}` has dtype {found}, expected F32")]
    Dtype {
        /// The tensor's (or buffer's) name.
        name: String,
        /// What was found.
        found: String,
    },
    /// A weight is NaN or infinite.
    #[error("tensor `{name}` holds a non-finite value ({value}) at element {index}")]
    NonFinite {
        /// The tensor's (or buffer's) name.
        name: String,
        /// The position of the first such element.
        index: usize,
        /// The value found there.
        value: f32,
    },
}

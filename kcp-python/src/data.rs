//! The synthetic UCF11-shaped clips of `kcp::data` ("moving shapes"), for `kcp.data`: clips
//! generated on several threads with the GIL released, as bytes (each pixel `round(255 v)`, the
//! way the Rust training example stores them: a training split is 1 GB so, 4 GB as float32),
//! and turned into model input a batch at a time.

use std::num::NonZeroUsize;

use kcp::data::{Split, CLASSES, CLIP, FRAME, FRAMES, HEIGHT, WIDTH};
use numpy::{PyArray1, PyArray3, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The split of a name.
fn split(name: &str) -> PyResult<Split> {
    match name {
        "train" => Ok(Split::TRAIN),
        "test" => Ok(Split::TEST),
        other => Err(PyValueError::new_err(format!("unknown split {other:?}: expected \"train\" or \"test\""))),
    }
}

/// Clips `start .. start + count` of a split (`"train"`, `"test"`): `(frames, labels)`, frames
/// uint8 `[count, T, 57600]` (each frame `[120, 160, 3]` row-major, pixel `round(255 v)`),
/// labels int64 `[count]`. Generated on `threads` threads (None: every core).
#[pyfunction]
#[pyo3(signature = (name, start, count, threads = None))]
#[allow(clippy::type_complexity)]
fn clips<'py>(
    py: Python<'py>,
    name: &str,
    start: usize,
    count: usize,
    threads: Option<usize>,
) -> PyResult<(Bound<'py, PyArray3<u8>>, Bound<'py, PyArray1<i64>>)> {
    let split = split(name)?;
    if start.checked_add(count).is_none_or(|end| end > split.len) {
        return Err(PyValueError::new_err(format!(
            "clips {start}..{} are not all in the {name} split, which has {}",
            start.saturating_add(count),
            split.len
        )));
    }
    let threads = match threads {
        None => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        Some(0) => return Err(PyValueError::new_err("threads must be at least 1 (None: all of them)")),
        Some(n) => n,
    };
    let mut bytes = vec![0u8; count * CLIP];
    let mut labels = vec![0i64; count];
    py.detach(|| {
        let per = count.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (part, (bytes, labels)) in bytes.chunks_mut(per * CLIP).zip(labels.chunks_mut(per)).enumerate() {
                scope.spawn(move || {
                    for (k, (clip, label)) in bytes.chunks_exact_mut(CLIP).zip(labels.iter_mut()).enumerate() {
                        *label = split.clip_bytes_into(start + part * per + k, clip) as i64;
                    }
                });
            }
        });
    });
    let frames = PyArray1::from_vec(py, bytes).reshape([count, FRAMES, FRAME])?;
    Ok((frames, PyArray1::from_vec(py, labels)))
}

/// Clips as float32 model input: each pixel byte / 255, minus the clip's mean frame (of those
/// values), as the Rust training example feeds its models; `clips` uint8 `[..., T, FRAME]`,
/// C-contiguous. One pass over the bytes, clips spread over `threads` threads.
#[pyfunction]
#[pyo3(signature = (clips, threads = None))]
fn frames<'py>(
    py: Python<'py>,
    clips: PyReadonlyArrayDyn<'py, u8>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let shape = clips.shape().to_vec();
    let [.., frames_per_clip, frame] = shape[..] else {
        return Err(PyValueError::new_err(format!("clips must be [..., frames, pixels], found {shape:?}")));
    };
    let bytes = clips.as_slice().map_err(|_| PyValueError::new_err("clips must be C-contiguous"))?;
    let clip = frames_per_clip * frame;
    let mut values = vec![0.0f32; bytes.len()];
    huge_pages(&mut values);
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get)).max(1);
    if clip > 0 {
        py.detach(|| {
            let count = bytes.len() / clip;
            let per = count.div_ceil(threads).max(1) * clip;
            std::thread::scope(|scope| {
                for (bytes, values) in bytes.chunks(per).zip(values.chunks_mut(per)) {
                    scope.spawn(move || {
                        let mut mean = vec![0.0f32; frame];
                        for (bytes, values) in bytes.chunks_exact(clip).zip(values.chunks_exact_mut(clip)) {
                            mean.fill(0.0);
                            for frame_bytes in bytes.chunks_exact(frame) {
                                mean.iter_mut().zip(frame_bytes).for_each(|(m, &b)| *m += f32::from(b) / 255.0);
                            }
                            mean.iter_mut().for_each(|m| *m /= frames_per_clip as f32);
                            for (frame_bytes, out) in bytes.chunks_exact(frame).zip(values.chunks_exact_mut(frame)) {
                                for ((v, &b), m) in out.iter_mut().zip(frame_bytes).zip(&mean) {
                                    *v = f32::from(b) / 255.0 - m;
                                }
                            }
                        }
                    });
                }
            });
        });
    }
    PyArray1::from_vec(py, values).reshape(shape)
}

/// Ask Linux to back a large fresh buffer with transparent huge pages (where the system leaves
/// that to `madvise`, as many do): a batch of frames is 59 MB, whose first touch otherwise
/// costs some 14,000 page faults, most of the time `frames` takes. Only a hint: the values are
/// the same either way.
fn huge_pages(values: &mut [f32]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (start, len) = (values.as_mut_ptr() as usize, std::mem::size_of_val(values));
        let first = start.next_multiple_of(HUGE);
        let end = (start + len) / HUGE * HUGE;
        if end > first {
            // SAFETY: [first, end) lies inside `values`, which this function borrows mutably;
            // MADV_HUGEPAGE changes how the pages are backed, never their contents.
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = values;
}

/// Add `clips`, `frames` and the data set's constants to the module.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(clips, module)?)?;
    module.add_function(wrap_pyfunction!(frames, module)?)?;
    module.add("DATA_FRAMES", FRAMES)?;
    module.add("DATA_HEIGHT", HEIGHT)?;
    module.add("DATA_WIDTH", WIDTH)?;
    module.add("DATA_FRAME", FRAME)?;
    module.add("DATA_CLASSES", CLASSES)?;
    module.add("DATA_TRAIN_LEN", Split::TRAIN.len)?;
    module.add("DATA_TEST_LEN", Split::TEST.len)?;
    Ok(())
}

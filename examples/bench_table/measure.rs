//! Measuring: medians of repeated calls, the rows of the table, and which layers to measure.

use std::time::{Duration, Instant};

use crate::paired::Comparison;

pub struct Row {
    pub layer: String,
    pub batch: usize,
    pub variant: &'static str,
    /// The kernel path it ran (`avx512`, `avx2`, `portable`), or `faer` (faer's own).
    pub isa: &'static str,
    pub median_ns: f64,
    pub macs: u64,
    /// Bytes a call reads or writes at least: x, y, the weights.
    pub bytes: u64,
}

impl Row {
    /// The threads the row ran on: two for the `generated_par` variants, one for the rest.
    pub fn threads(&self) -> usize {
        if self.variant.starts_with("generated_par") {
            2
        } else {
            1
        }
    }
}

pub struct Bench {
    pub quick: bool,
    /// Measure only the layers whose name contains this.
    pub only: Option<String>,
    pub rows: Vec<Row>,
    pub targets: Vec<Comparison>,
}

impl Bench {
    pub fn median_ns(&self, mut f: impl FnMut()) -> f64 {
        let (min_runs, budget) =
            if self.quick { (3, Duration::from_millis(40)) } else { (11, Duration::from_millis(300)) };
        let warmup = Instant::now();
        f();
        if self.quick && warmup.elapsed() > budget {
            // Slow calls (dense at batch 256) stream from memory either way: the one will do.
            return warmup.elapsed().as_nanos() as f64;
        }
        let start = Instant::now();
        let mut times = Vec::new();
        while times.len() < min_runs || (start.elapsed() < budget && times.len() < 1000) {
            let t = Instant::now();
            f();
            times.push(t.elapsed().as_nanos() as f64);
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    }

    pub fn wants(&self, layer: &str) -> bool {
        self.only.as_deref().is_none_or(|only| layer.contains(only))
    }
}

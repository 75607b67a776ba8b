//! The roofline of a row: its MACs at the measured compute peak against the bytes a call must
//! move at the bandwidth of the cache level (or DRAM) they fit, measured in the same run.

use kcp::Isa;

use crate::measure::{Bench, Row};
use crate::peak::fma_peak_gflops;

/// The size in bytes of this CPU's data cache of `level` (Linux sysfs), if it says.
pub fn cache_bytes(level: u32) -> Option<usize> {
    let read = |index: usize, what: &str| {
        std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index{index}/{what}")).ok()
    };
    (0..8).find_map(|index| {
        let data = read(index, "type")?.trim() != "Instruction";
        if read(index, "level")?.trim() != level.to_string() || !data {
            return None;
        }
        let size = read(index, "size")?;
        let size = size.trim();
        let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len()));
        let scale = match unit {
            "K" => 1 << 10,
            "M" => 1 << 20,
            _ => 1,
        };
        digits.parse::<usize>().ok().map(|n| n * scale)
    })
}

/// What bounds a row from below: its MACs at the compute peak, or its bytes at the bandwidth
/// of the level its working set fits.
pub struct Peaks {
    /// The register-only FMA peak of each kernel path this CPU has, one thread, GFLOP/s.
    pub fma: Vec<(Isa, f64)>,
    /// The memory levels: a working set up to half a cache is read at the bandwidth measured
    /// on a buffer of that size (L2 and L3 from sysfs, else 512 KB and 8 MB), the rest at DRAM's.
    pub levels: [(&'static str, usize); 3],
    /// GB/s per level, on one thread and on two.
    pub gbs: [[f64; 2]; 3],
}

impl Peaks {
    pub fn measure(bench: &Bench) -> Peaks {
        let fma =
            Isa::available().filter_map(|path| Some((path, fma_peak_gflops(path, |f| bench.median_ns(f))?))).collect();
        let (l2, l3) = (cache_bytes(2).unwrap_or(512 << 10), cache_bytes(3).unwrap_or(8 << 20));
        let levels = [("L2", l2 / 2), ("L3", l3 / 2), ("DRAM", 256 << 20)];
        let gbs = levels.map(|(_, size)| [1, 2].map(|threads| read_gbs(bench, size / 4, threads)));
        Peaks { fma, levels, gbs }
    }

    /// The compute peak of a row's path (`faer` and the portable path: the best one measured,
    /// which is what the CPU can do).
    pub fn gflops(&self, isa: &str) -> f64 {
        let best = self.fma.iter().map(|&(_, g)| g).fold(f64::NAN, f64::max);
        self.fma.iter().find(|(path, _)| path.name() == isa).map_or(best, |&(_, g)| g)
    }

    /// The compute peaks, one line.
    pub fn describe_compute(&self) -> String {
        let peaks: Vec<String> = self.fma.iter().map(|(path, g)| format!("{path} {g:.1}")).collect();
        format!("register-only FMA peak in GFLOP/s, one thread: {}", peaks.join(", "))
    }

    /// The bandwidths, one line.
    pub fn describe(&self) -> String {
        let levels: Vec<String> = self
            .levels
            .iter()
            .zip(&self.gbs)
            .map(|((name, size), [one, two])| {
                let size = if *size >= 1 << 20 { format!("{} MB", size >> 20) } else { format!("{} KB", size >> 10) };
                format!("{name} ({size}) {one:.1} / {two:.1}")
            })
            .collect();
        format!("bandwidth in GB/s, one / two threads, a buffer summed: {}", levels.join(", "))
    }

    /// (`"compute"` or the memory level, the longer of the two times in ns) for a row, on two
    /// threads for `generated_par` and one for the rest.
    pub fn roofline(&self, r: &Row) -> (&'static str, f64) {
        let threads = r.threads();
        let compute = 2.0 * r.macs as f64 / (self.gflops(r.isa) * threads as f64);
        let level = self.levels.iter().position(|&(_, size)| r.bytes as usize <= size).unwrap_or(2);
        let memory = r.bytes as f64 / self.gbs[level][threads - 1];
        if compute >= memory {
            ("compute", compute)
        } else {
            (self.levels[level].0, memory)
        }
    }
}

/// GB/s of summing a buffer of `len` floats, over and over, on `threads` threads (each its
/// half): each timed call reads 64 MB, so that handing work to the second thread is noise.
pub fn read_gbs(bench: &Bench, len: usize, threads: usize) -> f64 {
    let v = vec![1.0f32; len];
    let passes = ((64 << 20) / (4 * len)).max(1);
    let sum = |v: &[f32]| {
        let mut acc = [0.0f32; 16];
        for _ in 0..passes {
            for chunk in std::hint::black_box(v).chunks_exact(16) {
                acc.iter_mut().zip(chunk).for_each(|(a, x)| *a += x);
            }
        }
        acc.iter().sum::<f32>()
    };
    let (front, back) = v.split_at(len / 2);
    let ns = bench.median_ns(|| {
        let total = if threads == 1 {
            sum(&v)
        } else {
            let (a, b) = rayon::join(|| sum(front), || sum(back));
            a + b
        };
        std::hint::black_box(total);
    });
    (passes * len * 4) as f64 / ns
}

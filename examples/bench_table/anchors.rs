//! `--anchors`: kcp beside the Python stack that users run KCP layers on today
//! (`benches/anchors.py`: numpy with opt_einsum's optimal path, a tednet-style rank loop, JAX
//! and torch where installed), on the headline layer (UCF11, rank 4), at batch 1, 16 and 256,
//! on one thread and two, from one run: for each, kcp is timed, then one Python process times
//! the same layer (the same factors and x, checked against kcp's y) with that many threads.

use std::path::Path;
use std::process::Command;

use kcp::Weights;

use crate::measure::Bench;
use crate::Ucf11Out4x4x4x16R4 as Layer;

/// One batch and thread count: kcp's median and each Python method's.
pub struct Anchor {
    pub batch: usize,
    pub threads: usize,
    pub kcp_ns: f64,
    /// (method, median ns, largest relative error against kcp's y).
    pub methods: Vec<(String, f64, f64)>,
    /// The BLAS the Python process ran (threadpoolctl), one line.
    pub blas: String,
}

/// Measure every batch and thread count; `Err` (one line) if the Python side cannot run.
pub fn measure(bench: &Bench) -> Result<Vec<Anchor>, String> {
    let dir = std::env::temp_dir().join(format!("kcp-anchors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = measure_in(bench, &dir);
    _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure_in(bench: &Bench, dir: &Path) -> Result<Vec<Anchor>, String> {
    let random = Layer::random(1);
    // No bias: the Python side computes x W^T alone.
    let weights = Weights { bias: Some(vec![0.0; Layer::OUT]), ..random.weights().clone() };
    let layer = Layer::from_weights(weights).map_err(|e| e.to_string())?;
    let write = |name: &str, shape: &[usize], data: &[f32]| {
        kcp::npy::write(&dir.join(name), shape, data).map_err(|e| e.to_string())
    };
    for (d, (factor, shape)) in layer.weights().factors.iter().zip(Layer::FACTOR_SHAPES).enumerate() {
        write(&format!("factor.{d}.npy"), &shape, factor)?;
    }
    let mut anchors = Vec::new();
    for batch in [1, 16, 256] {
        let x: Vec<f32> = (0..batch * Layer::IN).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut y = vec![0.0f32; batch * Layer::OUT];
        layer.forward(&x, &mut y).map_err(|e| e.to_string())?;
        write("x.npy", &[batch, Layer::IN], &x)?;
        write("y.npy", &[batch, Layer::OUT], &y)?;
        for threads in [1, 2] {
            let kcp_ns = bench.median_ns(|| {
                let run = if threads == 1 { Layer::forward } else { Layer::forward_par };
                run(&layer, &x, &mut y).expect("shapes");
            });
            anchors.push(python(dir, batch, threads, kcp_ns, bench.quick)?);
        }
    }
    Ok(anchors)
}

/// One process of `benches/anchors.py`.
fn python(dir: &Path, batch: usize, threads: usize, kcp_ns: f64, quick: bool) -> Result<Anchor, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/anchors.py");
    let mut command = Command::new("python3");
    command.arg(script).arg("--dir").arg(dir).arg("--threads").arg(threads.to_string());
    if quick {
        command.args(["--budget", "0.05", "--min-runs", "3"]);
    }
    // Unset for the Python process only (anchors.py unsets them too, before numpy loads).
    command.env_remove("OPENBLAS_CORETYPE").env_remove("OPENBLAS_L2_SIZE");
    let output = command.output().map_err(|e| format!("python3: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("no message");
        return Err(format!("{script} failed ({}): {last}", output.status));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("{script} printed no JSON: {e}"))?;
    let methods = json["methods"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, r)| {
                    let field = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                    (name.clone(), field("median_ns"), field("max_rel_err"))
                })
                .collect()
        })
        .unwrap_or_default();
    let blas = json["blas"]
        .as_array()
        .map(|libs| {
            let describe = |l: &serde_json::Value| {
                let field = |k: &str| l[k].as_str().map_or_else(|| l[k].to_string(), str::to_string);
                format!(
                    "{} {} ({}, {} threads)",
                    field("internal_api"),
                    field("version"),
                    field("architecture"),
                    l["num_threads"]
                )
            };
            libs.iter().map(describe).collect::<Vec<_>>().join("; ")
        })
        .unwrap_or_default();
    let numpy = json["numpy"].as_str().unwrap_or("?");
    Ok(Anchor { batch, threads, kcp_ns, methods, blas: format!("numpy {numpy}, {blas}") })
}

/// The anchors as a Markdown table: times, then each method's ratio to kcp.
pub fn table(anchors: &[Anchor]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for a in anchors {
        for (name, _, _) in &a.methods {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    let time = |ns: f64| if ns >= 1e6 { format!("{:.2} ms", ns / 1e6) } else { format!("{:.1} us", ns / 1e3) };
    let mut out = format!(
        "| batch | threads | kcp | {} | best Python / kcp |\n|---:|---:|---:|{}---:|\n",
        names.join(" | "),
        "---:|".repeat(names.len())
    );
    for a in anchors {
        let cells: Vec<String> = names
            .iter()
            .map(|n| {
                a.methods
                    .iter()
                    .find(|(m, _, _)| m == n)
                    .map_or("-".to_string(), |&(_, ns, _)| format!("{} ({:.1}x)", time(ns), ns / a.kcp_ns))
            })
            .collect();
        let best = a.methods.iter().map(|&(_, ns, _)| ns).fold(f64::INFINITY, f64::min);
        out += &format!(
            "| {} | {} | {} | {} | {:.1}x |\n",
            a.batch,
            a.threads,
            time(a.kcp_ns),
            cells.join(" | "),
            best / a.kcp_ns
        );
    }
    let worst = anchors.iter().flat_map(|a| a.methods.iter().map(|&(_, _, e)| e)).fold(0.0, f64::max);
    let blas: Vec<&str> = anchors.iter().map(|a| a.blas.as_str()).collect();
    out += &format!("\nlargest relative error of a Python method against kcp's y: {worst:.1e}\n");
    out += &format!("BLAS (threadpoolctl): {}\n", blas.first().copied().unwrap_or("?"));
    out
}

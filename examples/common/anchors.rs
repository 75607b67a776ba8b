//! The Python side of the anchors: one process of `benches/anchors.py` per batch and thread
//! count, timing numpy with opt_einsum's optimal path, JAX and torch where installed (and, for
//! a KCP layer, a tednet-style rank loop) on the layer and x that kcp just ran, checked against
//! kcp's y; and the Markdown table of kcp beside them. Shared by `bench_table --anchors` (the
//! UCF11 KCP layer) and `formats --anchors` (every format).

use std::path::Path;
use std::process::Command;

/// One layer, batch and thread count: kcp's median and each Python method's.
pub struct Anchor {
    /// The layer (empty where a table has one layer only).
    pub label: String,
    pub batch: usize,
    pub threads: usize,
    pub kcp_ns: f64,
    /// (method, median ns, largest relative error against kcp's y).
    pub methods: Vec<(String, f64, f64)>,
    /// The BLAS the Python process ran (threadpoolctl), one line.
    pub blas: String,
}

/// One process of `benches/anchors.py`.
pub fn python(
    dir: &Path,
    label: &str,
    batch: usize,
    threads: usize,
    kcp_ns: f64,
    quick: bool,
) -> Result<Anchor, String> {
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
    Ok(Anchor { label: label.to_string(), batch, threads, kcp_ns, methods, blas: format!("numpy {numpy}, {blas}") })
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
    // A first column for the layer where the table has several.
    let labelled = anchors.iter().any(|a| !a.label.is_empty());
    let (label_head, label_rule) = if labelled { ("| layer ", "|---") } else { ("", "") };
    let mut out = format!(
        "{label_head}| batch | threads | kcp | {} | best Python / kcp |\n{label_rule}|---:|---:|---:|{}---:|\n",
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
        let label = if labelled { format!("| {} ", a.label) } else { String::new() };
        out += &format!(
            "{label}| {} | {} | {} | {} | {:.1}x |\n",
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

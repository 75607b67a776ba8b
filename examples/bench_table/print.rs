//! Printing: the table as Markdown or JSON, and the paired comparisons with their verdicts.

use crate::measure::Row;
use crate::paired::{Comparison, Target};
use crate::roofline::Peaks;

/// The rows as a Markdown table (or, with `json`, a JSON array on stdout and the rest on
/// stderr), then the paired comparisons.
pub fn report(rows: &[Row], targets: &[Comparison], peaks: &Peaks, sgemm_gflops: f64, json: bool) {
    let gflops = |r: &Row| 2.0 * r.macs as f64 / r.median_ns;
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let (bound, roofline_ns) = peaks.roofline(r);
                serde_json::json!({"layer": r.layer, "batch": r.batch, "variant": r.variant, "isa": r.isa,
                    "median_ns": r.median_ns.round() as u64, "macs": r.macs, "gflops": gflops(r),
                    "bytes": r.bytes, "bound": bound, "roofline_ns": roofline_ns.round() as u64})
            })
            .collect();
        eprintln!("{}", crate::machine::describe());
        eprintln!("{}", peaks.describe_compute());
        eprintln!("faer SGEMM 1024^3: {sgemm_gflops:.1} GFLOP/s");
        eprintln!("{}", peaks.describe());
        eprintln!("{}", targets_table(targets));
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!("{}", crate::machine::describe());
    println!("{} (% peak: of the row's path)", peaks.describe_compute());
    println!("faer SGEMM 1024^3, one thread: {sgemm_gflops:.1} GFLOP/s (this run)");
    println!("{}\n", peaks.describe());
    println!("| layer | batch | variant | ISA | median | MACs | GFLOP/s | % peak | bound | % of roofline | vs dense | vs generic |");
    println!("|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|");
    for r in rows {
        let find = |v: &str| rows.iter().find(|o| o.layer == r.layer && o.batch == r.batch && o.variant == v);
        let ratio = |v: &str| find(v).map_or("".to_string(), |o| format!("{:.1}x", o.median_ns / r.median_ns));
        let time = if r.median_ns >= 1e6 {
            format!("{:.2} ms", r.median_ns / 1e6)
        } else {
            format!("{:.1} us", r.median_ns / 1e3)
        };
        let (bound, roofline_ns) = peaks.roofline(r);
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.0}% | {} | {:.0}% | {} | {} |",
            r.layer,
            r.batch,
            r.variant,
            r.isa,
            time,
            r.macs,
            gflops(r),
            100.0 * gflops(r) / peaks.gflops(r.isa) / r.threads() as f64,
            bound,
            100.0 * roofline_ns / r.median_ns,
            ratio("dense"),
            ratio("generic"),
        );
    }
    println!("\n{}", targets_table(targets));
}

/// The paired comparisons as a Markdown table, then a line per target counting its verdicts.
pub fn targets_table(targets: &[Comparison]) -> String {
    let mut out = String::from(
        "| target | layer | batch | candidate / base | speedup (median) | 95% interval | pairs | verdict |\n\
         |---|---|---:|---|---:|---|---:|---|\n",
    );
    let x = |v: f64| if v >= 10.0 { format!("{v:.0}x") } else { format!("{v:.2}x") };
    for t in targets {
        let s = t.speedup;
        out += &format!(
            "| {} | {} | {} | {} / {} | {} | {} - {} | {} | {} |\n",
            t.target.describe(),
            t.layer,
            t.batch,
            t.candidate,
            t.base,
            x(s.median),
            x(s.low),
            x(s.high),
            s.pairs,
            t.verdict()
        );
    }
    for target in Target::ALL {
        let of: Vec<&Comparison> = targets.iter().filter(|t| t.target == target).collect();
        if of.is_empty() {
            continue;
        }
        if target.goal().is_none() {
            let mut medians: Vec<f64> = of.iter().map(|t| t.speedup.median).collect();
            medians.sort_by(f64::total_cmp);
            let (low, high) = (medians[0], medians[medians.len() - 1]);
            out += &format!("\n{}: {low:.2}x to {high:.2}x", target.describe());
            continue;
        }
        let count = |v: &str| of.iter().filter(|t| t.verdict() == v).count();
        out += &format!(
            "\n{}: met {}, within noise {}, missed {} of {}",
            target.describe(),
            count("met"),
            count("within noise"),
            count("missed"),
            of.len()
        );
    }
    out
}

//! The paper's comparison on the UCF11 layer (in [8,20,20,18], out [16,4,4,4]: the gates of a
//! 256-unit LSTM in the first output mode) at the matched parameter budgets of docs/formats.md:
//! parameters, compression, the MACs per frame of kcp's plan, and the MACs of the orders the
//! reference implementations of each format use (docs/formats.md says whose).
//!
//! ```sh
//! cargo run --release --example formats            # a Markdown table
//! cargo run --release --example formats -- --json  # the same rows as JSON
//! ```
//!
//! Planning is format-agnostic today; running every format (time per frame, training) comes
//! with their lowering (issue 16), and joins this table then.

use kcp::ir::network::{orders, Format, Network};
use kcp::ir::{Batch, Options};

const IN_SHAPE: [usize; 4] = [8, 20, 20, 18];
const OUT_SHAPE: [usize; 4] = [16, 4, 4, 4];

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let formats = [
        Format::Kcp { rank: 9 },
        Format::Kcp { rank: 1 },
        Format::Tt { ranks: vec![1, 4, 4, 4, 1] },
        Format::Tr { ranks: vec![6; 8] },
        Format::Bt { blocks: 2, ranks: vec![4; 4] },
        Format::Cp { rank: 36 },
        Format::Ht { rank: 7 },
    ];
    let mut rows = Vec::new();
    for format in formats {
        let network = match Network::new(&IN_SHAPE, &OUT_SHAPE, format.clone(), Batch::Symbolic) {
            Ok(network) => network,
            Err(e) => {
                eprintln!("{format}: {e}");
                std::process::exit(2);
            }
        };
        let (plan, search) = network.plan(&Options::default());
        let references: Vec<(&str, u64)> =
            orders::references(&network).iter().map(|r| (r.name, r.macs(&network))).collect();
        rows.push((format, network.params(), network.compression_ratio(), plan.macs(), search.saturated, references));
    }
    if json {
        let objects: Vec<serde_json::Value> = rows
            .iter()
            .map(|(format, params, ratio, macs, optimal, refs)| {
                let refs: Vec<serde_json::Value> =
                    refs.iter().map(|(name, m)| serde_json::json!({ "name": name, "macs": m })).collect();
                serde_json::json!({
                    "format": format.to_string(),
                    "params": params,
                    "compression": ratio,
                    "planned_macs": macs,
                    "optimal": optimal,
                    "references": refs,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(objects));
        return;
    }
    println!("| format | parameters | compression | kcp's plan, MACs per frame | reference orders, MACs per frame |");
    println!("|---|---:|---:|---:|---|");
    for (format, params, ratio, macs, _, refs) in &rows {
        let refs: Vec<String> = refs
            .iter()
            .map(|(name, m)| format!("{name} {:.2}M ({:.1}x kcp's)", *m as f64 / 1e6, *m as f64 / *macs as f64))
            .collect();
        let refs = if refs.is_empty() { "(no public code)".to_string() } else { refs.join("; ") };
        println!("| {format} | {params} | {ratio:.0}x | {:.3}M | {refs} |", *macs as f64 / 1e6);
    }
}

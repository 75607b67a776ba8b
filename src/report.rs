//! The plan of a layer as JSON: what `kcp plan --json` prints and the Python package's
//! `kcp.plan` returns (docs/cli.md has the fields). Behind the feature `json`.

use serde_json::{json, Value};

use crate::ir::network::orders;
use crate::ir::Compiled;

/// The layer's costs for `batch` rows, the reference implementations' orders beside the
/// planned one, its cores and plan, and with `backward` the plan of its backward pass (dx
/// included).
pub fn plan_json(compiled: &Compiled, batch: usize, backward: bool) -> Value {
    let (network, plan) = (compiled.network(), &compiled.plan);
    let references: Vec<_> =
        orders::references(network).into_iter().map(|r| (r.key, r.name, r.macs(network))).collect();
    let mut candidates = serde_json::Map::new();
    for (key, _, macs) in &references {
        candidates.insert((*key).to_string(), json!(macs));
    }
    candidates.insert("optimal".into(), json!(plan.macs()));
    let mut value = json!({
        "format": network.format().name(),
        "in_shape": network.in_shape(),
        "out_shape": network.out_shape(),
        "batch": batch,
        "params": network.params(),
        "dense_params": network.dense_params(),
        "compression_ratio": network.compression_ratio(),
        "macs": plan.macs(),
        "prep_macs": plan.prep_macs(),
        "dense_macs": (batch as u64).saturating_mul(network.dense_params()),
        "candidates": candidates,
        "references": references.iter().map(|(_, name, macs)| json!({ "name": name, "macs": macs })).collect::<Vec<_>>(),
        "cores": network.cores().iter().enumerate().map(|(k, c)| json!({ "name": c.name, "shape": network.shape(k) })).collect::<Vec<_>>(),
        "plan": plan.to_string(),
        "lanes": compiled.lanes.as_ref().map_or(1, |lanes| lanes.lanes),
        "split": compiled.split.as_ref().map(|split| {
            let cut = match split.row.cut {
                crate::Cut::Sum => "sum",
                crate::Cut::Input { .. } => "input",
                crate::Cut::Output { .. } => "output",
            };
            json!({
                "index": split.row.index,
                "cut": cut,
                "at": split.row.at,
                "size": split.row.size,
                "part_macs": split.parts.iter().map(|p| p.macs_per_row).collect::<Vec<_>>(),
            })
        }),
    });
    let args = network.format().rank_args();
    for (key, given) in [
        ("rank", args.rank.map(|r| json!(r))),
        ("ranks", args.ranks.map(|r| json!(r))),
        ("blocks", args.blocks.map(|k| json!(k))),
    ] {
        if let Some(given) = given {
            value[key] = given;
        }
    }
    if backward {
        let back = compiled.backward(true);
        value["backward"] = json!({ "macs": back.macs, "saved_elems": back.saved_elems, "plan": back.to_string() });
    }
    value
}

//! The UCF11 input layer of kcp-notes.md: one 160x120x3 frame (57,600 = 8x20x20x18 inputs) to the
//! four LSTM gates of 256 units, compressed to rank-4 KCP, planned in both gate placements.

use std::time::Instant;

use kcp::ir::{compile, Options, Spec};

fn main() {
    for out in [[16, 4, 4, 4], [4, 4, 4, 16]] {
        let spec = Spec::new(&[8, 20, 20, 18], &out, 4).with_batch(1);
        let start = Instant::now();
        let compiled = match compile(&spec, &Options::default()) {
            Ok(compiled) => compiled,
            Err(errors) => {
                for error in errors {
                    eprintln!("error: {error}");
                }
                std::process::exit(2);
            }
        };
        let took = start.elapsed();
        let s = &compiled.spec;
        println!("UCF11 input layer, {s}");
        println!(
            "  {} parameters instead of {} ({:.0}x compression)",
            s.params(),
            s.dense_params(),
            s.compression_ratio()
        );
        println!(
            "  MACs per frame: dense {}, forward order {}, reverse order {}, planned {}",
            s.dense_params(),
            compiled.forward.macs(),
            compiled.reverse.macs(),
            compiled.plan.macs()
        );
        println!(
            "  planned in {:.2} ms ({} e-classes, {} e-nodes, saturated: {})",
            took.as_secs_f64() * 1e3,
            compiled.search.classes,
            compiled.search.nodes,
            compiled.search.saturated
        );
        for line in compiled.plan.to_string().lines() {
            println!("    {line}");
        }
        println!();
    }
}

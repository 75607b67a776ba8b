//! Planning time: compile (validate, graph, the e-graph, extraction, lowering) for KCP at
//! D = 2..8, the UCF11 layer, and every format at D = 5 (CP and TR have eleven operands there:
//! the declarations that take longest to plan, README's "Build times"). With
//! `--profile user-debug` everything builds unoptimised, as `kcp_layer!` runs in a user's plain
//! debug build (docs/cost-model.md has both columns).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kcp::ir::network::Format;
use kcp::ir::{compile, Options, Spec};

fn planning(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for d in 2..=8 {
        let spec = Spec::new(&vec![4; d], &vec![3; d], Format::kcp(4));
        group.bench_with_input(BenchmarkId::new("modes", d), &spec, |b, spec| {
            b.iter(|| compile(spec, &Options::default()))
        });
    }
    let ucf11 = Spec::new(&[8, 20, 20, 18], &[4, 4, 4, 16], Format::kcp(4));
    group.bench_function("ucf11_out4x4x4x16_r4", |b| b.iter(|| compile(&ucf11, &Options::default())));
    let d5 = [
        Format::Kcp { rank: 4 },
        Format::Cp { rank: 4 },
        Format::Tt { ranks: vec![1, 2, 2, 2, 2, 1] },
        Format::Tr { ranks: vec![2; 10] },
        Format::Bt { blocks: 2, ranks: vec![2; 5] },
        Format::Ht { rank: 2 },
    ];
    for format in d5 {
        let name = format.name();
        let spec = Spec::new(&[2, 3, 2, 2, 2], &[2, 2, 2, 2, 2], format);
        group.bench_with_input(BenchmarkId::new("d5", name), &spec, |b, spec| {
            b.iter(|| compile(spec, &Options::default()))
        });
    }
    group.finish();
}

criterion_group!(benches, planning);
criterion_main!(benches);

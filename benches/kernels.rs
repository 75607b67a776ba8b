//! The layer kernels under criterion: the generated kernel, the generic executor running the
//! same plan, and the dense faer product on the reconstructed weight, side by side per layer
//! and batch; and the small-GEMM micro-kernel on the shapes of the UCF11 plan (and the speech
//! plan's narrow 8x5x4). Throughput is in MACs (criterion's "elements") of each variant's own
//! plan.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use kcp::__private::{gemm, Gemm};
use kcp::ir::{compile, Options, Spec};
use kcp::{kcp_layer, Executor};

kcp_layer! { struct Ucf11R4 { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, bias: true } }
kcp_layer! { struct SpeechR8 { in_shape: [4, 4, 5, 4], out_shape: [4, 8, 8, 8], rank: 8, bias: true } }

fn input(len: usize) -> Vec<f32> {
    (0..len).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect()
}

macro_rules! layer_group {
    ($c:expr, $name:literal, $layer:ty, $batches:expr) => {{
        let layer = <$layer>::random(1);
        let spec =
            Spec::new(&<$layer>::IN_SHAPE, &<$layer>::OUT_SHAPE, kcp::ir::Format::kcp(<$layer>::RANK)).with_bias(true);
        let compiled = compile(&spec, &Options::default()).expect("valid spec");
        let generic = Executor::new(compiled.nest, layer.weights().clone()).expect("weights fit");
        let w = layer.weights().dense(&<$layer>::FACTOR_SHAPES);
        let (n, m) = (<$layer>::IN, <$layer>::OUT);
        let mut group = $c.benchmark_group($name);
        group.sample_size(20);
        for batch in $batches {
            let x = input(batch * n);
            let mut y = vec![0.0f32; batch * m];
            group.throughput(Throughput::Elements(batch as u64 * <$layer>::MACS_PER_SAMPLE));
            group.bench_function(BenchmarkId::new("generated", batch), |b| {
                b.iter(|| layer.forward(&x, &mut y).expect("shapes"))
            });
            group.bench_function(BenchmarkId::new("generated_par", batch), |b| {
                b.iter(|| layer.forward_par(&x, &mut y).expect("shapes"))
            });
            group.bench_function(BenchmarkId::new("generic", batch), |b| {
                b.iter(|| generic.forward(&x, &mut y).expect("shapes"))
            });
            group.throughput(Throughput::Elements((batch * m * n) as u64));
            group.bench_function(BenchmarkId::new("dense", batch), |b| {
                b.iter(|| {
                    let lhs = MatRef::from_row_major_slice(&x, batch, n);
                    let rhs = MatRef::from_row_major_slice(&w, m, n).transpose();
                    let out = MatMut::from_row_major_slice_mut(&mut y, batch, m);
                    matmul(out, Accum::Replace, lhs, rhs, 1.0, Par::Seq)
                })
            });
        }
        group.finish();
    }};
}

fn layers(c: &mut Criterion) {
    layer_group!(c, "ucf11_out4x4x4x16_r4", Ucf11R4, [1usize, 16]);
    layer_group!(c, "speech_320to4x512_r8", SpeechR8, [1usize, 16, 256]);
}

/// The micro-kernel alone on the UCF11 rank-4 plan's products (its first step's 4x20x360 and
/// second step's 4x20x18, and the last step's 64x18x16 with packed factor columns), and on the
/// speech plan's (a narrow one, the third step's 128x4x8 with packed factor columns, and the
/// last step's 8x8x64 summed over 4 blocks).
fn micro_kernel(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    let shapes = [
        ("4x20x360", Gemm::row_major(4, 20, 360)),
        ("4x20x18", Gemm::row_major(4, 20, 18)),
        ("8x5x4", Gemm::row_major(8, 5, 4)),
        ("64x18x16_packed", Gemm { a_row: 1, a_col: 18, overwrite: false, ..Gemm::row_major(64, 18, 16) }),
        ("128x4x8_packed", Gemm { a_row: 1, a_col: 4, ..Gemm::row_major(128, 4, 8) }),
        (
            "8x8x64_outer4",
            Gemm { w_row: 32, outer: 4, a_outer: 8 * 64, w_outer: 8, overwrite: false, ..Gemm::row_major(8, 8, 64) },
        ),
    ];
    for (name, g) in shapes {
        let a = input(g.outer * g.depth * g.a_row.max(g.len * g.a_col));
        let w = input(g.rows * g.w_row.max(g.outer * g.depth));
        let mut out = vec![0.0f32; g.rows * g.out_row];
        group.throughput(Throughput::Elements(g.macs() as u64));
        group.bench_function(name, |b| b.iter(|| gemm(&mut out, &a, &w, g)));
    }
    group.finish();
}

criterion_group!(benches, layers, micro_kernel);
criterion_main!(benches);

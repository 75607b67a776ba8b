//! The `kcp` binary, run as users run it: plan JSON, run against the dense reference, compress
//! and round trip, the LSTM path, and a table of bad inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kcp::ir::test::{dense_forward, relative_error};
use kcp::ir::{compile, Options, Spec};
use kcp::{npy, save, CellKind, Executor, NamedTensor, Recurrent, RecurrentExecutor, State, Threads, Weights};

fn kcp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kcp")).args(args).output().unwrap()
}

fn dir() -> PathBuf {
    common::test_dir()
}

fn path(name: &str) -> String {
    dir().join(name).to_string_lossy().into_owned()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn plan_json_reproduces_the_worked_example() {
    for (out, forward, reverse, optimal, params) in
        [("16x4x4x4", 1_492_992u64, 300_032u64, 293_888u64, 360u64), ("4x4x4x16", 387_072, 1_175_552, 304_128, 480)]
    {
        let text = stdout(&kcp(&["plan", "--in-shape", "8x20x20x18", "--out-shape", out, "--rank", "1", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["in_shape"], serde_json::json!([8, 20, 20, 18]));
        assert_eq!(v["rank"], 1);
        assert_eq!(v["batch"], 1);
        assert_eq!(v["params"], params);
        assert_eq!(v["dense_params"], 58_982_400u64);
        assert_eq!(v["compression_ratio"].as_f64().unwrap(), 58_982_400.0 / params as f64);
        assert_eq!(v["macs"], optimal);
        assert_eq!(v["prep_macs"], 0);
        assert_eq!(v["dense_macs"], 58_982_400u64);
        assert_eq!(v["candidates"]["forward"], forward);
        assert_eq!(v["candidates"]["reverse"], reverse);
        assert_eq!(v["candidates"]["optimal"], optimal);
        assert!(v["plan"].as_str().unwrap().starts_with("call t0["));
        // A row of more than 2^18 MACs runs on two threads, x's first mode cut in halves.
        assert_eq!(v["split"]["index"], "j1");
        assert_eq!(
            (v["split"]["cut"].as_str(), v["split"]["at"].as_u64(), v["split"]["size"].as_u64()),
            (Some("input"), Some(4), Some(8))
        );
        let parts: Vec<u64> = v["split"]["part_macs"].as_array().unwrap().iter().map(|m| m.as_u64().unwrap()).collect();
        assert!(parts.len() == 2 && parts.iter().all(|&m| 2 * m < optimal + optimal / 5), "{parts:?} of {optimal}");
    }
    let text = stdout(&kcp(&[
        "plan",
        "--in-shape",
        "8x20x20x18",
        "--out-shape",
        "4x4x4x16",
        "--rank",
        "4",
        "--batch",
        "16",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["macs"], 16 * 4 * 304_128u64);
    assert_eq!(v["dense_macs"], 16 * 58_982_400u64);
    // UCF11 runs row by row; a small layer interleaves blocks of 16 rows.
    assert_eq!(v["lanes"], 1);
    let small = stdout(&kcp(&["plan", "--in-shape", "4x3", "--out-shape", "4x2", "--rank", "2", "--json"]));
    let small: serde_json::Value = serde_json::from_str(&small).unwrap();
    assert_eq!((&small["lanes"], &small["split"]), (&serde_json::json!(16), &serde_json::Value::Null));
}

/// `plan --backward`: the backward plan's MACs, kept elements and text in the JSON object, and
/// after the forward plan in the text; without the flag, no `backward` key.
#[test]
fn plan_backward_prints_the_gradient_plan() {
    let args = ["plan", "--in-shape", "8x20x20x18", "--out-shape", "4x4x4x16", "--rank", "4", "--batch", "2"];
    let text = stdout(&kcp(&[&args[..], &["--backward", "--json"]].concat()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["backward"]["macs"], 2 * 2_433_024u64);
    assert_eq!(v["backward"]["saved_elems"], 2 * 59_904u64);
    assert!(v["backward"]["plan"].as_str().unwrap().starts_with("sweep in the order A2, A3, A1, A4"));
    let plain: serde_json::Value = serde_json::from_str(&stdout(&kcp(&[&args[..], &["--json"]].concat()))).unwrap();
    assert!(plain.get("backward").is_none());
    let text = stdout(&kcp(&[&args[..], &["--backward"]].concat()));
    assert!(
        text.contains("backward (every core's gradient and dx, per call of batch 2):\nsweep in the order"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("separately 12165120)"), "{text}");
}

#[test]
fn emit_prints_formatted_rust() {
    let text = stdout(&kcp(&["emit", "--in-shape", "4x5", "--out-shape", "3x2", "--rank", "2", "--name", "Small"]));
    assert!(text.contains("pub struct Small {"));
    assert!(text.contains("fn __kcp_row("));
    syn::parse_file(&text).unwrap();
}

fn spec(n: &[usize], m: &[usize], r: usize) -> kcp::ir::Compiled {
    compile(&Spec::new(n, m, kcp::ir::Format::kcp(r)), &Options::default()).unwrap()
}

#[test]
fn run_matches_the_dense_reference() {
    let c = spec(&[6, 5, 4], &[3, 2, 4], 3);
    let weights = kcp::random_weights(c.network(), true, 3);
    save(Path::new(&path("run.safetensors")), &weights.tensors("", &c.nest.cores)).unwrap();
    // 35 rows: two blocks of 16 interleaved rows (the layer has them), then 3 rows one at a
    // time.
    assert!(c.lanes.is_some());
    let x: Vec<f32> = (0..35 * 120).map(|k| ((k * 37 % 101) as f32 / 50.0) - 1.0).collect();
    npy::write(Path::new(&path("x.npy")), &[35, 120], &x).unwrap();
    for threads in ["1", "2"] {
        let args = [
            "run",
            "--in-shape",
            "6x5x4",
            "--out-shape",
            "3x2x4",
            "--rank",
            "3",
            "--weights",
            &path("run.safetensors"),
            "--x",
            &path("x.npy"),
            "--y",
            &path("y.npy"),
            "--threads",
            threads,
        ];
        stdout(&kcp(&args));
        let y = npy::read(Path::new(&path("y.npy"))).unwrap();
        assert_eq!(y.shape, [35, 24]);
        let factors: Vec<Vec<f64>> = weights.cores.iter().map(|f| f.iter().map(|&v| v as f64).collect()).collect();
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let mut reference = dense_forward(&c.spec, &factors, &x64, 35);
        let bias = weights.bias.as_ref().unwrap();
        for row in reference.chunks_mut(24) {
            row.iter_mut().zip(bias).for_each(|(r, &b)| *r += b as f64);
        }
        let y64: Vec<f64> = y.data.iter().map(|&v| v as f64).collect();
        assert!(relative_error(&y64, &reference) < 1e-5);
    }
}

#[test]
fn compress_recovers_a_rank_r_weight_and_run_reproduces_the_dense_layer() {
    let c = spec(&[6, 5, 4], &[3, 2, 4], 2);
    let truth = kcp::random_weights(c.network(), false, 9);
    let w = truth.dense(&c.nest.factor_shapes());
    npy::write(Path::new(&path("w.npy")), &[24, 120], &w).unwrap();
    let args = [
        "compress",
        "--in-shape",
        "6x5x4",
        "--out-shape",
        "3x2x4",
        "--rank",
        "2",
        "--dense",
        &path("w.npy"),
        "--weights-out",
        &path("fit.safetensors"),
        "--iters",
        "300",
        "--seed",
        "1",
        "--json",
    ];
    let v: serde_json::Value = serde_json::from_str(&stdout(&kcp(&args))).unwrap();
    let error = v["relative_error"].as_f64().unwrap();
    assert!(error < 1e-4, "relative error {error}");
    assert_eq!(v["params"], 2 * (18 + 10 + 16));
    assert!(v["iterations"].as_u64().unwrap() >= 1);
    assert!(v["compression_ratio"].as_f64().unwrap() > 1.0);
    // Round trip: run the fitted factors and compare with x W^T.
    let x: Vec<f32> = (0..3 * 120).map(|k| ((k * 13 % 29) as f32 / 14.0) - 1.0).collect();
    npy::write(Path::new(&path("xc.npy")), &[3, 120], &x).unwrap();
    let args = [
        "run",
        "--in-shape",
        "6x5x4",
        "--out-shape",
        "3x2x4",
        "--rank",
        "2",
        "--weights",
        &path("fit.safetensors"),
        "--x",
        &path("xc.npy"),
        "--y",
        &path("yc.npy"),
    ];
    stdout(&kcp(&args));
    let y = npy::read(Path::new(&path("yc.npy"))).unwrap();
    let dense: Vec<f64> = (0..3)
        .flat_map(|b| (0..24).map(move |i| (b, i)))
        .map(|(b, i)| (0..120).map(|j| (x[b * 120 + j] * w[i * 120 + j]) as f64).sum())
        .collect();
    let y64: Vec<f64> = y.data.iter().map(|&v| v as f64).collect();
    assert!(relative_error(&y64, &dense) < 1e-4 + error);
}

#[test]
fn the_lstm_path_from_pytorch_names() {
    // A PyTorch nn.LSTM with an exactly rank-2 KCP weight_ih_l0, saved with PyTorch's names.
    let (n, m, hidden) = ([4usize, 3], [4usize, 2], 2usize);
    let c = spec(&n, &m, 2);
    let truth = kcp::random_weights(c.network(), true, 4);
    let cell = Recurrent::random(CellKind::Lstm, hidden, 5);
    let torch = vec![
        NamedTensor::new("weight_ih_l0", vec![8, 12], truth.dense(&c.nest.factor_shapes())),
        NamedTensor::new("bias_ih_l0", vec![8], truth.bias.clone().unwrap()),
        NamedTensor::new("weight_hh_l0", vec![8, 2], cell.weight_hh().to_vec()),
        NamedTensor::new("bias_hh_l0", vec![8], cell.bias_hh().to_vec()),
    ];
    save(Path::new(&path("torch_lstm.safetensors")), &torch).unwrap();
    let args = [
        "compress",
        "--in-shape",
        "4x3",
        "--out-shape",
        "4x2",
        "--rank",
        "2",
        "--cell",
        "lstm",
        "--dense",
        &path("torch_lstm.safetensors"),
        "--weights-out",
        &path("kcp_lstm.safetensors"),
        "--iters",
        "300",
        "--json",
    ];
    let v: serde_json::Value = serde_json::from_str(&stdout(&kcp(&args))).unwrap();
    assert!(v["relative_error"].as_f64().unwrap() < 1e-4);
    let x: Vec<f32> = (0..5 * 3 * 12).map(|k| ((k * 7 % 19) as f32 / 9.0) - 1.0).collect();
    npy::write(Path::new(&path("xs.npy")), &[5, 3, 12], &x).unwrap();
    let args = [
        "run",
        "--cell",
        "lstm",
        "--in-shape",
        "4x3",
        "--out-shape",
        "4x2",
        "--rank",
        "2",
        "--weights",
        &path("kcp_lstm.safetensors"),
        "--x",
        &path("xs.npy"),
        "--y",
        &path("hs.npy"),
    ];
    stdout(&kcp(&args));
    let hs = npy::read(Path::new(&path("hs.npy"))).unwrap();
    assert_eq!(hs.shape, [5, 3, 2]);
    // The same sequence through the original dense weights, in process.
    let dense_input = Executor::new(c.nest.clone(), truth).unwrap();
    let original = RecurrentExecutor::new(dense_input, cell).unwrap();
    let mut expected = vec![0.0; 30];
    original.forward(&x, 3, &mut expected, &mut State::zeros(CellKind::Lstm, 3, 2)).unwrap();
    let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    assert!(relative_error(&to64(&hs.data), &to64(&expected)) < 1e-4);
}

#[test]
fn bad_input_gives_one_line_and_exit_code_2() {
    let c = spec(&[6, 5], &[4, 3], 2);
    let good = kcp::random_weights(c.network(), false, 1);
    let tensors = good.tensors("", &c.nest.cores);
    save(Path::new(&path("good.safetensors")), &tensors).unwrap();
    let mut nan = tensors.clone();
    nan[1].values[4] = f32::NAN;
    save(Path::new(&path("nan.safetensors")), &nan).unwrap();
    let bytes = std::fs::read(path("good.safetensors")).unwrap();
    std::fs::write(path("truncated.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(path("corrupt.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}").unwrap();
    let f64_bytes: Vec<u8> = tensors[0].values.iter().flat_map(|&v| (v as f64).to_le_bytes()).collect();
    let f32_bytes: Vec<u8> = tensors[1].values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        ("factor.0", safetensors::tensor::TensorView::new(safetensors::Dtype::F64, vec![2, 4, 6], &f64_bytes).unwrap()),
        ("factor.1", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3, 5], &f32_bytes).unwrap()),
    ];
    std::fs::write(path("f64.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    npy::write(Path::new(&path("x30.npy")), &[2, 30], &[0.5; 60]).unwrap();
    npy::write(Path::new(&path("x31.npy")), &[2, 31], &[0.5; 62]).unwrap();
    std::fs::write(path("text.npy"), b"hello").unwrap();

    let run = |weights: &str, x: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> =
            ["run", "--in-shape", "6x5", "--out-shape", "4x3", "--rank", "2"].iter().map(|s| s.to_string()).collect();
        v.extend(["--weights".into(), path(weights), "--x".into(), path(x), "--y".into(), path("out.npy")]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let plan = |args: &[&str]| -> Vec<String> { args.iter().map(|s| s.to_string()).collect() };
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "unknown flag",
            plan(&["plan", "--in-shape", "6x5", "--out-shape", "4x3", "--rank", "2", "--frobnicate"]),
            "unexpected argument '--frobnicate'",
        ),
        (
            "malformed shape",
            plan(&["plan", "--in-shape", "6by5", "--out-shape", "4x3", "--rank", "2"]),
            "expected dimensions like 8x20x20x18",
        ),
        (
            "zero dimension",
            plan(&["plan", "--in-shape", "6x0", "--out-shape", "4x3", "--rank", "2"]),
            "in_shape dimension 2 must be at least 1",
        ),
        (
            "mode mismatch",
            plan(&["plan", "--in-shape", "6x5", "--out-shape", "12", "--rank", "2"]),
            "out_shape has 1 modes but in_shape has 2",
        ),
        (
            "shape/weights mismatch",
            {
                let mut v = run("good.safetensors", "x30.npy", &[]);
                v[4] = "3x4".into();
                v
            },
            "tensor `factor.0` has shape [2, 4, 6], expected [2, 3, 6]",
        ),
        (
            "x of the wrong width",
            run("good.safetensors", "x31.npy", &[]),
            "has shape [2, 31], expected [B, N] with a last dimension of 30",
        ),
        ("missing weights", run("nope.safetensors", "x30.npy", &[]), "cannot access"),
        ("missing x", run("good.safetensors", "nope.npy", &[]), "cannot access"),
        ("truncated safetensors", run("truncated.safetensors", "x30.npy", &[]), "is not a valid safetensors file"),
        ("corrupt safetensors", run("corrupt.safetensors", "x30.npy", &[]), "is not a valid safetensors file"),
        ("wrong dtype", run("f64.safetensors", "x30.npy", &[]), "tensor `factor.0` has dtype F64, expected F32"),
        (
            "NaN in the weights",
            run("nan.safetensors", "x30.npy", &[]),
            "tensor `factor.1` holds a non-finite value (NaN) at element 4",
        ),
        ("not an npy file", run("good.safetensors", "text.npy", &[]), "is not a valid .npy file"),
        ("bad cell", run("good.safetensors", "x30.npy", &["--cell", "rnn"]), "invalid value 'rnn'"),
        (
            "cell without cell weights",
            run("good.safetensors", "x30.npy", &["--cell", "lstm"]),
            "tensor `weight_ih.factor.0` is missing",
        ),
        (
            "cell gates",
            {
                let mut v = run("good.safetensors", "x30.npy", &["--cell", "lstm"]);
                v[4] = "5x3".into();
                v
            },
            "out_shape multiplies to 15, not a multiple of the 4 gates",
        ),
        (
            "compress wrong dense shape",
            plan(&[
                "compress",
                "--in-shape",
                "6x5",
                "--out-shape",
                "4x2",
                "--rank",
                "2",
                "--dense",
                &path("x30.npy"),
                "--weights-out",
                &path("o.safetensors"),
            ]),
            "has shape [2, 30], expected [8, 30]",
        ),
    ];
    for (name, args, expected) in cases {
        fails_in_one_line(name, &args, expected);
    }
    // Each format takes its own rank flags, and the KCP-only commands say so.
    let layer = ["--in-shape", "6x5", "--out-shape", "4x3"];
    let format_cases: [(&[&str], &str); 7] = [
        (&["plan", "--format", "tt", "--rank", "2"], "--format tt takes no --rank"),
        (&["plan", "--format", "tt"], "--format tt needs --ranks"),
        (&["plan", "--format", "bt", "--ranks", "2x2"], "--format bt needs --blocks"),
        (&["plan"], "--format kcp needs --rank"),
        (&["plan", "--format", "tt", "--ranks", "2x3x1"], "tt ranks must start and end with 1"),
        (&["plan", "--format", "tr", "--ranks", "2x2x2"], "tr needs 4 ranks"),
        (
            &["compress", "--format", "ht", "--rank", "2", "--dense", "w.npy", "--weights-out", "o.safetensors"],
            "not ht",
        ),
    ];
    for (args, expected) in format_cases {
        let args: Vec<String> = args.iter().chain(&layer).map(|s| s.to_string()).collect();
        fails_in_one_line(&args.join(" "), &args, expected);
    }
}

/// `kcp plan`, `run` and `grad` take every format of docs/formats.md: the plan's JSON names the
/// format and the reference implementations' orders (and the backward plan), `run` reads each
/// format's cores under their file names (a block term's per block) and reproduces the dense
/// f64 reference, and `grad` writes every core's gradient under its name, the bias's and dx,
/// as the brute-force reference computes them.
#[test]
fn every_format_plans_and_runs_from_its_flags() {
    use kcp::ir::network::{eval, Format, Network};
    use kcp::ir::Batch;
    let text = stdout(&kcp(&[
        "plan",
        "--format",
        "tt",
        "--ranks",
        "1x4x4x4x1",
        "--in-shape",
        "8x20x20x18",
        "--out-shape",
        "16x4x4x4",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["format"].as_str(), v["params"].as_u64()), (Some("tt"), Some(3_360)));
    let network =
        Network::new(&[8, 20, 20, 18], &[16, 4, 4, 4], Format::Tt { ranks: vec![1, 4, 4, 4, 1] }, Batch::Fixed(1))
            .unwrap();
    assert_eq!(v["macs"], network.plan(&Options::default()).0.macs());
    let references: Vec<&str> =
        v["references"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(references, ["TT-RNN", "tednet"]);
    let candidates = v["candidates"].as_object().unwrap();
    assert_eq!(candidates.keys().collect::<Vec<_>>(), ["optimal", "tednet", "tt-rnn"]);
    assert_eq!(candidates["optimal"], v["macs"]);
    assert_eq!(candidates["tt-rnn"], v["references"][0]["macs"]);
    assert!(v.get("backward").is_none());
    let args =
        ["plan", "--format", "tt", "--ranks", "1x4x4x4x1", "--in-shape", "8x20x20x18", "--out-shape", "16x4x4x4"];
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&kcp(&[&args[..], &["--backward", "--json"]].concat()))).unwrap();
    let (plan, _) = network.plan(&Options::default());
    let backward = kcp::ir::plan_backward(&network.graph(), &plan, true, Options::default().max_saved_elems);
    assert_eq!(v["backward"]["macs"], backward.macs);
    assert_eq!(v["backward"]["plan"], backward.to_string());
    assert!(stdout(&kcp(&[&args[..], &["--backward"]].concat())).contains(&backward.to_string()));
    // emit prints the layer kcp_layer! generates for the format.
    let code = stdout(&kcp(&[
        "emit",
        "--format",
        "tt",
        "--ranks",
        "1x2x1",
        "--in-shape",
        "4x5",
        "--out-shape",
        "3x2",
        "--name",
        "SmallTt",
    ]));
    assert!(
        code.contains("pub struct SmallTt") && code.contains(r#"pub const FORMAT: &'static str = "tt ranks 1x2x1";"#),
        "{code}"
    );
    syn::parse_file(&code).unwrap();

    let (in_shape, out_shape) = ([3usize, 1, 4], [2usize, 3, 2]);
    let cases: [(&[&str], Format); 6] = [
        (&["--format", "kcp", "--rank", "2"], Format::Kcp { rank: 2 }),
        (&["--format", "cp", "--rank", "3"], Format::Cp { rank: 3 }),
        (&["--format", "tt", "--ranks", "1x2x3x1"], Format::Tt { ranks: vec![1, 2, 3, 1] }),
        (&["--format", "tr", "--ranks", "2x1x3x2x2x1"], Format::Tr { ranks: vec![2, 1, 3, 2, 2, 1] }),
        (&["--format", "bt", "--blocks", "2", "--ranks", "2x1x3"], Format::Bt { blocks: 2, ranks: vec![2, 1, 3] }),
        (&["--format", "ht", "--rank", "2"], Format::Ht { rank: 2 }),
    ];
    let mut rng = kcp::ir::test::Rng::new(16);
    let batch = 3;
    let x = rng.vec(batch * 12);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let (x_file, y_file) = (path("xf.npy"), path("yf.npy"));
    let (dy_file, dx_file, grads_file) = (path("dyf.npy"), path("dxf.npy"), path("gradsf.safetensors"));
    npy::write(Path::new(&x_file), &[batch, 12], &x32).unwrap();
    for (flags, format) in cases {
        let network = Network::new(&in_shape, &out_shape, format.clone(), Batch::Symbolic).unwrap();
        let cores = eval::random_cores(&network, &mut rng);
        let bias = rng.vec(12);
        let mut want = eval::dense_forward(&network, &cores, &x, batch);
        want.iter_mut().enumerate().for_each(|(k, y)| *y += bias[k % 12]);
        let to32 = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let weights = Weights { cores: cores.iter().map(|c| to32(c)).collect(), bias: Some(to32(&bias)) };
        let file = path(&format!("{}.safetensors", format.name()));
        save(
            Path::new(&file),
            &weights.tensors(
                "",
                &kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network").nest.cores,
            ),
        )
        .unwrap();
        let mut args = vec!["run", "--in-shape", "3x1x4", "--out-shape", "2x3x2"];
        args.extend(flags);
        args.extend(["--weights", &file, "--x", &x_file, "--y", &y_file, "--threads", "2"]);
        stdout(&kcp(&args));
        let y: Vec<f64> = npy::read(Path::new(&y_file)).unwrap().data.iter().map(|&v| v as f64).collect();
        assert!(relative_error(&y, &want) < 1e-5, "{format}: {}", relative_error(&y, &want));
        // The gradients of L = sum(dy * y), written under the cores' names.
        let dy = rng.vec(batch * 12);
        npy::write(Path::new(&dy_file), &[batch, 12], &to32(&dy)).unwrap();
        let (want_cores, want_dx) = eval::dense_gradients(&network, &cores, &x, &dy, batch);
        let mut args = vec!["grad", "--in-shape", "3x1x4", "--out-shape", "2x3x2"];
        args.extend(flags);
        args.extend(["--weights", &file, "--x", &x_file, "--dy", &dy_file, "--grads-out", &grads_file]);
        stdout(&kcp(&[&args[..], &["--dx", &dx_file, "--threads", "2"]].concat()));
        let f64s = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        let lowered = kcp::ir::compile(&network.spec(), &Options::default()).expect("a valid network");
        let grads = Weights::load(Path::new(&grads_file), "", &lowered.nest.cores, Some(12)).unwrap();
        for (k, (got, want)) in grads.cores.iter().zip(&want_cores).enumerate() {
            assert!(relative_error(&f64s(got), want) < 1e-5, "{format}: core {k}");
        }
        let want_db: Vec<f64> = (0..12).map(|i| (0..batch).map(|b| dy[b * 12 + i]).sum()).collect();
        assert!(relative_error(&f64s(grads.bias.as_ref().unwrap()), &want_db) < 1e-5, "{format}: bias");
        let dx = npy::read(Path::new(&dx_file)).unwrap();
        assert!(relative_error(&f64s(&dx.data), &want_dx) < 1e-5, "{format}: dx");
    }
    let names = kcp::TensorFile::read(Path::new(&path("bt.safetensors"))).unwrap().names();
    assert!(
        names.contains(&"block.1.factor.2".to_string()) && names.contains(&"block.0.core".to_string()),
        "{names:?}"
    );
}

/// `kcp compress --format tt` fits by TT-SVD: a weight that is a tensor train of the ranks
/// asked for comes back exactly (and `run` reproduces the dense layer from the cores written);
/// at lower ranks the error it reports is the true one, measured on the dense weight of the
/// cores written.
#[test]
fn compress_tt_svd_fits_and_reports_its_error() {
    use kcp::ir::network::{eval, Format, Network};
    use kcp::ir::Batch;
    let (in_shape, out_shape) = ([3usize, 4, 2], [2usize, 3, 2]);
    let truth = Network::new(&in_shape, &out_shape, Format::Tt { ranks: vec![1, 2, 3, 1] }, Batch::Symbolic).unwrap();
    let mut rng = kcp::ir::test::Rng::new(17);
    let w64 = eval::dense_weight(&truth, &eval::random_cores(&truth, &mut rng));
    let w: Vec<f32> = w64.iter().map(|&v| v as f32).collect();
    npy::write(Path::new(&path("wtt.npy")), &[12, 24], &w).unwrap();
    let norm = w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    for (ranks, exact) in [("1x2x3x1", true), ("1x2x2x1", false), ("1x6x4x1", true)] {
        let file = path(&format!("tt{ranks}.safetensors"));
        let args = [
            "compress",
            "--format",
            "tt",
            "--ranks",
            ranks,
            "--in-shape",
            "3x4x2",
            "--out-shape",
            "2x3x2",
            "--dense",
            &path("wtt.npy"),
            "--weights-out",
            &file,
            "--json",
        ];
        let v: serde_json::Value = serde_json::from_str(&stdout(&kcp(&args))).unwrap();
        let reported = v["relative_error"].as_f64().unwrap();
        assert_eq!(v["format"], "tt");
        // The cores written, their dense weight, its true error.
        let list: Vec<usize> = ranks.split('x').map(|r| r.parse().unwrap()).collect();
        let network = Network::new(&in_shape, &out_shape, Format::Tt { ranks: list }, Batch::Symbolic).unwrap();
        let loaded = Weights::load(Path::new(&file), "", &network.core_shapes(), None).unwrap();
        let cores: Vec<Vec<f64>> = loaded.cores.iter().map(|c| c.iter().map(|&v| f64::from(v)).collect()).collect();
        let fitted = eval::dense_weight(&network, &cores);
        let error = fitted.iter().zip(&w).map(|(a, &b)| (a - f64::from(b)).powi(2)).sum::<f64>().sqrt() / norm;
        assert!((reported - error).abs() < 1e-5, "{ranks}: reported {reported}, true {error}");
        assert_eq!(error < 1e-5, exact, "{ranks}: error {error}");
        assert_eq!(v["params"], network.params());
    }
    // The exact fit runs as the dense layer does.
    let x: Vec<f32> = (0..2 * 24).map(|k| ((k * 13 % 29) as f32 / 14.0) - 1.0).collect();
    npy::write(Path::new(&path("xtt.npy")), &[2, 24], &x).unwrap();
    let args = [
        "run",
        "--format",
        "tt",
        "--ranks",
        "1x2x3x1",
        "--in-shape",
        "3x4x2",
        "--out-shape",
        "2x3x2",
        "--weights",
        &path("tt1x2x3x1.safetensors"),
        "--x",
        &path("xtt.npy"),
        "--y",
        &path("ytt.npy"),
    ];
    stdout(&kcp(&args));
    let y: Vec<f64> = npy::read(Path::new(&path("ytt.npy"))).unwrap().data.iter().map(|&v| f64::from(v)).collect();
    let dense: Vec<f64> = (0..2)
        .flat_map(|b| (0..12).map(move |i| (b, i)))
        .map(|(b, i)| (0..24).map(|j| f64::from(x[b * 24 + j]) * w64[i * 24 + j]).sum())
        .collect();
    assert!(relative_error(&y, &dense) < 1e-5, "{}", relative_error(&y, &dense));
}

/// `kcp args` exits with code 2 and one line on stderr that contains `expected`, no panic.
fn fails_in_one_line(name: &str, args: &[String], expected: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_kcp")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: more than one line:\n{stderr}");
    assert!(stderr.contains(expected), "{name}: {stderr}");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
}

/// `kcp grad --threads 1` and `--threads 2` on a 64-row batch (enough MACs to thread) write the
/// same bytes: the gradients do not depend on the number of threads.
#[test]
fn grad_writes_the_same_bytes_on_one_thread_and_two() {
    let c = spec(&[8, 8, 8], &[4, 4, 8], 4);
    let weights = kcp::random_weights(c.network(), true, 21);
    save(Path::new(&path("threads.safetensors")), &weights.tensors("", &c.nest.cores)).unwrap();
    let (batch, n, m) = (64, c.spec.input_size(), c.spec.output_size());
    assert!(batch as u64 * c.backward(true).macs > kcp::PAR_MIN_MACS, "the backward pass is threaded");
    let x: Vec<f32> = (0..batch * n).map(|k| ((k * 29 % 53) as f32 / 26.0) - 1.0).collect();
    let dy: Vec<f32> = (0..batch * m).map(|k| ((k * 17 % 31) as f32 / 15.0) - 1.0).collect();
    npy::write(Path::new(&path("tx.npy")), &[batch, n], &x).unwrap();
    npy::write(Path::new(&path("tdy.npy")), &[batch, m], &dy).unwrap();
    let outputs: Vec<(Vec<u8>, Vec<u8>)> = ["1", "2"]
        .iter()
        .map(|threads| {
            let (grads, dx) = (path(&format!("tg{threads}.safetensors")), path(&format!("tdx{threads}.npy")));
            let files = ["--weights", &path("threads.safetensors"), "--x", &path("tx.npy"), "--dy", &path("tdy.npy")];
            let layer = ["grad", "--in-shape", "8x8x8", "--out-shape", "4x4x8", "--rank", "4"];
            let out = ["--grads-out", &grads, "--dx", &dx, "--threads", threads];
            stdout(&kcp(&[&layer[..], &files, &out].concat()));
            (std::fs::read(&grads).unwrap(), std::fs::read(&dx).unwrap())
        })
        .collect();
    assert!(outputs[0] == outputs[1], "kcp grad wrote other bytes on two threads");
}

/// `kcp grad` on a layer with a bias: every gradient and dx against the dense f64 reference, on
/// one thread and two, under the weights' own names and shapes.
#[test]
fn grad_matches_the_dense_reference() {
    use kcp::ir::test::dense_gradients;
    use kcp::TensorFile;
    let c = spec(&[4, 3, 2], &[2, 3, 2], 3);
    let shapes = c.nest.factor_shapes();
    let weights = common::kcp_random(&shapes, Some(12), 8);
    save(Path::new(&path("g.safetensors")), &weights.tensors("", &common::kcp_cores(&shapes))).unwrap();
    let batch = 5;
    let x: Vec<f32> = (0..batch * 24).map(|k| ((k * 29 % 53) as f32 / 26.0) - 1.0).collect();
    let dy: Vec<f32> = (0..batch * 12).map(|k| ((k * 17 % 31) as f32 / 15.0) - 1.0).collect();
    npy::write(Path::new(&path("gx.npy")), &[batch, 24], &x).unwrap();
    npy::write(Path::new(&path("gdy.npy")), &[batch, 12], &dy).unwrap();
    let f64s = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
    let factors: Vec<Vec<f64>> = weights.cores.iter().map(|f| f64s(f)).collect();
    let want = dense_gradients(&c.spec, &factors, &f64s(&x), &f64s(&dy), batch);
    for threads in ["1", "2"] {
        let args =
            ["grad", "--in-shape", "4x3x2", "--out-shape", "2x3x2", "--rank", "3", "--weights", &path("g.safetensors")];
        let files = ["--x", &path("gx.npy"), "--dy", &path("gdy.npy"), "--grads-out", &path("grads.safetensors")];
        stdout(&kcp(&[&args[..], &files[..], &["--dx", &path("gdx.npy"), "--threads", threads]].concat()));
        let file = TensorFile::read(Path::new(&path("grads.safetensors"))).unwrap();
        let mut names = file.names();
        names.sort();
        assert_eq!(names, ["bias", "factor.0", "factor.1", "factor.2"]);
        for (d, shape) in shapes.iter().enumerate() {
            let got = file.tensor(&format!("factor.{d}"), shape).unwrap();
            assert!(relative_error(&f64s(&got), &want.cores[d]) < 1e-5, "factor.{d}, {threads} threads");
        }
        assert!(relative_error(&f64s(&file.tensor("bias", &[12]).unwrap()), &want.bias) < 1e-6);
        let dx = npy::read(Path::new(&path("gdx.npy"))).unwrap();
        assert_eq!(dx.shape, [batch, 24]);
        assert!(relative_error(&f64s(&dx.data), want.dx.as_ref().unwrap()) < 1e-5);
    }
}

/// `kcp grad --cell` writes kcp's recurrent names, with what the library computes.
#[test]
fn grad_of_a_cell_writes_the_library_gradients() {
    use kcp::ir::lower_backward;
    use kcp::TensorFile;
    for (cell, kind, gates) in [("lstm", CellKind::Lstm, 4), ("gru", CellKind::Gru, 3)] {
        let (hidden, steps, batch) = (2usize, 3usize, 2usize);
        let c = compile(
            &Spec::new(&[4, 3], &[gates, 2], kcp::ir::Format::kcp(2)).with_cell(kind, hidden),
            &Options::default(),
        )
        .unwrap();
        let shapes = c.nest.factor_shapes();
        let input = common::kcp_random(&shapes, Some(gates * hidden), 2);
        let rec = Recurrent::random(kind, hidden, 3);
        let mut tensors = Weights { bias: None, ..input.clone() }.tensors("weight_ih.", &common::kcp_cores(&shapes));
        tensors.push(NamedTensor::new("bias_ih", vec![gates * hidden], input.bias.clone().unwrap()));
        tensors.push(NamedTensor::new("weight_hh", vec![gates * hidden, hidden], rec.weight_hh().to_vec()));
        tensors.push(NamedTensor::new("bias_hh", vec![gates * hidden], rec.bias_hh().to_vec()));
        save(Path::new(&path(&format!("{cell}.safetensors"))), &tensors).unwrap();
        let x: Vec<f32> = (0..steps * batch * 12).map(|k| ((k * 7 % 13) as f32 / 6.0) - 1.0).collect();
        let dh: Vec<f32> = (0..steps * batch * hidden).map(|k| ((k * 5 % 7) as f32 / 3.0) - 1.0).collect();
        npy::write(Path::new(&path("cx.npy")), &[steps, batch, 12], &x).unwrap();
        npy::write(Path::new(&path("cdh.npy")), &[steps, batch, hidden], &dh).unwrap();
        let out = format!("--out-shape={gates}x2");
        let weights = path(&format!("{cell}.safetensors"));
        let args = ["grad", "--cell", cell, "--in-shape", "4x3", &out, "--rank", "2", "--weights", &weights];
        let files = ["--x", &path("cx.npy"), "--dh", &path("cdh.npy"), "--grads-out", &path("cg.safetensors")];
        stdout(&kcp(&[&args[..], &files[..]].concat()));

        let layer = RecurrentExecutor::new(Executor::new(c.nest.clone(), input).unwrap(), rec).unwrap();
        let backward = lower_backward(&c.backward(false), &c.graph);
        let (wi, wh) = layer.gradients(&backward, &x, batch, &dh, None, Threads::ONE).unwrap();
        let file = TensorFile::read(Path::new(&path("cg.safetensors"))).unwrap();
        let g = gates * hidden;
        for (d, shape) in shapes.iter().enumerate() {
            assert_eq!(file.tensor(&format!("weight_ih.factor.{d}"), shape).unwrap(), wi.cores[d], "{cell}");
        }
        assert_eq!(file.tensor("bias_ih", &[g]).unwrap(), wi.bias.unwrap());
        assert_eq!(file.tensor("weight_hh", &[g, hidden]).unwrap(), wh.weight_hh);
        assert_eq!(file.tensor("bias_hh", &[g]).unwrap(), wh.bias_hh);
        assert_eq!(file.names().len(), 2 + 3);
    }
}

/// `kcp grad` with bad inputs: exit 2, one line, and no output file created.
#[test]
fn grad_bad_input_writes_nothing() {
    let c = spec(&[6, 5], &[4, 3], 2);
    let shapes = c.nest.factor_shapes();
    save(
        Path::new(&path("gb.safetensors")),
        &common::kcp_random(&shapes, None, 1).tensors("", &common::kcp_cores(&shapes)),
    )
    .unwrap();
    npy::write(Path::new(&path("gbx.npy")), &[2, 30], &[0.5; 60]).unwrap();
    npy::write(Path::new(&path("gbdy.npy")), &[2, 12], &[0.5; 24]).unwrap();
    npy::write(Path::new(&path("gbdy3.npy")), &[3, 12], &[0.5; 36]).unwrap();
    npy::write(Path::new(&path("gbdyw.npy")), &[2, 11], &[0.5; 22]).unwrap();
    let (out, dx) = (path("gb_out.safetensors"), path("gb_dx.npy"));
    let base = |dy: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> =
            ["grad", "--in-shape", "6x5", "--out-shape", "4x3", "--rank", "2"].map(String::from).to_vec();
        v.extend(["--weights".into(), path("gb.safetensors"), "--x".into(), path("gbx.npy")]);
        if !dy.is_empty() {
            v.extend(["--dy".into(), path(dy)]);
        }
        v.extend(["--grads-out".into(), out.clone(), "--dx".into(), dx.clone()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let nowhere = dir().join("no-such-dir").join("g.safetensors").to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("no dy", base("", &[]), "a layer needs --dy"),
        ("dh on a layer", base("gbdy.npy", &["--dh", &path("gbdy.npy")]), "a layer needs --dy"),
        ("dy rows", base("gbdy3.npy", &[]), "has 3 rows, x has 2"),
        (
            "dy width",
            base("gbdy.npy", &[]).into_iter().map(|a| a.replace("gbdy.npy", "gbdyw.npy")).collect(),
            "expected [B, M] with a last dimension of 12",
        ),
        ("missing dy", base("nope.npy", &[]), "cannot access"),
        ("cell without dh", base("gbdy.npy", &["--cell", "lstm"]), "a cell (--cell) needs --dh"),
        ("threads", base("gbdy.npy", &["--threads", "0"]), "--threads must be between 1"),
        (
            "nowhere to write",
            base("gbdy.npy", &[]).into_iter().map(|a| if a == out { nowhere.clone() } else { a }).collect(),
            "no such directory",
        ),
    ];
    for (name, args, expected) in cases {
        fails_in_one_line(name, &args, expected);
        assert!(!Path::new(&out).exists() && !Path::new(&dx).exists(), "{name}: wrote a file");
    }
}

/// `kcp run` and `kcp grad` read a block term of one, two or three blocks from the documented
/// per-block layout (`block.{k}.factor.{d}`, `block.{k}.core`), and give what the executor gives.
#[test]
fn block_terms_of_one_to_three_blocks_run_and_differentiate() {
    for blocks in 1..=3usize {
        let format = kcp::ir::Format::Bt { blocks, ranks: vec![2, 3] };
        let c = compile(&Spec::new(&[6, 5], &[6, 2], format), &Options::default()).unwrap();
        let weights = kcp::random_weights(c.network(), false, 4);
        let file = path(&format!("bt{blocks}.safetensors"));
        let tensors = weights.tensors("", &c.nest.cores);
        assert!(tensors.iter().any(|t| t.name == "block.0.factor.0" && t.shape == [6, 6, 2]));
        save(Path::new(&file), &tensors).unwrap();
        let x: Vec<f32> = (0..2 * 30).map(|k| (k % 7) as f32 / 7.0 - 0.5).collect();
        npy::write(Path::new(&path("btx.npy")), &[2, 30], &x).unwrap();
        npy::write(Path::new(&path("btdy.npy")), &[2, 12], &[0.25; 24]).unwrap();
        let blocks_arg = blocks.to_string();
        let layer =
            ["--in-shape", "6x5", "--out-shape", "6x2", "--format", "bt", "--blocks", &blocks_arg, "--ranks", "2x3"];
        let y = path("bty.npy");
        stdout(&kcp(&[&["run"][..], &layer, &["--weights", &file, "--x", &path("btx.npy"), "--y", &y]].concat()));
        let executor = Executor::new(c.nest.clone(), weights).unwrap();
        let mut want = vec![0.0f32; 24];
        executor.forward(&x, &mut want).unwrap();
        assert_eq!(npy::read(Path::new(&y)).unwrap().data, want, "{blocks} blocks");
        let grads = path("btg.safetensors");
        let files = ["--weights", &file, "--x", &path("btx.npy"), "--dy", &path("btdy.npy"), "--grads-out", &grads];
        stdout(&kcp(&[&["grad"][..], &layer, &files].concat()));
        let names = kcp::TensorFile::read(Path::new(&grads)).unwrap().names();
        assert_eq!(names.len(), 3 * blocks, "{blocks} blocks: {names:?}");
    }
}

/// `kcp compress --format cp` fits CP vectors by ALS: a weight of CP rank 2 comes back exactly,
/// under the format's names, and the error reported is the true one.
#[test]
fn compress_cp_fits_by_als() {
    use kcp::ir::network::{eval, Format, Network};
    use kcp::ir::Batch;
    let (in_shape, out_shape) = ([3usize, 4, 2], [2usize, 3, 2]);
    let truth = Network::new(&in_shape, &out_shape, Format::Cp { rank: 2 }, Batch::Symbolic).unwrap();
    let mut rng = kcp::ir::test::Rng::new(19);
    let w64 = eval::dense_weight(&truth, &eval::random_cores(&truth, &mut rng));
    let w: Vec<f32> = w64.iter().map(|&v| v as f32).collect();
    npy::write(Path::new(&path("wcp.npy")), &[12, 24], &w).unwrap();
    let file = path("cp.safetensors");
    let args = ["compress", "--format", "cp", "--rank", "2", "--in-shape", "3x4x2", "--out-shape", "2x3x2"];
    let dense = path("wcp.npy");
    let args = [&args[..], &["--dense", &dense, "--weights-out", &file, "--iters", "500", "--json"]].concat();
    let v: serde_json::Value = serde_json::from_str(&stdout(&kcp(&args))).unwrap();
    assert_eq!(v["format"], "cp");
    let loaded = Weights::load(Path::new(&file), "", &truth.core_shapes(), None).unwrap();
    let cores: Vec<Vec<f64>> = loaded.cores.iter().map(|c| c.iter().map(|&v| f64::from(v)).collect()).collect();
    let fitted = eval::dense_weight(&truth, &cores);
    let norm = w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    let error = fitted.iter().zip(&w).map(|(a, &b)| (a - f64::from(b)).powi(2)).sum::<f64>().sqrt() / norm;
    assert!(error < 1e-4, "true error {error}");
    assert!((v["relative_error"].as_f64().unwrap() - error).abs() < 1e-5);
}

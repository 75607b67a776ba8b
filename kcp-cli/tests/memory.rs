//! Every allocation that scales with the rank, the batch, a mode or a file goes through the
//! memory check: the commands (run and grad, of a layer and of an LSTM on it, and compress)
//! run on random layers up to rank 65,536 and eight modes with
//! `KCP_MAX_MEMORY` at 64 MiB, inside an address-space limit of 1.5 GiB (`ulimit -v`), so an
//! allocation that escaped the check would abort the process. Each run ends with exit code 0,
//! or 2 and one line; never a signal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use kcp::ir::{Batch, Format};
use kcp::{npy, save, NamedTensor, Weights};
use proptest::prelude::*;

/// `kcp args` under the limits: exit code 0, or 2 with one line on stderr.
fn bounded(args: &[String]) -> Result<(), TestCaseError> {
    let line = args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ");
    let script = format!("ulimit -v 1572864 && exec '{}' {line}", env!("CARGO_BIN_EXE_kcp"));
    let out = Command::new("sh").arg("-c").arg(script).env("KCP_MAX_MEMORY", "67108864").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Ok(()),
        Some(2) => {
            prop_assert_eq!(stderr.trim_end().lines().count(), 1, "{}: {}", line, stderr);
            prop_assert!(!stderr.contains("panicked"), "{}: {}", line, stderr);
            Ok(())
        }
        other => Err(TestCaseError::fail(format!("{line}: {other:?} (a signal: an unchecked allocation?)\n{stderr}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn large_layers_stay_within_the_memory_check(
        modes in 1usize..=8,
        dims in prop::collection::vec((1usize..=4, 1usize..=4), 8),
        rank in prop_oneof![Just(1usize), Just(7), Just(1000), Just(65536)],
        rows in 1usize..=3,
    ) {
        let (n, m): (Vec<usize>, Vec<usize>) = dims[..modes].iter().copied().unzip();
        let Ok(network) = kcp::ir::network::Network::new(&n, &m, Format::kcp(rank), Batch::Symbolic) else {
            return Ok(());
        };
        // Weights of at most 64 MiB on disk.
        prop_assume!(network.params() <= 16 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let cores = network.core_shapes();
        save(Path::new(&path("w.safetensors")), &Weights::zeros(&cores, None).tensors("", &cores)).unwrap();
        let (nn, mm) = (network.input_size(), network.output_size());
        npy::write(Path::new(&path("x.npy")), &[rows, nn], &vec![0.5; rows * nn]).unwrap();
        npy::write(Path::new(&path("dy.npy")), &[rows, mm], &vec![0.5; rows * mm]).unwrap();
        let shape = |s: &[usize]| s.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
        let layer = vec![
            "--in-shape".to_string(), shape(&n), "--out-shape".into(), shape(&m), "--rank".into(), rank.to_string(),
            "--weights".into(), path("w.safetensors"), "--x".into(), path("x.npy"), "--threads".into(), "2".into(),
        ];
        let mut run = vec!["run".to_string()];
        run.extend(layer.clone());
        run.extend(["--y".to_string(), path("y.npy")]);
        bounded(&run)?;
        let mut grad = vec!["grad".to_string()];
        grad.extend(layer.clone());
        grad.extend(["--dy".to_string(), path("dy.npy"), "--grads-out".into(), path("g.safetensors"), "--dx".into(), path("dx.npy")]);
        bounded(&grad)?;
        // compress: a dense weight of the layer's shapes (at most 4M entries) fitted at its rank.
        if mm * nn <= 4 << 20 {
            npy::write(Path::new(&path("dense.npy")), &[mm, nn], &vec![0.25; mm * nn]).unwrap();
            let mut compress = vec!["compress".to_string()];
            compress.extend(layer[..6].iter().cloned());
            compress.extend(["--dense".to_string(), path("dense.npy"), "--weights-out".into(), path("fit.safetensors")]);
            compress.extend(["--iters".to_string(), "2".into()]);
            bounded(&compress)?;
        }
        // An LSTM on the layer (its gates fill the output), hidden at most 256.
        if mm % 4 == 0 && mm / 4 <= 256 {
            let hidden = mm / 4;
            let mut tensors = Weights::zeros(&cores, None).tensors("weight_ih.", &cores);
            tensors.push(NamedTensor::new("bias_ih", vec![mm], vec![0.0; mm]));
            tensors.push(NamedTensor::new("weight_hh", vec![mm, hidden], vec![0.0; mm * hidden]));
            tensors.push(NamedTensor::new("bias_hh", vec![mm], vec![0.0; mm]));
            save(Path::new(&path("cell.safetensors")), &tensors).unwrap();
            npy::write(Path::new(&path("x3.npy")), &[rows, 1, nn], &vec![0.5; rows * nn]).unwrap();
            npy::write(Path::new(&path("dh.npy")), &[rows, 1, hidden], &vec![0.5; rows * hidden]).unwrap();
            let mut cell = vec!["--cell".to_string(), "lstm".into()];
            cell.extend(layer[..6].iter().cloned());
            cell.extend(["--weights".to_string(), path("cell.safetensors"), "--x".into(), path("x3.npy")]);
            let mut run = vec!["run".to_string()];
            run.extend(cell.clone());
            run.extend(["--y".to_string(), path("h.npy")]);
            bounded(&run)?;
            let mut grad = vec!["grad".to_string()];
            grad.extend(cell);
            grad.extend(["--dh".to_string(), path("dh.npy"), "--grads-out".into(), path("gc.safetensors")]);
            bounded(&grad)?;
        }
    }
}

//! The `kcp` command line: plan, emit, run and compress KCP layers from shapes and weight files
//! (the contract of docs/cli.md). Bad input gives one line on stderr and exit code 2.

mod tune;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use kcp::compress::{compress, compress_cp, tt_svd, FitOptions};
use kcp::ir::network::{orders, Format, FormatEntry, KeyMismatch, Network, RankArgs, FORMATS};
use kcp::ir::{compile, emit_layer, Compiled, Item, LoopNest, Options, Spec};
use kcp::npy;
use kcp::{save, CellKind, Executor, NamedTensor, RecurrentExecutor, State, TensorFile, Threads, Weights};

#[derive(Parser)]
#[command(name = "kcp", version, about = "Plan, generate, run and compress Kronecker CP (KCP) compressed layers")]
#[command(long_about = "Plan, generate, run and compress Kronecker CP (KCP) compressed layers.\n\n\
A KCP layer replaces a dense weight W [M, N] by rank-R factor stacks A_d [R, m_d, n_d] with \
W = sum_r A_1[r] (x) ... (x) A_D[r]; shapes are written like 8x20x20x18 (N = 57600). \
`plan` and `run` also take the other formats of the comparison (--format cp, tt, tr, bt, ht, \
with their rank flags), as does `emit`; `compress` fits KCP and CP (ALS) and TT (TT-SVD) layers; `grad` \
takes KCP layers only.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a layer costs: parameters, MACs of the paper's two orders and of the planned one
    Plan {
        #[command(flatten)]
        layer: LayerArgs,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
        /// Also plan the backward pass: the gradients of every factor and of x, planned together
        #[arg(long)]
        backward: bool,
    },
    /// Print the Rust code `kcp_layer!` generates for a layer, formatted
    Emit {
        #[command(flatten)]
        layer: LayerArgs,
        /// The name of the generated struct
        #[arg(long, default_value = "KcpLayer")]
        name: String,
    },
    /// Run a layer (or an LSTM/GRU) on activations from a .npy file
    Run {
        #[command(flatten)]
        layer: LayerArgs,
        /// Run a recurrent layer whose input weight is this KCP layer (x [T, B, N] -> h [T, B, H])
        #[arg(long, value_enum)]
        cell: Option<Cell>,
        /// The weights, safetensors: factor.0.. and optional bias (cells: weight_ih.factor.0.., bias_ih, weight_hh, bias_hh)
        #[arg(long)]
        weights: PathBuf,
        /// The input activations, float32 .npy: [B, N] (cells: [T, B, N])
        #[arg(long)]
        x: PathBuf,
        /// Where to write the output, float32 .npy: [B, M] (cells: all hidden states [T, B, H])
        #[arg(long)]
        y: PathBuf,
        /// Threads to split the batch over (default 1)
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Gradients of a layer (L = sum(dy * y)) or of a cell (L = sum over t of sum(dh[t] * h[t])), by the planned backward pass
    Grad {
        #[command(flatten)]
        layer: LayerArgs,
        /// The layer is the input weight of a recurrent cell (x [T, B, N], dh [T, B, H], zero initial state)
        #[arg(long, value_enum)]
        cell: Option<Cell>,
        /// The weights, safetensors, as `kcp run` reads them
        #[arg(long)]
        weights: PathBuf,
        /// The input activations, float32 .npy: [B, N] (cells: [T, B, N])
        #[arg(long)]
        x: PathBuf,
        /// dL/dy, float32 .npy [B, M] (layers only)
        #[arg(long)]
        dy: Option<PathBuf>,
        /// dL/dh of every step, float32 .npy [T, B, H] (cells only)
        #[arg(long)]
        dh: Option<PathBuf>,
        /// Where to write the gradients (safetensors, under the weights' own names)
        #[arg(long)]
        grads_out: PathBuf,
        /// Where to write dL/dx (float32 .npy of x's shape)
        #[arg(long)]
        dx: Option<PathBuf>,
        /// Threads to split the batch rows over (default 1)
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Fit KCP factors or, with --format cp, CP vectors (ALS), or with --format tt --ranks, TT cores (TT-SVD) to a dense weight (a .npy [M, N], or a PyTorch model saved as safetensors); other formats cannot be fitted yet
    Compress {
        #[command(flatten)]
        layer: LayerArgs,
        /// The dense weight: .npy [M, N], or .safetensors with `weight` [M, N] (nn.Linear) or, with --cell, `weight_ih_l0` (nn.LSTM / nn.GRU)
        #[arg(long)]
        dense: PathBuf,
        /// Read a PyTorch nn.LSTM / nn.GRU (safetensors) and write kcp's recurrent names
        #[arg(long, value_enum)]
        cell: Option<Cell>,
        /// Where to write the factors (safetensors)
        #[arg(long)]
        weights_out: PathBuf,
        /// The most alternating-least-squares sweeps (KCP)
        #[arg(long, default_value_t = 100)]
        iters: usize,
        /// Seed of the initial factors (KCP; TT-SVD is deterministic)
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Choose a layer for a parameter budget: tensorizations, formats and ranks planned, the
    /// fastest timed on this machine, the Pareto front of parameters against time
    Tune(tune::TuneArgs),
}

#[derive(Args)]
struct LayerArgs {
    /// Input shape n_1 x ... x n_D, e.g. 8x20x20x18
    #[arg(long, value_parser = parse_shape)]
    in_shape: Shape,
    /// Output shape m_1 x ... x m_D, e.g. 4x4x4x16
    #[arg(long, value_parser = parse_shape)]
    out_shape: Shape,
    /// The weight's tensor format (docs/formats.md; plan, emit, run and grad take every format,
    /// compress kcp, cp and tt)
    #[arg(long, default_value = "kcp", value_parser = format_parser())]
    format: &'static FormatEntry,
    /// Rank R: the number of Kronecker terms (kcp), of rank-1 terms (cp), every tree edge's rank (ht)
    #[arg(long)]
    rank: Option<usize>,
    /// Ranks written like 1x4x4x4x1: r_0..r_D with r_0 = r_D = 1 (tt), p_0..p_{2D-1} (tr), R_1..R_D (bt)
    #[arg(long, value_parser = parse_ranks)]
    ranks: Option<Shape>,
    /// The number of blocks K (bt)
    #[arg(long)]
    blocks: Option<usize>,
    /// Batch size the costs are for (plan, emit)
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

/// `--format`: a name of the table of formats.
fn format_parser() -> impl TypedValueParser<Value = &'static FormatEntry> {
    PossibleValuesParser::new(FORMATS.iter().map(|entry| entry.name))
        .map(|name| Format::entry(&name).unwrap_or(&FORMATS[0]))
}

impl LayerArgs {
    /// The format and its ranks from the flags: each format takes exactly its own.
    fn format(&self) -> Result<Format> {
        let entry = self.format;
        let args = RankArgs { rank: self.rank, ranks: self.ranks.clone().map(|s| s.0), blocks: self.blocks };
        entry.checked(args).map_err(|mismatch| match mismatch {
            KeyMismatch::Unexpected(key) => format!("--format {} takes no --{}", entry.name, key.name()),
            KeyMismatch::Missing(key) => format!("--format {} needs --{}", entry.name, key.name()),
        })
    }

    /// The spec of the layer (of a cell's input projection with `cell`), for `--batch` rows.
    fn spec(&self, cell: Option<(CellKind, usize)>) -> Result<Spec> {
        let mut spec = Spec::new(&self.in_shape.0, &self.out_shape.0, self.format()?).with_batch(self.batch);
        if let Some((kind, hidden)) = cell {
            spec = spec.with_cell(kind, hidden);
        }
        Ok(spec)
    }

    /// The network of a layer of any format.
    fn network(&self) -> Result<Network> {
        let batch = kcp::ir::Batch::Fixed(self.batch);
        Network::new(&self.in_shape.0, &self.out_shape.0, self.format()?, batch).map_err(|e| e.to_string())
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    fn kind(self) -> CellKind {
        match self {
            Cell::Lstm => CellKind::Lstm,
            Cell::Gru => CellKind::Gru,
        }
    }
}

#[derive(Clone, Debug)]
struct Shape(Vec<usize>);

fn parse_ranks(text: &str) -> Result<Shape> {
    text.split('x')
        .map(|d| d.trim().parse::<usize>().map_err(|_| format!("expected ranks like 1x4x4x4x1, found `{text}`")))
        .collect::<Result<Vec<_>>>()
        .map(Shape)
}

fn parse_shape(text: &str) -> Result<Shape> {
    text.split('x')
        .map(|d| d.trim().parse::<usize>().map_err(|_| format!("expected dimensions like 8x20x20x18, found `{text}`")))
        .collect::<Result<Vec<_>>>()
        .map(Shape)
}

/// Errors end the program with their message on one line and exit code 2.
type Result<T> = std::result::Result<T, String>;

/// Plan and lower a layer of any format: the one pipeline every command runs.
fn compile_layer(layer: &LayerArgs) -> Result<Compiled> {
    compile(&layer.spec(None)?, &Options::default()).map_err(|errors| errors.to_string())
}

/// The hidden size of a cell whose gates fill the output shape.
fn hidden(layer: &LayerArgs, kind: CellKind) -> Result<usize> {
    let Some(m) = layer.out_shape.0.iter().try_fold(1usize, |m, &d| m.checked_mul(d)) else {
        return Err("out_shape overflows usize".into());
    };
    if m == 0 || !m.is_multiple_of(kind.gates()) {
        return Err(format!("out_shape multiplies to {m}, not a multiple of the {} gates of the cell", kind.gates()));
    }
    Ok(m / kind.gates())
}

/// `kcp plan`: the layer's costs, the reference implementations' orders beside the planned
/// one, the plan (and the backward plan).
fn plan(layer: &LayerArgs, as_json: bool, backward: bool) -> Result<String> {
    let compiled = compile_layer(layer)?;
    if as_json {
        return Ok(format!("{}\n", kcp::report::plan_json(&compiled, layer.batch, backward)));
    }
    let (network, plan) = (compiled.network(), &compiled.plan);
    let back = backward.then(|| compiled.backward(true));
    let dense_macs = layer.batch as u64 * network.dense_params();
    let references: Vec<_> =
        orders::references(network).into_iter().map(|r| (r.key, r.name, r.macs(network))).collect();
    let lanes = compiled.lanes.as_ref().map_or(1, |lanes| lanes.lanes);
    let mut out = format!("{}\n", compiled.spec);
    let cores: Vec<String> =
        network.cores().iter().enumerate().map(|(k, c)| format!("{} {:?}", c.name, network.shape(k))).collect();
    out += &format!("cores (A1, A2, ... in the plan): {}\n", cores.join(", "));
    out += &format!(
        "parameters {} (dense {}, {:.1}x compression)\n",
        network.params(),
        network.dense_params(),
        network.compression_ratio()
    );
    let refs: String = references.iter().map(|(_, name, macs)| format!(", {name} {macs}")).collect();
    out += &format!("MACs per call: dense {dense_macs}{refs}, planned {}\n{plan}\n", plan.macs());
    if lanes > 1 {
        out += &format!("runs whole blocks of {lanes} batch rows interleaved (the batch index innermost)\n");
    }
    if let Some(split) = &compiled.split {
        let [p0, p1] = [0, 1].map(|k| split.parts[k].macs_per_row);
        out += &format!("a single row on two threads: {}, parts of {p0} and {p1} MACs\n", split.row);
    }
    if let Some(back) = &back {
        out += &format!("backward (every core's gradient and dx, per call of batch {}):\n{back}\n", layer.batch);
    }
    Ok(out)
}

fn emit(layer: &LayerArgs, name: &str) -> Result<String> {
    let ident = syn::parse_str::<proc_macro2::Ident>(name).map_err(|_| format!("`{name}` is not a Rust identifier"))?;
    let item = Item {
        attrs: quote::quote!(),
        vis: quote::quote!(pub),
        name: ident,
        threads: None,
        backward: None,
        files: true,
    };
    let tokens = emit_layer(&compile_layer(layer)?, &item);
    let file: syn::File = syn::parse2(tokens).map_err(|e| format!("internal error: {e}"))?;
    Ok(prettyplease::unparse(&file))
}

fn read_npy(path: &Path, dims: usize, inner: usize, what: &str) -> Result<npy::Array> {
    let array = npy::read(path).map_err(|e| e.to_string())?;
    if array.shape.len() != dims || array.shape.last() != Some(&inner) {
        return Err(format!(
            "{} has shape {:?}, expected {what} with a last dimension of {inner}",
            path.display(),
            array.shape
        ));
    }
    Ok(array)
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().map_err(|e| e.to_string())?;
    Ok(pool.install(f))
}

fn run(layer: &LayerArgs, cell: Option<Cell>, weights: &Path, x: &Path, y: &Path, threads: usize) -> Result<String> {
    let compiled = compile_layer(layer)?;
    let (nest, lanes, split) = (compiled.nest, compiled.lanes, compiled.split);
    let (n, m) = (nest.input_size(), nest.output_size());
    match cell {
        None => {
            let file = TensorFile::read(weights).map_err(|e| e.to_string())?;
            let bias = file.contains("bias").then_some(m);
            let loaded = Weights::from_file(&file, "", &nest.cores, bias).map_err(|e| e.to_string())?;
            let input = read_npy(x, 2, n, "[B, N]")?;
            let batch = input.shape[0];
            fits_in_memory(&nest, lanes.as_ref(), None, batch, threads)?;
            let executor = Executor::new(nest, loaded)
                .and_then(|e| e.interleaved(lanes).split(split))
                .map_err(|e| e.to_string())?;
            let mut out = zeros(&[batch, m], "y")?;
            in_pool(threads, || executor.forward_par(&input.data, &mut out, Threads::All))
                .and_then(|r| r.map_err(|e| e.to_string()))?;
            npy::write(y, &[batch, m], &out).map_err(|e| e.to_string())?;
            Ok(String::new())
        }
        Some(cell) => {
            let kind = cell.kind();
            let hidden = hidden(layer, kind)?;
            let layer = RecurrentExecutor::load(weights, nest.clone(), kind, hidden).map_err(|e| e.to_string())?;
            let input = read_npy(x, 3, n, "[T, B, N]")?;
            let (steps, batch) = (input.shape[0], input.shape[1]);
            fits_in_memory(&nest, lanes.as_ref(), None, steps.saturating_mul(batch), threads)?;
            let layer = layer.interleaved(lanes);
            let mut hs = zeros(&[steps, batch, hidden], "the hidden states")?;
            let mut state = State::zeros(kind, batch, hidden);
            in_pool(threads, || {
                if threads > 1 {
                    layer.forward_par(&input.data, batch, &mut hs, &mut state)
                } else {
                    layer.forward(&input.data, batch, &mut hs, &mut state)
                }
            })
            .and_then(|r| r.map_err(|e| e.to_string()))?;
            npy::write(y, &[steps, batch, hidden], &hs).map_err(|e| e.to_string())?;
            Ok(String::new())
        }
    }
}

/// `kcp grad`: read everything, check every shape, compute, then write dx (if asked) and the
/// gradients, each completely or not at all.
#[allow(clippy::too_many_arguments)]
fn grad(
    layer: &LayerArgs,
    cell: Option<Cell>,
    weights: &Path,
    x: &Path,
    (dy, dh): (Option<&Path>, Option<&Path>),
    grads_out: &Path,
    dx_out: Option<&Path>,
    threads: usize,
) -> Result<String> {
    for out in std::iter::once(grads_out).chain(dx_out) {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() || out.is_dir() {
            return Err(format!("cannot write {}: no such directory, or it is one", out.display()));
        }
    }
    let compiled = compile_layer(layer)?;
    let backward = kcp::ir::lower_backward(&compiled.backward(dx_out.is_some()), &compiled.graph);
    let nest = compiled.nest;
    let (n, m) = (nest.input_size(), nest.output_size());
    let (tensors, dx, x_shape) = match (cell, dy, dh) {
        (None, Some(dy), None) => {
            let file = TensorFile::read(weights).map_err(|e| e.to_string())?;
            let bias = file.contains("bias").then_some(m);
            let loaded = Weights::from_file(&file, "", &nest.cores, bias).map_err(|e| e.to_string())?;
            let input = read_npy(x, 2, n, "[B, N]")?;
            let grad_y = read_npy(dy, 2, m, "[B, M]")?;
            if grad_y.shape[0] != input.shape[0] {
                return Err(format!("{} has {} rows, x has {}", dy.display(), grad_y.shape[0], input.shape[0]));
            }
            fits_in_memory(&nest, None, Some(&backward), input.shape[0].saturating_mul(2), threads)?;
            let cores = nest.cores.clone();
            let executor = Executor::new(nest, loaded).map_err(|e| e.to_string())?;
            let mut dx = zeros(if dx_out.is_some() { &input.shape } else { &[0] }, "dx")?;
            let dx_slice = dx_out.is_some().then_some(&mut dx[..]);
            let grads =
                in_pool(threads, || executor.gradients(&backward, &input.data, &grad_y.data, dx_slice, Threads::All))
                    .and_then(|r| r.map_err(|e| e.to_string()))?;
            (grads.tensors("", &cores), dx, input.shape)
        }
        (Some(cell), None, Some(dh)) => {
            let kind = cell.kind();
            let hidden = hidden(layer, kind)?;
            let cores = nest.cores.clone();
            let input = read_npy(x, 3, n, "[T, B, N]")?;
            let grad_h = read_npy(dh, 3, hidden, "[T, B, H]")?;
            if grad_h.shape[..2] != input.shape[..2] {
                return Err(format!("{} has shape {:?}, x has {:?}", dh.display(), grad_h.shape, input.shape));
            }
            let (steps, batch) = (input.shape[0], input.shape[1]);
            let rows = steps.saturating_mul(batch);
            fits_in_memory(&nest, None, Some(&backward), rows.saturating_mul(3), threads)?;
            let recurrent = RecurrentExecutor::load(weights, nest, kind, hidden).map_err(|e| e.to_string())?;
            let mut dx = zeros(if dx_out.is_some() { &input.shape } else { &[0] }, "dx")?;
            let dx_slice = dx_out.is_some().then_some(&mut dx[..]);
            let (input_grads, cell_grads) = in_pool(threads, || {
                recurrent.gradients(&backward, &input.data, batch, &grad_h.data, dx_slice, Threads::All)
            })
            .and_then(|r| r.map_err(|e| e.to_string()))?;
            let g = kind.gates() * hidden;
            let mut tensors = Weights { bias: None, ..input_grads.clone() }.tensors("weight_ih.", &cores);
            tensors.push(NamedTensor::new("weight_hh", vec![g, hidden], cell_grads.weight_hh));
            tensors.push(NamedTensor::new("bias_ih", vec![g], input_grads.bias.unwrap_or_default()));
            tensors.push(NamedTensor::new("bias_hh", vec![g], cell_grads.bias_hh));
            (tensors, dx, input.shape)
        }
        (None, _, _) => return Err("a layer needs --dy (and no --dh); a cell (--cell) needs --dh".into()),
        (Some(_), _, _) => return Err("a cell (--cell) needs --dh (and no --dy)".into()),
    };
    if let Some(path) = dx_out {
        npy::write(path, &x_shape, &dx).map_err(|e| e.to_string())?;
    }
    save(grads_out, &tensors).map_err(|e| e.to_string())?;
    Ok(String::new())
}

/// A zeroed buffer of the product of `dims` floats, or an error that says what it is and how
/// much memory it needs (never an abort).
fn zeros(dims: &[usize], what: &str) -> Result<Vec<f32>> {
    let len = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let bytes = len.and_then(|n| n.checked_mul(4));
    let (Some(len), Some(bytes)) = (len, bytes) else {
        return Err(format!("{what} of shape {dims:?} has more elements than memory can hold"));
    };
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| format!("needs {} for {what}, more than can be allocated", gib(bytes as u128)))?;
    v.resize(len, 0.0);
    Ok(v)
}

/// What the generic executor allocates for a layer and a batch on `threads` threads: x and y,
/// two scratch buffers and an interleaved block per thread, the pre-products: an error if that
/// is more than the memory the system has available ([`available_memory`]).
fn fits_in_memory(
    nest: &LoopNest,
    lanes: Option<&LoopNest>,
    backward: Option<&kcp::BackwardProgram>,
    rows: usize,
    threads: usize,
) -> Result<()> {
    let lanes = lanes.map_or(0, |l| l.lanes * (l.input_size() + l.output_size() + 2 * l.scratch_len));
    // A backward pass: per thread a row's temporaries, kept intermediates and recomputed y;
    // the gradients, once per part of the batch and once more for the result.
    let params = nest.cores.iter().map(|c| c.len() as u128).sum::<u128>();
    let (back_per_thread, grads) = backward.map_or((0, 0), |b| {
        let row = (b.temps_len() + b.kept_len() + nest.output_size()) as u128;
        (row, (kcp::GRAD_PARTS.min(rows.max(1)) as u128 + 1) * params)
    });
    let per_thread = 2 * nest.scratch_len as u128 + lanes as u128 + back_per_thread;
    let floats = threads.max(1) as u128 * per_thread + nest.prep_lens.iter().sum::<usize>() as u128 + grads;
    let bytes = 4 * floats + 4 * rows as u128 * (nest.input_size() + nest.output_size()) as u128;
    match available_memory() {
        Some(available) if bytes > available => Err(format!(
            "this layer needs {} of memory for {rows} rows (scratch {} per thread), more than the {} available",
            gib(bytes),
            gib(4 * nest.scratch_len as u128),
            gib(available)
        )),
        _ => Ok(()),
    }
}

/// The memory a command may use, in bytes: `KCP_MAX_MEMORY` (bytes) if set, else Linux's
/// MemAvailable (`/proc/meminfo`); `None` (unchecked) where neither says.
fn available_memory() -> Option<u128> {
    if let Some(limit) = std::env::var("KCP_MAX_MEMORY").ok().and_then(|v| v.trim().parse().ok()) {
        return Some(limit);
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[allow(clippy::too_many_arguments)]
fn compress_cmd(
    layer: &LayerArgs,
    dense: &Path,
    cell: Option<Cell>,
    out: &Path,
    iters: usize,
    seed: u64,
    as_json: bool,
) -> Result<String> {
    let network = layer.network()?;
    let (m, n) = (network.output_size(), network.input_size());
    if !matches!(network.format(), Format::Kcp { .. } | Format::Cp { .. } | Format::Tt { .. }) {
        let name = network.format().name();
        return Err(format!("kcp compress fits --format kcp or cp (ALS) or tt (TT-SVD) layers, not {name}"));
    }
    let is_safetensors = dense.extension().is_some_and(|e| e == "safetensors");
    // The dense weight, and what else the output file carries over (PyTorch's names -> kcp's).
    let (w, prefix, extra): (Vec<f32>, &str, Vec<NamedTensor>) = if is_safetensors {
        let file = TensorFile::read(dense).map_err(|e| e.to_string())?;
        let get = |name: &str, shape: &[usize]| file.tensor(name, shape).map_err(|e| e.to_string());
        match cell {
            Some(cell) => {
                let hidden = hidden(layer, cell.kind())?;
                let extra = vec![
                    NamedTensor::new("bias_ih", vec![m], get("bias_ih_l0", &[m])?),
                    NamedTensor::new("weight_hh", vec![m, hidden], get("weight_hh_l0", &[m, hidden])?),
                    NamedTensor::new("bias_hh", vec![m], get("bias_hh_l0", &[m])?),
                ];
                (get("weight_ih_l0", &[m, n])?, "weight_ih.", extra)
            }
            None => {
                let bias = if file.contains("bias") {
                    vec![NamedTensor::new("bias", vec![m], get("bias", &[m])?)]
                } else {
                    vec![]
                };
                (get("weight", &[m, n])?, "", bias)
            }
        }
    } else {
        if cell.is_some() {
            return Err(
                "--cell needs the PyTorch model as .safetensors (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0)"
                    .into(),
            );
        }
        let array = npy::read(dense).map_err(|e| e.to_string())?;
        if array.shape != [m, n] {
            return Err(format!("{} has shape {:?}, expected [{m}, {n}]", dense.display(), array.shape));
        }
        (array.data, "", vec![])
    };
    let (weights, relative_error, iterations) = match network.format() {
        Format::Tt { ranks } => {
            let fit = tt_svd(&w, network.in_shape(), network.out_shape(), ranks).map_err(|e| e.to_string())?;
            (fit.weights, fit.relative_error, None)
        }
        _ => {
            let fit = fit_kcp(&network, &w, iters, seed)?;
            (fit.weights, fit.relative_error, Some(fit.iterations))
        }
    };
    let mut tensors = weights.tensors(prefix, &network.core_shapes());
    tensors.extend(extra);
    save(out, &tensors).map_err(|e| e.to_string())?;
    if as_json {
        let mut value = json!({
            "format": network.format().name(),
            "relative_error": relative_error,
            "params": network.params(),
            "compression_ratio": network.compression_ratio(),
        });
        if let Some(iterations) = iterations {
            value["iterations"] = json!(iterations);
        }
        Ok(format!("{value}\n"))
    } else {
        let how = iterations.map_or_else(|| "by TT-SVD".to_string(), |k| format!("after {k} sweeps"));
        Ok(format!(
            "relative error {relative_error:.3e} {how}; {} parameters ({:.1}x compression) written to {}\n",
            network.params(),
            network.compression_ratio(),
            out.display()
        ))
    }
}

/// The cores of `network` (a KCP or CP layer) fitted to `w` by alternating least squares, with
/// a progress bar.
fn fit_kcp(network: &Network, w: &[f32], iters: usize, seed: u64) -> Result<kcp::compress::Fit> {
    let (rank, cp) = match *network.format() {
        Format::Kcp { rank } => (rank, false),
        Format::Cp { rank } => (rank, true),
        _ => return Err("an ALS fit of a format other than kcp and cp".into()),
    };
    let bar = indicatif::ProgressBar::new(iters as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} sweeps, relative error {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // ALS holds R x R Gram matrices and [m_d n_d, R] factors in f64, and W in f64 (a rank
    // above the largest useful one is compress's own error).
    let r = rank as u128;
    let modes: u128 = network.in_shape().iter().zip(network.out_shape()).map(|(&n, &m)| n as u128 * m as u128).sum();
    let needs = 8 * (4 * r * r + 3 * r * modes + w.len() as u128);
    if let Some(available) = available_memory().filter(|&a| needs > a) {
        return Err(format!(
            "a rank-{r} fit needs {} of memory, more than the {} available",
            gib(needs),
            gib(available)
        ));
    }
    let options = FitOptions { iters, seed, ..FitOptions::default() };
    let mut progress = |k: usize, e: f64| {
        bar.set_position(k as u64);
        bar.set_message(format!("{e:.3e}"));
    };
    let (n, m) = (network.in_shape(), network.out_shape());
    let fit = if cp {
        compress_cp(w, n, m, rank, &options, &mut progress)
    } else {
        compress(w, n, m, rank, &options, &mut progress)
    }
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    Ok(fit)
}

/// The most threads `--threads` may ask for.
const MAX_THREADS: usize = 256;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = error.print();
                    return ExitCode::SUCCESS;
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = error.print();
                    return ExitCode::from(2);
                }
                _ => {}
            }
            // clap's first paragraph, on one line: `error: the following required arguments
            // were not provided: --rank <RANK>`.
            let text = error.render().to_string();
            let paragraph: Vec<&str> =
                text.lines().skip_while(|l| l.trim().is_empty()).take_while(|l| !l.trim().is_empty()).collect();
            let line = paragraph.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
            eprintln!("{}", one_line(if line.is_empty() { "error: bad arguments" } else { &line }));
            return ExitCode::from(2);
        }
    };
    // A file a command writes that was not there before: removed again if the command's
    // report then cannot be written, so that an error leaves nothing new.
    let new_file = match &cli.command {
        Command::Compress { weights_out, .. } if !weights_out.exists() => Some(weights_out.clone()),
        _ => None,
    };
    let result = match &cli.command {
        Command::Plan { layer, json, backward } => plan(layer, *json, *backward),
        Command::Emit { layer, name } => emit(layer, name),
        Command::Run { threads, .. } if !(1..=MAX_THREADS).contains(threads) => {
            Err(format!("--threads must be between 1 and {MAX_THREADS}, found {threads}"))
        }
        Command::Run { layer, cell, weights, x, y, threads } => run(layer, *cell, weights, x, y, *threads),
        Command::Grad { threads, .. } if !(1..=MAX_THREADS).contains(threads) => {
            Err(format!("--threads must be between 1 and {MAX_THREADS}, found {threads}"))
        }
        Command::Grad { layer, cell, weights, x, dy, dh, grads_out, dx, threads } => {
            grad(layer, *cell, weights, x, (dy.as_deref(), dh.as_deref()), grads_out, dx.as_deref(), *threads)
        }
        Command::Compress { layer, dense, cell, weights_out, iters, seed, json } => {
            compress_cmd(layer, dense, *cell, weights_out, *iters, *seed, *json)
        }
        Command::Tune(args) => tune::tune_cmd(args),
    };
    let text = match result {
        Ok(text) => text,
        Err(message) => {
            eprintln!("error: {}", one_line(&message));
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped reading (`kcp plan | head -1`) is not an error, as for any
        // Unix tool.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(path) = new_file {
                let _ = std::fs::remove_file(path);
            }
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(2)
        }
    }
}

/// A message as one line: a line break or other control character (from a path or a name)
/// is shown escaped.
fn one_line(message: &str) -> String {
    message.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

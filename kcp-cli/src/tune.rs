//! `kcp tune`: the tensorization, format and ranks of a layer for a parameter budget, planned
//! and measured on this machine (`kcp::tune`), printed as a table, JSON, an SVG of the Pareto
//! front, or the `kcp_layer!` declaration of the fastest layer.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use kcp::compress::{compress, compress_cp, tt_svd, FitOptions};
use kcp::ir::network::{Format, RankArgs};
use kcp::tune::{tune, Candidate, Fit, Tensorization, TuneOptions, Tuning, FORMATS};
use kcp::{npy, Threads};

use crate::{parse_shape, Result, Shape, MAX_THREADS};

/// The flags of `kcp tune`.
#[derive(Args)]
pub struct TuneArgs {
    /// N, the layer's inputs (57600 for a 160x120x3 frame)
    #[arg(long)]
    in_size: usize,
    /// M, the layer's outputs (1024 for an LSTM's four gates of 256)
    #[arg(long)]
    out_size: usize,
    /// The most parameters a layer may have (its cores)
    #[arg(long)]
    params: u64,
    /// The rows per call the layers are timed at
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// The threads they are timed on
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The formats to try, comma-separated
    #[arg(long, default_value = "kcp,cp,tt,tr,bt,ht")]
    formats: String,
    /// The mode counts to try: one (4) or a range (2..6)
    #[arg(long, default_value = "2..6")]
    modes: String,
    /// Allow padding a side to a size up to this much larger (5% or 0.05): x padded with zeros, y cut
    #[arg(long, default_value = "0%")]
    pad: String,
    /// Fix the input modes, e.g. 8x20x20x18
    #[arg(long, value_parser = parse_shape)]
    in_shape: Option<Shape>,
    /// Fix the output modes, e.g. 4x4x4x16
    #[arg(long, value_parser = parse_shape)]
    out_shape: Option<Shape>,
    /// A dense weight W [M, N] (.npy): the relative error of each front layer's fit to it (kcp and cp by ALS, tt by TT-SVD)
    #[arg(long)]
    dense: Option<PathBuf>,
    /// About how long to plan and measure: 60s, 2m, 90
    #[arg(long, default_value = "60s")]
    time: String,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
    /// Draw the front (time per row against parameters, one colour per format) as an SVG file
    #[arg(long)]
    svg: Option<PathBuf>,
    /// A layer to time beside the candidates, in the same rounds: FORMAT:IN:OUT:RANKS, e.g.
    /// cp:8x20x20x18:16x4x4x4:36, tt:8x20x20x18:16x4x4x4:1x4x4x4x1, bt:...:2/4x4x4x4 (blocks/ranks)
    #[arg(long, value_parser = parse_compare)]
    compare: Vec<Compare>,
    /// Print only the kcp_layer! declaration of the fastest layer at the budget's ranks
    #[arg(long)]
    emit: bool,
}

/// A layer of `--compare`.
#[derive(Clone, Debug)]
struct Compare(Format, Tensorization);

/// `FORMAT:IN:OUT:RANKS`: RANKS is the rank (kcp, cp, ht), the ranks like 1x4x4x4x1 (tt, tr), or
/// blocks/ranks like 2/4x4x4x4 (bt).
fn parse_compare(text: &str) -> Result<Compare> {
    let bad = |why: &str| format!("--compare {text}: {why} (FORMAT:IN:OUT:RANKS, e.g. cp:8x20x20x18:16x4x4x4:36)");
    let [name, ins, outs, ranks] = text.split(':').collect::<Vec<_>>()[..] else {
        return Err(bad("four fields"));
    };
    let entry = Format::entry(name).ok_or_else(|| bad("an unknown format"))?;
    let list = |t: &str| -> Result<Vec<usize>> {
        t.split('x').map(|v| v.trim().parse::<usize>().map_err(|_| bad("a number that is not one"))).collect()
    };
    let mut args = RankArgs::default();
    match entry.name {
        "tt" | "tr" => args.ranks = Some(list(ranks)?),
        "bt" => {
            let (blocks, ranks) = ranks.split_once('/').ok_or_else(|| bad("bt's ranks are blocks/ranks"))?;
            args.blocks = Some(blocks.trim().parse().map_err(|_| bad("a block count that is not a number"))?);
            args.ranks = Some(list(ranks)?);
        }
        _ => args.rank = Some(ranks.trim().parse().map_err(|_| bad("a rank that is not a number"))?),
    }
    let format = entry.checked(args).map_err(|_| bad("the format's rank keys"))?;
    Ok(Compare(format, Tensorization { in_shape: list(ins)?, out_shape: list(outs)? }))
}

/// "5%" or "0.05" as a fraction.
fn parse_pad(text: &str) -> Result<f64> {
    let value = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.trim().parse::<f64>(),
    };
    match value {
        Ok(v) if v.is_finite() && (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("--pad takes a share from 0% to 100% (5% or 0.05), found `{text}`")),
    }
}

/// "60s", "2m" or "90" (seconds).
fn parse_time(text: &str) -> Result<Duration> {
    let (number, scale) = match text.trim() {
        t if t.ends_with("ms") => (&t[..t.len() - 2], 1e-3),
        t if t.ends_with('s') => (&t[..t.len() - 1], 1.0),
        t if t.ends_with('m') => (&t[..t.len() - 1], 60.0),
        t => (t, 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * scale <= 86_400.0 => Ok(Duration::from_secs_f64(v * scale)),
        _ => Err(format!("--time takes a duration like 60s, 2m or 90, up to a day; found `{text}`")),
    }
}

/// "4" or "2..6".
fn parse_modes(text: &str) -> Result<std::ops::RangeInclusive<usize>> {
    let bad = || format!("--modes takes a count from 1 to 7 or a range like 2..6, found `{text}`");
    let (lo, hi) = match text.split_once("..") {
        Some((a, b)) => (a.trim().parse::<usize>().map_err(|_| bad())?, b.trim().parse::<usize>().map_err(|_| bad())?),
        None => {
            let d = text.trim().parse::<usize>().map_err(|_| bad())?;
            (d, d)
        }
    };
    if lo == 0 || hi > 7 || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

impl TuneArgs {
    fn options(&self) -> Result<TuneOptions> {
        if !(1..=MAX_THREADS).contains(&self.threads) {
            return Err(format!("--threads must be between 1 and {MAX_THREADS}, found {}", self.threads));
        }
        if self.batch == 0 || self.batch > 4096 {
            return Err(format!("--batch must be between 1 and 4096, found {}", self.batch));
        }
        if self.in_size < 2 || self.out_size < 2 {
            return Err(format!(
                "--in-size and --out-size must be at least 2, found {} and {}",
                self.in_size, self.out_size
            ));
        }
        // x, y and the padded copies of a timed call, kept far below any machine's memory.
        let floats = (self.in_size as u128 + self.out_size as u128) * self.batch as u128 * 3;
        if floats > 1 << 28 {
            return Err(format!(
                "a batch of {} rows of {} inputs and {} outputs is more than the tuner times (1 GiB of activations)",
                self.batch, self.in_size, self.out_size
            ));
        }
        let formats: Vec<String> = self.formats.split(',').map(|f| f.trim().to_string()).collect();
        if let Some(bad) = formats.iter().find(|f| !FORMATS.contains(&f.as_str())) {
            return Err(format!("--formats: unknown format `{bad}` (kcp, cp, tt, tr, bt, ht)"));
        }
        Ok(TuneOptions {
            in_size: self.in_size,
            out_size: self.out_size,
            budget: self.params,
            batch: self.batch,
            threads: Threads::at_most(self.threads).unwrap_or(Threads::ONE),
            formats,
            modes: parse_modes(&self.modes)?,
            pad: parse_pad(&self.pad)?,
            in_shape: self.in_shape.clone().map(|s| s.0),
            out_shape: self.out_shape.clone().map(|s| s.0),
            time: parse_time(&self.time)?,
            compare: self.compare.iter().map(|c| (c.0.clone(), c.1.clone())).collect(),
        })
    }
}

/// `kcp tune`.
pub fn tune_cmd(args: &TuneArgs) -> Result<String> {
    let options = args.options()?;
    // The dense weight is read (and checked) before the search, which takes a minute.
    let dense = match &args.dense {
        Some(path) => {
            let array = npy::read(path).map_err(|e| e.to_string())?;
            if array.shape != [options.out_size, options.in_size] {
                return Err(format!(
                    "{} has shape {:?}, expected [{}, {}] (W [M, N])",
                    path.display(),
                    array.shape,
                    options.out_size,
                    options.in_size
                ));
            }
            Some(array.data)
        }
        None => None,
    };
    let bar = indicatif::ProgressBar::new(100);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let tuning = crate::in_pool(thread_count(&options), || {
        tune(&options, |stage, done, total| {
            bar.set_message(stage.to_string());
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
    })?
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let errors: Vec<Option<f64>> = tuning
        .front
        .iter()
        .map(|&k| dense.as_deref().and_then(|w| fit_error(&tuning.measured[k], w, &options)))
        .collect();
    if let Some(path) = &args.svg {
        let svg = draw(&tuning, &options)?;
        kcp::write_atomically(path, |file| std::io::Write::write_all(file, svg.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if args.emit {
        let fastest = fastest(&tuning).ok_or("no layer was timed")?;
        return Ok(declaration(fastest, &options));
    }
    if args.json {
        return Ok(format!("{}\n", report(&tuning, &options, &errors, dense.is_some())));
    }
    Ok(table(&tuning, &options, &errors, dense.is_some()))
}

/// The threads a tuning's pool has.
fn thread_count(options: &TuneOptions) -> usize {
    match options.threads {
        Threads::All => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Threads::AtMost(n) => n.get(),
    }
}

/// The layer to use: the fastest of those at the budget's ranks (the half-rank layers show the
/// trade-off on the front; a layer of the budget's size is what was asked for).
fn fastest(tuning: &Tuning) -> Option<&Candidate> {
    let time = |c: &&Candidate| c.us_per_row.unwrap_or(f64::INFINITY);
    let at_budget = tuning.measured.iter().filter(|c| c.fit == Fit::Budget);
    at_budget.min_by(|a, b| time(a).total_cmp(&time(b)))
}

/// The relative error of a fit of the candidate to W (padded with zeros to its sizes), for the
/// formats kcp fits: kcp and cp (ALS, 50 sweeps) and tt (TT-SVD).
fn fit_error(candidate: &Candidate, w: &[f32], options: &TuneOptions) -> Option<f64> {
    let t = &candidate.tensorization;
    let (n, np, mp) = (options.in_size, t.in_size(), t.out_size());
    let mut padded = vec![0.0f32; mp * np];
    for (row, out) in w.chunks_exact(n).zip(padded.chunks_exact_mut(np)) {
        out[..n].copy_from_slice(row);
    }
    match &candidate.format {
        Format::Kcp { rank } => {
            let options = FitOptions { iters: 50, ..FitOptions::default() };
            compress(&padded, &t.in_shape, &t.out_shape, *rank, &options, |_, _| {}).ok().map(|f| f.relative_error)
        }
        Format::Cp { rank } => {
            let options = FitOptions { iters: 50, ..FitOptions::default() };
            compress_cp(&padded, &t.in_shape, &t.out_shape, *rank, &options, |_, _| {}).ok().map(|f| f.relative_error)
        }
        Format::Tt { ranks } => tt_svd(&padded, &t.in_shape, &t.out_shape, ranks).ok().map(|f| f.relative_error),
        _ => None,
    }
}

/// A candidate's rank keys as `kcp_layer!` writes them (`rank: 4`, `ranks: [1, 4, 1]`, ...).
fn rank_keys(format: &Format) -> Vec<(&'static str, String)> {
    let args = format.rank_args();
    let list = |v: &[usize]| format!("[{}]", v.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "));
    let mut keys = Vec::new();
    if let Some(b) = args.blocks {
        keys.push(("blocks", b.to_string()));
    }
    if let Some(r) = args.rank {
        keys.push(("rank", r.to_string()));
    }
    if let Some(r) = &args.ranks {
        keys.push(("ranks", list(r)));
    }
    keys
}

fn shape(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

fn padding(candidate: &Candidate, options: &TuneOptions) -> String {
    let t = &candidate.tensorization;
    match (t.in_size() - options.in_size, t.out_size() - options.out_size) {
        (0, 0) => String::new(),
        (x, y) => format!(" (pad x +{x}, y +{y})"),
    }
}

fn table(tuning: &Tuning, options: &TuneOptions, errors: &[Option<f64>], with_errors: bool) -> String {
    let mut out = format!(
        "{} -> {} within {} parameters, timed at batch {} on {} thread(s): {} tensorizations, {} of {} layers planned, {} timed\n\n",
        options.in_size,
        options.out_size,
        options.budget,
        options.batch,
        thread_count(options),
        tuning.tensorizations,
        tuning.planned.len(),
        tuning.candidates,
        tuning.measured.len()
    );
    out += "front | format | in x out | ranks | params | compression | MACs per row | us per row";
    out += if with_errors { " | relative error\n" } else { "\n" };
    let mut order: Vec<usize> = (0..tuning.measured.len()).collect();
    order.sort_by(|&a, &b| tuning.measured[a].params.cmp(&tuning.measured[b].params));
    for k in order {
        let c = &tuning.measured[k];
        let on_front = tuning.front.iter().position(|&f| f == k);
        let ranks: Vec<String> = rank_keys(&c.format).into_iter().map(|(key, v)| format!("{key} {v}")).collect();
        let dense = options.in_size as f64 * options.out_size as f64;
        out += &format!(
            "{} | {} | {} x {}{} | {} | {} | {:.0}x | {} | {:.2}",
            if on_front.is_some() { "*" } else { " " },
            c.format.name(),
            shape(&c.tensorization.in_shape),
            shape(&c.tensorization.out_shape),
            padding(c, options),
            ranks.join(", "),
            c.params,
            dense / c.params as f64,
            c.macs,
            c.us_per_row.unwrap_or(f64::NAN)
        );
        if with_errors {
            let error = on_front.and_then(|f| errors[f]);
            out += &error.map_or(" | -".to_string(), |e| format!(" | {e:.3e}"));
        }
        out += "\n";
    }
    for c in &tuning.compared {
        let ranks: Vec<String> = rank_keys(&c.format).into_iter().map(|(key, v)| format!("{key} {v}")).collect();
        out += &format!(
            "given | {} | {} x {} | {} | {} | {:.0}x | {} | {:.2}\n",
            c.format.name(),
            shape(&c.tensorization.in_shape),
            shape(&c.tensorization.out_shape),
            ranks.join(", "),
            c.params,
            options.in_size as f64 * options.out_size as f64 / c.params as f64,
            c.macs,
            c.us_per_row.unwrap_or(f64::NAN)
        );
    }
    if let Some(best) = fastest(tuning) {
        out += &format!(
            "\nfastest at the budget's ranks: {} {} x {} ({}), {:.2} us per row; `--emit` prints its declaration\n",
            best.format.name(),
            shape(&best.tensorization.in_shape),
            shape(&best.tensorization.out_shape),
            rank_keys(&best.format).into_iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
            best.us_per_row.unwrap_or(f64::NAN)
        );
    }
    out
}

fn point(c: &Candidate, options: &TuneOptions, error: Option<f64>) -> Value {
    let mut value = json!({
        "format": c.format.name(),
        "in_shape": c.tensorization.in_shape,
        "out_shape": c.tensorization.out_shape,
        "params": c.params,
        "compression": (options.in_size as f64 * options.out_size as f64) / c.params as f64,
        "macs": c.macs,
        "us_per_row": c.us_per_row,
        "scratch_floats": c.scratch,
        "padded": c.tensorization.in_size() != options.in_size || c.tensorization.out_size() != options.out_size,
        "ranks_at": match c.fit {
            Fit::Budget => "budget",
            Fit::Half => "half",
            Fit::Given => "given",
        },
    });
    let args = c.format.rank_args();
    if let Some(r) = args.rank {
        value["rank"] = json!(r);
    }
    if let Some(r) = args.ranks {
        value["ranks"] = json!(r);
    }
    if let Some(b) = args.blocks {
        value["blocks"] = json!(b);
    }
    if let Some(e) = error {
        value["relative_error"] = json!(e);
    }
    value
}

fn report(tuning: &Tuning, options: &TuneOptions, errors: &[Option<f64>], with_errors: bool) -> Value {
    let front: Vec<Value> = tuning
        .front
        .iter()
        .zip(errors)
        .map(|(&k, &e)| {
            let mut p = point(&tuning.measured[k], options, e);
            if with_errors && e.is_none() {
                p["relative_error"] = Value::Null;
            }
            p
        })
        .collect();
    json!({
        "in_size": options.in_size,
        "out_size": options.out_size,
        "params": options.budget,
        "batch": options.batch,
        "threads": thread_count(options),
        "tensorizations": tuning.tensorizations,
        "candidates": tuning.candidates,
        "planned": tuning.planned.len(),
        "front": front,
        "measured": tuning.measured.iter().map(|c| point(c, options, None)).collect::<Vec<_>>(),
        "compared": tuning.compared.iter().map(|c| point(c, options, None)).collect::<Vec<_>>(),
    })
}

/// The `kcp_layer!` declaration of a candidate, ready to paste.
fn declaration(c: &Candidate, options: &TuneOptions) -> String {
    let t = &c.tensorization;
    let list = |v: &[usize]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
    let mut out = format!(
        "kcp::kcp_layer! {{\n    /// Chosen by `kcp tune`: {} parameters, {:.2} us per row at batch {} on {} thread(s) where it ran.\n",
        c.params,
        c.us_per_row.unwrap_or(f64::NAN),
        options.batch,
        thread_count(options)
    );
    if t.in_size() != options.in_size || t.out_size() != options.out_size {
        out += &format!(
            "    /// Padded: x's {} inputs take {} zeros after them; y's first {} outputs are the layer's.\n",
            options.in_size,
            t.in_size() - options.in_size,
            options.out_size
        );
    }
    out += &format!(
        "    pub struct TunedLayer {{\n        in_shape: [{}],\n        out_shape: [{}],\n        format: {},\n",
        list(&t.in_shape),
        list(&t.out_shape),
        c.format.name()
    );
    for (key, value) in rank_keys(&c.format) {
        out += &format!("        {key}: {value},\n");
    }
    out += "    }\n}\n";
    out
}

/// The front as an SVG: every timed layer, time per row against parameters, one colour per
/// format, the front joined by a line.
fn draw(tuning: &Tuning, options: &TuneOptions) -> Result<String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| format!("cannot draw the front: {e}");
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let time = |c: &Candidate| c.us_per_row.unwrap_or(0.0);
        let top = tuning.measured.iter().map(time).fold(1.0f64, f64::max) * 1.1;
        let right = tuning.measured.iter().map(|c| c.params).max().unwrap_or(1) as f64 * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "kcp tune: {} -> {}, batch {}, {} thread(s)",
                    options.in_size,
                    options.out_size,
                    options.batch,
                    thread_count(options)
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..right, 0f64..top)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("parameters").y_desc("us per row").draw().map_err(|e| err(&e))?;
        for (k, name) in FORMATS.iter().enumerate() {
            let colour = Palette99::pick(k).to_rgba();
            let points: Vec<(f64, f64)> = tuning
                .measured
                .iter()
                .filter(|c| c.format.name() == *name)
                .map(|c| (c.params as f64, time(c)))
                .collect();
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 5, colour.filled())))
                .map_err(|e| err(&e))?
                .label(*name)
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
        }
        let line: Vec<(f64, f64)> =
            tuning.front.iter().map(|&k| (tuning.measured[k].params as f64, time(&tuning.measured[k]))).collect();
        chart.draw_series(LineSeries::new(line, BLACK.stroke_width(1))).map_err(|e| err(&e))?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

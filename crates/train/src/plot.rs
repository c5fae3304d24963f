//! Training curves as pictures: `metrics.jsonl` of one or more runs drawn as SVG (or PNG).
//!
//! One panel per metric, stacked, sharing the x axis: loss (nats per token), perplexity (log
//! scale), learning rate (log scale) and training throughput (tokens per second). Each run has
//! its own colour; training figures are a thin line, validation figures a thick line with a
//! dot per epoch, and the best validation epoch of each run carries a ring.
//!
//! ```no_run
//! use lstm_lm_train::plot::{PlotOptions, RunCurves, write_plot};
//!
//! let runs = vec![RunCurves::load("runs/sample".as_ref())?];
//! write_plot("curves.svg".as_ref(), &runs, &PlotOptions::default())?;
//! # Ok::<(), lstm_lm_train::TrainError>(())
//! ```
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::TrainError;
use crate::metrics::{MetricEvent, read_events};
use crate::run_dir::RunDir;

/// What the x axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Training tokens (targets) seen.
    Tokens,
    /// Optimizer steps.
    Steps,
    /// Epochs (fractional between epoch ends).
    Epochs,
    /// Seconds of training.
    Time,
}

impl XAxis {
    /// Every name, as accepted by [`FromStr`].
    pub const NAMES: [&'static str; 4] = ["tokens", "steps", "epochs", "time"];

    fn label(self) -> &'static str {
        match self {
            XAxis::Tokens => "training tokens seen",
            XAxis::Steps => "optimizer steps",
            XAxis::Epochs => "epochs",
            XAxis::Time => "training time (minutes)",
        }
    }
}

impl FromStr for XAxis {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tokens" => Ok(XAxis::Tokens),
            "steps" => Ok(XAxis::Steps),
            "epochs" => Ok(XAxis::Epochs),
            "time" => Ok(XAxis::Time),
            other => Err(TrainError::Input(format!(
                "--x {other:?} is not an axis: use one of {}",
                XAxis::NAMES.join(", ")
            ))),
        }
    }
}

/// A quantity drawn in its own panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotMetric {
    /// Cross-entropy in nats per token, training and validation.
    Loss,
    /// Perplexity, training and validation, on a log scale.
    Ppl,
    /// Learning rate, on a log scale.
    Lr,
    /// Training throughput in tokens per second.
    TokS,
}

impl PlotMetric {
    /// Every name, as accepted by [`FromStr`].
    pub const NAMES: [&'static str; 4] = ["loss", "ppl", "lr", "tok_s"];

    fn label(self) -> &'static str {
        match self {
            PlotMetric::Loss => "loss (nats/token)",
            PlotMetric::Ppl => "perplexity",
            PlotMetric::Lr => "learning rate",
            PlotMetric::TokS => "tokens/s",
        }
    }

    fn log_scale(self) -> bool {
        matches!(self, PlotMetric::Ppl | PlotMetric::Lr)
    }
}

impl FromStr for PlotMetric {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "loss" => Ok(PlotMetric::Loss),
            "ppl" => Ok(PlotMetric::Ppl),
            "lr" => Ok(PlotMetric::Lr),
            "tok_s" => Ok(PlotMetric::TokS),
            other => Err(TrainError::Input(format!(
                "--metrics {other:?} is not a metric: use some of {}",
                PlotMetric::NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for PlotMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlotMetric::Loss => "loss",
            PlotMetric::Ppl => "ppl",
            PlotMetric::Lr => "lr",
            PlotMetric::TokS => "tok_s",
        })
    }
}

/// What to draw.
#[derive(Debug, Clone)]
pub struct PlotOptions {
    /// The x axis. Default: tokens seen.
    pub x: XAxis,
    /// The panels, top to bottom. Default: loss, perplexity, learning rate.
    pub metrics: Vec<PlotMetric>,
    /// Picture width in pixels. Default: 900.
    pub width: u32,
    /// Height of one panel in pixels. Default: 300.
    pub panel_height: u32,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            x: XAxis::Tokens,
            metrics: vec![PlotMetric::Loss, PlotMetric::Ppl, PlotMetric::Lr],
            width: 900,
            panel_height: 300,
        }
    }
}

/// One point of a run's history, with every x coordinate it can be drawn against.
#[derive(Debug, Clone, Copy)]
struct Point {
    tokens: Option<f64>,
    step: f64,
    epoch: f64,
    minutes: f64,
}

impl Point {
    fn x(&self, axis: XAxis) -> Option<f64> {
        match axis {
            XAxis::Tokens => self.tokens,
            XAxis::Steps => Some(self.step),
            XAxis::Epochs => Some(self.epoch),
            XAxis::Time => Some(self.minutes),
        }
    }
}

/// Figures of one training log interval.
struct TrainPoint {
    at: Point,
    loss: f64,
    ppl: f64,
    lr: f64,
    tok_s: f64,
}

/// Figures at the end of one epoch.
struct EpochPoint {
    at: Point,
    valid_loss: Option<f64>,
    valid_ppl: Option<f64>,
    lr: f64,
    best: bool,
}

/// A run's training history, read from its `metrics.jsonl`.
#[derive(Debug, Clone)]
pub struct RunCurves {
    /// The name in the legend (the run folder's name).
    pub name: String,
    events: Vec<MetricEvent>,
}

impl RunCurves {
    /// Reads `RUN/metrics.jsonl`.
    pub fn load(run: &Path) -> Result<Self, TrainError> {
        let path = RunDir::new(run).metrics_path();
        if !path.is_file() {
            return Err(TrainError::RunDir(format!(
                "\"{}\" has no metrics.jsonl: pass the --out folder of an `lstm-lm train` run",
                run.display()
            )));
        }
        let name = run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| run.display().to_string());
        Ok(RunCurves::from_events(name, read_events(&path)?))
    }

    /// A history from events already in memory.
    pub fn from_events(name: impl Into<String>, events: Vec<MetricEvent>) -> Self {
        RunCurves {
            name: name.into(),
            events,
        }
    }

    /// Training figures, one per log interval.
    fn train_points(&self) -> Vec<TrainPoint> {
        let mut last_epoch_step = (0.0, 0.0);
        let mut steps_per_epoch = None;
        let mut out = Vec::new();
        for e in &self.events {
            match e {
                MetricEvent::Epoch { epoch, step, .. } => {
                    let (e0, s0) = last_epoch_step;
                    if *epoch as f64 > e0 && *step as f64 > s0 {
                        steps_per_epoch = Some((*step as f64 - s0) / (*epoch as f64 - e0));
                    }
                    last_epoch_step = (*epoch as f64, *step as f64);
                }
                MetricEvent::Train {
                    epoch,
                    batch,
                    step,
                    loss,
                    ppl,
                    lr,
                    tok_per_s,
                    elapsed_s,
                    tokens,
                    ..
                } => {
                    // Fraction of the epoch: batches done over the epoch's length, known once
                    // an epoch has ended; before that, steps over the first epoch's batches.
                    let per = steps_per_epoch.unwrap_or(f64::NAN);
                    let frac = if per.is_finite() && per > 0.0 {
                        (*batch as f64 / per).min(1.0)
                    } else {
                        0.0
                    };
                    let point = Point {
                        tokens: tokens.map(|t| t as f64),
                        step: *step as f64,
                        epoch: (*epoch as f64 - 1.0) + frac,
                        minutes: elapsed_s / 60.0,
                    };
                    out.push(TrainPoint {
                        at: point,
                        loss: *loss,
                        ppl: *ppl,
                        lr: *lr,
                        tok_s: *tok_per_s,
                    });
                }
                MetricEvent::Test { .. } => {}
            }
        }
        out
    }

    /// Validation figures, one per epoch.
    fn epoch_points(&self) -> Vec<EpochPoint> {
        self.events
            .iter()
            .filter_map(|e| match e {
                MetricEvent::Epoch {
                    epoch,
                    step,
                    valid_loss,
                    valid_ppl,
                    lr,
                    elapsed_s,
                    best,
                    tokens,
                    ..
                } => Some(EpochPoint {
                    at: Point {
                        tokens: tokens.map(|t| t as f64),
                        step: *step as f64,
                        epoch: *epoch as f64,
                        minutes: elapsed_s / 60.0,
                    },
                    valid_loss: *valid_loss,
                    valid_ppl: *valid_ppl,
                    lr: *lr,
                    best: *best,
                }),
                _ => None,
            })
            .collect()
    }
}

/// One drawn line: its points, whether it is validation, and which run it belongs to.
struct Series {
    run: usize,
    label: String,
    valid: bool,
    points: Vec<(f64, f64)>,
    /// The best validation point, ringed.
    best: Option<(f64, f64)>,
}

/// The series of `metric` for every run, against `axis`.
fn series(runs: &[RunCurves], metric: PlotMetric, axis: XAxis) -> Result<Vec<Series>, TrainError> {
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let mut train = Vec::new();
        for p in run.train_points() {
            let y = match metric {
                PlotMetric::Loss => p.loss,
                PlotMetric::Ppl => p.ppl,
                PlotMetric::Lr => p.lr,
                PlotMetric::TokS => p.tok_s,
            };
            train.push((x_of(&p.at, axis, &run.name)?, y));
        }
        let mut valid = Vec::new();
        let mut best = None;
        let mut lr_at_epochs = Vec::new();
        for p in run.epoch_points() {
            let x = x_of(&p.at, axis, &run.name)?;
            lr_at_epochs.push((x, p.lr));
            let y = match metric {
                PlotMetric::Loss => p.valid_loss,
                PlotMetric::Ppl => p.valid_ppl,
                _ => None,
            };
            if let Some(y) = y {
                valid.push((x, y));
                if p.best {
                    best = Some((x, y));
                }
            }
        }
        // A run too short to log has only epoch lines: draw its learning rate from them.
        if metric == PlotMetric::Lr && train.is_empty() {
            train = lr_at_epochs;
        }
        let keep = |v: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
            v.into_iter()
                .filter(|&(x, y)| {
                    x.is_finite() && y.is_finite() && (!metric.log_scale() || y > 0.0)
                })
                .collect()
        };
        out.push(Series {
            run: i,
            label: format!("{} train", run.name),
            valid: false,
            points: keep(train),
            best: None,
        });
        if matches!(metric, PlotMetric::Loss | PlotMetric::Ppl) {
            out.push(Series {
                run: i,
                label: format!("{} valid", run.name),
                valid: true,
                points: keep(valid),
                best,
            });
        }
    }
    Ok(out)
}

fn x_of(p: &Point, axis: XAxis, run: &str) -> Result<f64, TrainError> {
    p.x(axis).ok_or_else(|| {
        TrainError::Input(format!(
            "the metrics of run \"{run}\" carry no token counts (written by an older lstm-lm): plot it with --x steps"
        ))
    })
}

/// Distinct, readable colours (colour-blind safe palette), one per run.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

fn colour(run: usize) -> RGBColor {
    PALETTE[run % PALETTE.len()]
}

/// The picture as SVG text.
pub fn render_svg(runs: &[RunCurves], opts: &PlotOptions) -> Result<String, TrainError> {
    if runs.is_empty() {
        return Err(TrainError::Input("no run to plot".into()));
    }
    if opts.metrics.is_empty() {
        return Err(TrainError::Input(format!(
            "--metrics is empty: name some of {}",
            PlotMetric::NAMES.join(", ")
        )));
    }
    let panels: Vec<(PlotMetric, Vec<Series>)> = opts
        .metrics
        .iter()
        .map(|&m| Ok((m, series(runs, m, opts.x)?)))
        .collect::<Result<_, TrainError>>()?;
    if panels
        .iter()
        .all(|(_, s)| s.iter().all(|s| s.points.is_empty()))
    {
        return Err(TrainError::Input(format!(
            "{} has no training figures yet: plot it after its first log interval",
            runs.iter()
                .map(|r| format!("\"{}\"", r.name))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let height = opts.panel_height * panels.len() as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (opts.width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let areas = root.split_evenly((panels.len(), 1));
        for (area, (metric, series)) in areas.iter().zip(&panels) {
            draw_panel(area, *metric, series, opts.x).map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error<E: std::fmt::Debug>(e: E) -> TrainError {
    TrainError::Input(format!("cannot draw the plot: {e:?}"))
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    metric: PlotMetric,
    series: &[Series],
    axis: XAxis,
) -> DrawResult {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        // Nothing to draw in this panel (e.g. no validation data): an empty, labelled frame.
        (x0, x1, y0, y1) = (0.0, 1.0, 1.0, 2.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if metric.log_scale() {
        if y1 <= y0 {
            (y0, y1) = (y0 / 2.0, y1 * 2.0);
        }
        let (lo, hi) = (y0 / 1.15, y1 * 1.15);
        // Ticks of our own: plotters' log axis puts two grid lines (and two labels) on a
        // decade's boundary, 100 as the end of one decade and the start of the next.
        let ticks = log_ticks(lo, hi);
        let y = (lo..hi).log_scale().with_key_points(ticks);
        chart(area, metric, series, axis, x0..x1, y)
    } else {
        // A flat series (a constant learning rate) gets a band around its value, so the axis
        // has ticks to label.
        let magnitude = y0.abs().max(y1.abs());
        let pad = ((y1 - y0) * 0.06).max(magnitude * 0.05).max(1e-9);
        chart(area, metric, series, axis, x0..x1, (y0 - pad)..(y1 + pad))
    }
}

fn chart<Y>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    metric: PlotMetric,
    series: &[Series],
    axis: XAxis,
    x: std::ops::Range<f64>,
    y: Y,
) -> DrawResult
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .caption(metric.label(), ("sans-serif", 18))
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(axis.label())
        .y_desc(metric.label())
        .x_label_formatter(&|v| short_number(*v))
        .y_label_formatter(&|v| short_number(*v))
        .label_style(("sans-serif", 13))
        .light_line_style(RGBColor(240, 240, 240))
        .max_light_lines(1)
        .draw()?;
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let c = colour(s.run);
        let style = if s.valid {
            c.stroke_width(3)
        } else {
            c.mix(0.6).stroke_width(1)
        };
        let drawn = chart.draw_series(LineSeries::new(s.points.iter().copied(), style))?;
        drawn
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
        if s.valid {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        }
        if let Some(best) = s.best {
            chart.draw_series(std::iter::once(Circle::new(best, 7, c.stroke_width(2))))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// Tick values for a log axis from `lo` to `hi` (both > 0): 1, 2 and 5 of each decade, or every
/// 1..9 when that gives fewer than two, or five even steps on a range too narrow for either.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = lo.log10().floor() as i32..=hi.log10().ceil() as i32;
    let in_range = |mantissas: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let ticks = in_range(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 2 {
        return ticks;
    }
    let ticks = in_range(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if ticks.len() >= 2 {
        return ticks;
    }
    (1..=5).map(|k| lo + (hi - lo) * k as f64 / 6.0).collect()
}

/// Tick labels: 1.2k, 3.4M, 0.001, 12.5.
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{}k", trim_zeros(format!("{:.1}", v / 1e3)))
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim_zeros(format!("{v:.2}"))
    } else {
        format!("{v:.1e}")
    }
}

/// "2.50" -> "2.5", "10.00" -> "10".
fn trim_zeros(text: String) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Draws `runs` into `out`: SVG, or PNG when the name ends in `.png`. Written atomically
/// (temporary file, fsync, rename), so a viewer never sees half a picture.
pub fn write_plot(out: &Path, runs: &[RunCurves], opts: &PlotOptions) -> Result<(), TrainError> {
    let svg = render_svg(runs, opts)?;
    let bytes = match out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("png") => svg_to_png(&svg, out)?,
        Some(e) if e.eq_ignore_ascii_case("svg") => svg.into_bytes(),
        _ => {
            return Err(TrainError::Input(format!(
                "\"{}\": the plot file must end in .svg or .png",
                out.display()
            )));
        }
    };
    crate::atomic::write_atomic(out, &bytes)
}

/// Rasterises the SVG with the machine's fonts.
fn svg_to_png(svg: &str, out: &Path) -> Result<Vec<u8>, TrainError> {
    use resvg::{tiny_skia, usvg};
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    // The SVG asks for the generic `sans-serif`, which fontdb maps to Arial unless told
    // otherwise: map it to a sans-serif face this machine has (DejaVu Sans on Debian).
    let family =
        |face: &resvg::usvg::fontdb::FaceInfo| face.families.first().map(|(name, _)| name.clone());
    let sans = fonts
        .faces()
        .filter_map(family)
        .find(|name| name.contains("Sans") && !name.contains("Mono"))
        .or_else(|| fonts.faces().find_map(family));
    if let Some(name) = sans {
        fonts.set_sans_serif_family(name);
    }
    if options.fontdb.is_empty() {
        return Err(TrainError::Input(format!(
            "\"{}\": a PNG needs a system font for its labels and none was found (Debian: apt-get install fonts-dejavu-core); or write an .svg",
            out.display()
        )));
    }
    let tree = usvg::Tree::from_str(svg, &options)
        .map_err(|e| TrainError::Input(format!("cannot read back the plot's SVG: {e}")))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| TrainError::Input("the plot has no area".into()))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| TrainError::Input(format!("cannot encode the PNG: {e}")))
}

/// The default picture of a run folder: `RUN/curves.svg`, rewritten by `train --plot`.
pub fn curves_path(run: &Path) -> PathBuf {
    run.join("curves.svg")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(scale: f64) -> Vec<MetricEvent> {
        let mut events = Vec::new();
        let mut step = 0;
        for epoch in 1..=3usize {
            for batch in [5usize, 10] {
                step += 5;
                let loss = scale * (4.0 - 0.3 * step as f64 / 5.0);
                events.push(MetricEvent::Train {
                    epoch,
                    batch,
                    step,
                    loss,
                    ppl: loss.exp(),
                    accuracy: 0.1,
                    lr: 1e-3 / epoch as f64,
                    tok_per_s: 1000.0,
                    elapsed_s: step as f64,
                    eta_s: 0.0,
                    tokens: Some(step * 100),
                });
            }
            let valid = scale * (4.0 - 0.5 * epoch as f64).max(2.6);
            events.push(MetricEvent::Epoch {
                epoch,
                step,
                train_loss: 3.0,
                valid_loss: Some(valid),
                valid_ppl: Some(valid.exp()),
                valid_accuracy: Some(0.2),
                lr: 1e-3 / epoch as f64,
                elapsed_s: step as f64,
                best: epoch <= 2,
                tokens: Some(step * 100),
            });
        }
        events
    }

    /// Counts the polylines drawn in `colour` (series lines and their legend samples; axes and
    /// ticks are black).
    fn polylines(svg: &str, colour: &str) -> usize {
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(&format!("stroke=\"{colour}\"")))
            .count()
    }

    #[test]
    fn one_line_per_run_metric_and_split_and_a_legend_entry_each() {
        let runs = vec![
            RunCurves::from_events("a", history(1.0)),
            RunCurves::from_events("b", history(1.1)),
        ];
        let opts = PlotOptions {
            metrics: vec![PlotMetric::Loss, PlotMetric::Ppl, PlotMetric::Lr],
            ..PlotOptions::default()
        };
        let svg = render_svg(&runs, &opts).unwrap();
        // Per run: loss and ppl have a train and a valid line, lr a train line; each is drawn
        // once as data and once as its legend sample.
        assert_eq!(polylines(&svg, "#0072B2"), 2 * 5, "{svg}");
        assert_eq!(polylines(&svg, "#D55E00"), 2 * 5, "{svg}");
        for label in ["a train", "a valid", "b train", "b valid", "perplexity"] {
            assert!(svg.contains(label), "{label} missing");
        }
        assert!(svg.contains("training tokens seen"));
    }

    #[test]
    fn every_axis_draws_and_an_unknown_name_is_an_error() {
        let runs = vec![RunCurves::from_events("a", history(1.0))];
        for axis in XAxis::NAMES {
            let opts = PlotOptions {
                x: axis.parse().unwrap(),
                ..PlotOptions::default()
            };
            let svg = render_svg(&runs, &opts).unwrap();
            assert!(svg.contains(opts.x.label()));
        }
        assert!("wall".parse::<XAxis>().is_err());
        assert!("acc".parse::<PlotMetric>().is_err());
    }

    #[test]
    fn a_history_without_token_counts_asks_for_another_axis() {
        let mut events = history(1.0);
        for e in &mut events {
            match e {
                MetricEvent::Train { tokens, .. } | MetricEvent::Epoch { tokens, .. } => {
                    *tokens = None
                }
                MetricEvent::Test { .. } => {}
            }
        }
        let runs = vec![RunCurves::from_events("old", events)];
        let err = render_svg(&runs, &PlotOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--x steps"), "{err}");
        let opts = PlotOptions {
            x: XAxis::Steps,
            ..PlotOptions::default()
        };
        assert!(render_svg(&runs, &opts).is_ok());
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(short_number(5000.0), "5k");
        assert_eq!(short_number(12_500.0), "12.5k");
        assert_eq!(short_number(2.5), "2.5");
        assert_eq!(short_number(10.0), "10");
        assert_eq!(short_number(3.0e6), "3.0M");
        assert_eq!(short_number(0.005), "5.0e-3");
    }

    /// One tick per value (no decade boundary twice), 1-2-5 where the range allows.
    #[test]
    fn log_ticks_are_one_two_five_and_never_repeat() {
        let ticks = log_ticks(8.0, 260.0);
        assert_eq!(ticks, vec![10.0, 20.0, 50.0, 100.0, 200.0]);
        let narrow = log_ticks(110.0, 190.0);
        assert!(narrow.len() >= 2 && narrow.iter().all(|v| (110.0..=190.0).contains(v)));
        let tiny = log_ticks(120.0, 125.0);
        assert_eq!(tiny.len(), 5);
        for t in [&ticks, &narrow, &tiny] {
            assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        }
    }

    #[test]
    fn the_best_epoch_is_ringed() {
        let runs = vec![RunCurves::from_events("a", history(1.0))];
        let opts = PlotOptions {
            metrics: vec![PlotMetric::Loss],
            ..PlotOptions::default()
        };
        let svg = render_svg(&runs, &opts).unwrap();
        // Three validation dots (r=3) and one ring (r=7) on the best epoch.
        assert_eq!(svg.matches("r=\"3\"").count(), 3, "{svg}");
        assert_eq!(svg.matches("r=\"7\"").count(), 1, "{svg}");
    }

    #[test]
    fn png_output_is_a_png() {
        let runs = vec![RunCurves::from_events("a", history(1.0))];
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("c.png");
        match write_plot(&out, &runs, &PlotOptions::default()) {
            Ok(()) => {
                let bytes = std::fs::read(&out).unwrap();
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            }
            Err(e) if e.to_string().contains("system font") => {
                eprintln!("SKIPPED png_output_is_a_png: {e}");
            }
            Err(e) => panic!("{e}"),
        }
        let bad = dir.path().join("c.jpg");
        assert!(write_plot(&bad, &runs, &PlotOptions::default()).is_err());
    }
}

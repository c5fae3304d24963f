//! `lstm-lm plot`: training curves of one or more runs as a picture.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use lstm_lm_train::plot::{PlotMetric, PlotOptions, RunCurves, XAxis, write_plot};

/// Draw training and validation curves of runs as SVG or PNG.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm plot runs/sample
  lstm-lm plot runs/small runs/medium --out compare.png --x time
  lstm-lm plot runs/wt2 --metrics ppl,lr --x epochs")]
pub struct PlotArgs {
    /// Run folders written by `lstm-lm train`; each gets its own colour.
    #[arg(value_name = "RUN_DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// The picture to write: .svg or .png [default: RUN_DIR/curves.svg for one run,
    /// curves.svg for several].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The x axis: tokens, steps, epochs or time.
    #[arg(long, value_name = "AXIS", default_value = "tokens")]
    pub x: String,
    /// Panels, top to bottom, comma-separated: loss, ppl, lr, tok_s.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "loss,ppl,lr",
        value_delimiter = ','
    )]
    pub metrics: Vec<String>,
}

/// Runs `lstm-lm plot`.
pub fn run(args: PlotArgs) -> Result<()> {
    let opts = PlotOptions {
        x: args.x.parse::<XAxis>()?,
        metrics: args
            .metrics
            .iter()
            .map(|m| m.trim().parse::<PlotMetric>())
            .collect::<Result<_, _>>()?,
        ..PlotOptions::default()
    };
    let runs: Vec<RunCurves> = args
        .runs
        .iter()
        .map(|r| RunCurves::load(r))
        .collect::<Result<_, _>>()?;
    let out = match (&args.out, args.runs.as_slice()) {
        (Some(out), _) => out.clone(),
        (None, [one]) => lstm_lm_train::plot::curves_path(one),
        (None, _) => PathBuf::from("curves.svg"),
    };
    write_plot(&out, &runs, &opts)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

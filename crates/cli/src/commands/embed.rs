//! `lstm-lm embed`: one sentence vector per text, from the recurrent states, streamed in input
//! order as JSON lines, tab-separated values or a NumPy `.npy` array.
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use lstm_lm_infer::{EmbedOptions, LayerChoice, LoadedRun, Pooling};

use super::device_args::DeviceArgs;
use super::input::Lines;

/// Texts embedded at once (then written, so a file of any length runs in constant memory).
pub(crate) const TEXTS_PER_BLOCK: usize = 1024;

/// Output format of `embed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbedFormat {
    /// One JSON object per text: {"index", "text", "vector"} (or "error").
    Jsonl,
    /// One line of tab-separated numbers per text.
    Tsv,
    /// A NumPy array of float32, [texts, width] (needs the texts' count first: not from
    /// standard input).
    Npy,
}

/// Sentence vectors: one vector per text from the model's recurrent states.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  lstm-lm embed --model runs/sample 'the keeper climbed the tower' 'the lamp burned'
  lstm-lm embed --model runs/sample --file sentences.txt --pool mean --format npy --out vectors.npy
  lstm-lm embed --model runs/sample --file - --layer all --format tsv < sentences.txt")]
pub struct EmbedArgs {
    /// Run folder written by `lstm-lm train`.
    #[arg(long, value_name = "RUN_DIR")]
    pub model: PathBuf,
    /// Texts to embed (or use --file).
    #[arg(conflicts_with = "file")]
    pub texts: Vec<String>,
    /// Embed every line of FILE (- for standard input).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// How positions become one vector: last (the state after the last token), mean or max.
    #[arg(long, default_value = "last", value_name = "last|mean|max")]
    pub pool: String,
    /// Which layer's states: a number from 0 (bottom), top, or all (concatenated, bottom first).
    #[arg(long, default_value = "top", value_name = "N|top|all")]
    pub layer: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EmbedFormat::Jsonl)]
    pub format: EmbedFormat,
    /// Write to FILE (atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Where texts come from: the command line, or a file's lines read block by block.
pub(crate) enum TextSource {
    Args(std::collections::VecDeque<String>),
    File(Lines),
}

impl TextSource {
    pub(crate) fn new(texts: &[String], file: Option<&Path>) -> Result<Self> {
        match file {
            Some(f) => Ok(TextSource::File(Lines::open(Some(f))?)),
            None if texts.is_empty() => bail!("give texts as arguments or with --file FILE"),
            None => Ok(TextSource::Args(texts.iter().cloned().collect())),
        }
    }

    /// Up to `n` next texts.
    pub(crate) fn block(&mut self, n: usize) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while out.len() < n {
            let next = match self {
                TextSource::Args(queue) => queue.pop_front(),
                TextSource::File(lines) => lines.next_line()?.map(str::to_string),
            };
            match next {
                Some(t) => out.push(t),
                None => break,
            }
        }
        Ok(out)
    }

    /// What a text is called in messages: `"file" line N` or `text N`.
    pub(crate) fn describe(&self, index: usize) -> String {
        match self {
            TextSource::Args(_) => format!("text {}", index + 1),
            TextSource::File(lines) => format!("{} line {}", lines.name(), index + 1),
        }
    }
}

/// Parses `--pool` and `--layer`.
pub(crate) fn embed_options(pool: &str, layer: &str) -> Result<EmbedOptions> {
    Ok(EmbedOptions {
        pooling: pool.parse::<Pooling>()?,
        layers: layer.parse::<LayerChoice>()?,
    })
}

/// Runs `lstm-lm embed`.
pub fn run(args: EmbedArgs) -> Result<()> {
    let opts = embed_options(&args.pool, &args.layer)?;
    let rows = match (args.format, &args.file) {
        (EmbedFormat::Npy, Some(f)) if f.as_os_str() == "-" => bail!(
            "--format npy writes the number of texts first, so it cannot read standard input: give --file FILE, or use --format jsonl or tsv"
        ),
        (EmbedFormat::Npy, Some(f)) => Some(count_lines(f)?),
        (EmbedFormat::Npy, None) => Some(args.texts.len()),
        _ => None,
    };
    let device = args.device.device()?;
    lstm_lm_infer::on_pool(move || -> Result<()> {
        // Opened here: standard input's lock stays on this thread.
        let mut source = TextSource::new(&args.texts, args.file.as_deref())?;
        let run = LoadedRun::load(&args.model, device)?;
        let width = run.embedding_width(&opts)?;
        let mut sink = Sink::open(args.out.as_deref())?;
        if let Some(n) = rows {
            sink.write(&npy_header(n, width))?;
        }
        let mut index = 0usize;
        // Texts with no vector (blank lines, say) get a row of zeros; one warning names them.
        let mut failed = 0usize;
        let mut first_failure: Option<String> = None;
        loop {
            let block = source.block(TEXTS_PER_BLOCK)?;
            if block.is_empty() {
                break;
            }
            let vectors = run.embed_many(&block, &opts);
            for (text, v) in block.iter().zip(vectors) {
                let v = match v {
                    Ok(v) => Ok(v),
                    Err(e) if args.format == EmbedFormat::Jsonl => Err(e),
                    Err(e) => {
                        failed += 1;
                        first_failure
                            .get_or_insert_with(|| format!("{}: {e}", source.describe(index)));
                        Ok(vec![0.0; width])
                    }
                };
                let bytes = match (args.format, v) {
                    (EmbedFormat::Jsonl, Ok(v)) => format!(
                        "{}\n",
                        serde_json::json!({"index": index, "text": text, "vector": v})
                    )
                    .into_bytes(),
                    (EmbedFormat::Jsonl, Err(e)) => format!(
                        "{}\n",
                        serde_json::json!({"index": index, "text": text, "error": e.to_string()})
                    )
                    .into_bytes(),
                    (EmbedFormat::Tsv, Ok(v)) => {
                        let cells: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                        format!("{}\n", cells.join("\t")).into_bytes()
                    }
                    (EmbedFormat::Npy, Ok(v)) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    (_, Err(e)) => return Err(e.into()),
                };
                sink.write(&bytes)?;
                index += 1;
            }
        }
        if let Some(first) = first_failure {
            eprintln!(
                "warning: {failed} of {index} texts have no vector, their rows are zeros (the first: {first})"
            );
        }
        if let Some(n) = rows
            && n != index
        {
            bail!(
                "{} changed while it was read: {n} lines counted, {index} embedded",
                source.describe(0)
            );
        }
        sink.finish()
    })
}

/// Lines in a file as [`Lines`] counts them (a last line without `\n` counts).
fn count_lines(path: &Path) -> Result<usize> {
    let mut lines = Lines::open(Some(path))?;
    let mut n = 0;
    while lines.next_line()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// The header of a version 1.0 `.npy` file holding a `[rows, width]` little-endian float32
/// array, padded so the data starts on a 64-byte boundary.
pub(crate) fn npy_header(rows: usize, width: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {width}), }}");
    let unpadded = 10 + dict.len() + 1;
    let padding = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + padding + 1;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padding));
    out.push(b'\n');
    out
}

/// Standard output, or a file written through a temporary file renamed into place at the end.
pub(crate) enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File {
        tmp: tempfile::NamedTempFile,
        path: PathBuf,
        out: std::io::BufWriter<std::fs::File>,
    },
}

impl Sink {
    pub(crate) fn open(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Sink::Stdout(std::io::BufWriter::new(std::io::stdout())));
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".lstm-lm-embed")
            .tempfile_in(dir)
            .with_context(|| {
                format!(
                    "cannot write into \"{}\" (check that the folder exists and is writable)",
                    dir.display()
                )
            })?;
        let out = std::io::BufWriter::new(tmp.reopen()?);
        Ok(Sink::File {
            tmp,
            path: path.to_path_buf(),
            out,
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Sink::Stdout(out) => out.write_all(bytes)?,
            Sink::File { out, path, .. } => out
                .write_all(bytes)
                .with_context(|| format!("cannot write \"{}\"", path.display()))?,
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<()> {
        match self {
            Sink::Stdout(mut out) => out.flush()?,
            Sink::File { tmp, path, out } => {
                let file = out.into_inner().map_err(|e| {
                    anyhow::anyhow!("cannot write \"{}\": {}", path.display(), e.error())
                })?;
                file.sync_all()?;
                tmp.persist(&path)
                    .with_context(|| format!("cannot write \"{}\"", path.display()))?;
            }
        }
        Ok(())
    }
}

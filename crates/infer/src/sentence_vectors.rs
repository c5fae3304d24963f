//! Sentence vectors: a text as one vector read off the recurrent states (the article's second
//! model). Texts go through the model in length-sorted batches, each from a zero state.
use std::str::FromStr;

use burn::tensor::Tensor;

use crate::InferError;
use crate::data;
use crate::session::LoadedRun;
use crate::text_batches::{length_batches, padded_ids};

/// Most positions (rows × width) one embedding batch runs.
const MAX_EMBED_CELLS: usize = 1 << 14;
/// Most texts in one embedding batch.
const MAX_EMBED_ROWS: usize = 64;

/// How the states at a text's positions become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The state after the text's last token.
    Last,
    /// The mean over the text's positions.
    Mean,
    /// The element-wise maximum over the text's positions.
    Max,
}

impl FromStr for Pooling {
    type Err = InferError;
    fn from_str(s: &str) -> Result<Self, InferError> {
        match s {
            "last" => Ok(Pooling::Last),
            "mean" => Ok(Pooling::Mean),
            "max" => Ok(Pooling::Max),
            other => Err(InferError::Input(format!(
                "--pool {other:?}: use last, mean or max"
            ))),
        }
    }
}

/// Which layers' states a vector is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerChoice {
    /// One layer, from 0 (the bottom one).
    Layer(usize),
    /// The top layer.
    Top,
    /// Every layer's vector, bottom first, one after the other.
    All,
}

impl FromStr for LayerChoice {
    type Err = InferError;
    fn from_str(s: &str) -> Result<Self, InferError> {
        match s {
            "all" => Ok(LayerChoice::All),
            "top" => Ok(LayerChoice::Top),
            n => n.parse().map(LayerChoice::Layer).map_err(|_| {
                InferError::Input(format!(
                    "--layer {n:?}: give a layer number from 0, top or all"
                ))
            }),
        }
    }
}

/// How sentence vectors are made. Default: the top layer's last state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Pooling over positions.
    pub pooling: Pooling,
    /// Layers read.
    pub layers: LayerChoice,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            pooling: Pooling::Last,
            layers: LayerChoice::Top,
        }
    }
}

impl LoadedRun {
    /// Length of the vectors [`embed_many`](Self::embed_many) returns with `opts`, checking
    /// the layer exists.
    pub fn embedding_width(&self, opts: &EmbedOptions) -> Result<usize, InferError> {
        let layers = self.model.num_layers();
        match opts.layers {
            LayerChoice::Layer(k) if k >= layers => Err(InferError::Input(format!(
                "--layer {k}: this model has {layers} layer(s), numbered from 0"
            ))),
            LayerChoice::All => Ok(self.model.layer_hidden_sizes().iter().sum()),
            LayerChoice::Layer(k) => Ok(self.model.layer_hidden_sizes()[k]),
            LayerChoice::Top => Ok(self.model.hidden_size()),
        }
    }

    /// One vector per text, in input order; a text with no known token has its error and does
    /// not stop the others.
    pub fn embed_many(
        &self,
        texts: &[String],
        opts: &EmbedOptions,
    ) -> Vec<Result<Vec<f32>, InferError>> {
        if let Err(e) = self.embedding_width(opts) {
            return texts
                .iter()
                .map(|_| Err(InferError::Input(e.to_string())))
                .collect();
        }
        let context = self.start_context();
        let prepared: Vec<Result<Vec<u32>, InferError>> = texts
            .iter()
            .map(|t| {
                let body = self.text_ids(t)?;
                if body.is_empty() {
                    return Err(InferError::Input(format!(
                        "{t:?} has no token this model's tokenizer knows"
                    )));
                }
                Ok(context.iter().chain(&body).copied().collect())
            })
            .collect();
        let inputs: Vec<Vec<u32>> = prepared
            .iter()
            .map(|p| p.as_ref().cloned().unwrap_or_default())
            .collect();
        let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let mut vectors: Vec<Option<Result<Vec<f32>, InferError>>> =
            (0..texts.len()).map(|_| None).collect();
        for batch in length_batches(&lengths, MAX_EMBED_ROWS, MAX_EMBED_CELLS) {
            let (rows, width) = (batch.rows.len(), batch.width);
            let ids = padded_ids(&inputs, &batch.rows, width, 0);
            let states = self.layer_states(&ids, rows, width, opts.layers);
            for (k, &r) in batch.rows.iter().enumerate() {
                vectors[r] = Some(match &states {
                    Ok(per_layer) => Ok(per_layer
                        .iter()
                        .flat_map(|values| {
                            pool(
                                values,
                                // Layers may differ in width (AWD-LSTM's shape).
                                values.len() / (rows * width).max(1),
                                k,
                                width,
                                context.len(),
                                lengths[r],
                                opts.pooling,
                            )
                        })
                        .collect()),
                    Err(e) => Err(InferError::Device(e.to_string())),
                });
            }
        }
        prepared
            .into_iter()
            .zip(vectors)
            .map(|(p, v)| {
                p?;
                v.unwrap_or_else(|| Err(InferError::Input("not embedded".into())))
            })
            .collect()
    }

    /// The chosen layers' outputs for a padded batch, each `[rows, width, hidden]` flattened.
    fn layer_states(
        &self,
        ids: &[u32],
        rows: usize,
        width: usize,
        layers: LayerChoice,
    ) -> Result<Vec<Vec<f32>>, InferError> {
        let input = data::ids_tensor(ids, rows, width, &self.device);
        let (outputs, _) = self.model.layer_outputs(input, None);
        let top = outputs.len() - 1;
        let chosen: Vec<Tensor<3>> = match layers {
            LayerChoice::All => outputs,
            LayerChoice::Top => vec![outputs[top].clone()],
            LayerChoice::Layer(k) => vec![outputs[k.min(top)].clone()],
        };
        chosen
            .into_iter()
            .map(|t| {
                t.try_into_vec_as::<f32>().map_err(|e| {
                    InferError::Device(format!(
                        "cannot read the hidden states back from the device: {e}"
                    ))
                })
            })
            .collect()
    }
}

/// Row `row`'s vector from one layer's `[rows, width, hidden]` values: positions
/// `from..len` (the text after its start context) pooled; `hidden` values per position.
fn pool(
    values: &[f32],
    hidden: usize,
    row: usize,
    width: usize,
    from: usize,
    len: usize,
    pooling: Pooling,
) -> Vec<f32> {
    let at = |t: usize| &values[(row * width + t) * hidden..(row * width + t + 1) * hidden];
    let from = from.min(len - 1);
    match pooling {
        Pooling::Last => at(len - 1).to_vec(),
        Pooling::Mean => {
            let mut sum = vec![0.0f64; hidden];
            for t in from..len {
                for (s, &x) in sum.iter_mut().zip(at(t)) {
                    *s += f64::from(x);
                }
            }
            let n = (len - from) as f64;
            sum.into_iter().map(|s| (s / n) as f32).collect()
        }
        Pooling::Max => {
            let mut best = at(from).to_vec();
            for t in from + 1..len {
                for (b, &x) in best.iter_mut().zip(at(t)) {
                    // NaN-propagating: a NaN state shows in the vector rather than vanishing.
                    if x > *b || x.is_nan() {
                        *b = x;
                    }
                }
            }
            best
        }
    }
}

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};

use crate::{LanguageModel, ModelError};

/// A weight tensor under its PyTorch name, as a flat row-major `f32` buffer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NamedTensor {
    /// PyTorch state-dict name, e.g. `rnn.weight_ih_l0`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

impl LanguageModel {
    /// The weights under the names pytorch/examples' word_language_model gives them:
    /// `encoder.weight`, `rnn.{weight_ih,weight_hh,bias_ih,bias_hh}_l{k}`, `decoder.weight`
    /// (absent when tied), `decoder.bias`.
    pub fn torch_state_dict(&self) -> Vec<NamedTensor> {
        let mut out = vec![named("encoder.weight", &self.embedding.val())];
        for (k, layer) in self.layers.iter().enumerate() {
            out.push(named(
                &format!("rnn.weight_ih_l{k}"),
                &layer.weight_ih.val(),
            ));
            out.push(named(
                &format!("rnn.weight_hh_l{k}"),
                &layer.weight_hh.val(),
            ));
            out.push(named(&format!("rnn.bias_ih_l{k}"), &layer.bias_ih.val()));
            out.push(named(&format!("rnn.bias_hh_l{k}"), &layer.bias_hh.val()));
        }
        if let Some(w) = &self.output_weight {
            out.push(named("decoder.weight", &w.val()));
        }
        out.push(named("decoder.bias", &self.output_bias.val()));
        out
    }

    /// Replaces every weight with the tensor of the same PyTorch name (see
    /// [`torch_state_dict`](Self::torch_state_dict)); shapes must match exactly.
    pub fn load_torch_state_dict(
        mut self,
        tensors: &[NamedTensor],
        device: &Device,
    ) -> Result<Self, ModelError> {
        let find = |name: &str, shape: &[usize]| -> Result<TensorData, ModelError> {
            let t = tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| ModelError::Weights(format!("missing tensor '{name}'")))?;
            if t.shape != shape {
                return Err(ModelError::Weights(format!(
                    "tensor '{name}' has shape {:?}, the model needs {shape:?}",
                    t.shape
                )));
            }
            Ok(TensorData::new(t.data.clone(), t.shape.clone()))
        };
        self.embedding = param2(
            find("encoder.weight", &self.embedding.val().dims())?,
            device,
        );
        for (k, layer) in self.layers.iter_mut().enumerate() {
            layer.weight_ih = param2(
                find(
                    &format!("rnn.weight_ih_l{k}"),
                    &layer.weight_ih.val().dims(),
                )?,
                device,
            );
            layer.weight_hh = param2(
                find(
                    &format!("rnn.weight_hh_l{k}"),
                    &layer.weight_hh.val().dims(),
                )?,
                device,
            );
            layer.bias_ih = param1(
                find(&format!("rnn.bias_ih_l{k}"), &layer.bias_ih.val().dims())?,
                device,
            );
            layer.bias_hh = param1(
                find(&format!("rnn.bias_hh_l{k}"), &layer.bias_hh.val().dims())?,
                device,
            );
        }
        if let Some(w) = &self.output_weight {
            let dims = w.val().dims();
            self.output_weight = Some(param2(find("decoder.weight", &dims)?, device));
        }
        self.output_bias = param1(
            find("decoder.bias", &self.output_bias.val().dims())?,
            device,
        );
        Ok(self)
    }
}

fn named<const D: usize>(name: &str, t: &Tensor<D>) -> NamedTensor {
    let data = t.to_data();
    NamedTensor {
        name: name.to_string(),
        shape: data.shape().to_vec(),
        data: data
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default(),
    }
}

fn param2(data: TensorData, device: &Device) -> Param<Tensor<2>> {
    Param::from_tensor(Tensor::from_data(data, device))
}

fn param1(data: TensorData, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::from_data(data, device))
}

//! AWD-LSTM's model-side pieces: per-layer hidden sizes with a tied top layer, regularisers that
//! act only while training, and weight drop through the fused kernel (the dropped matrix is an
//! input of the kernel; the gradient reaches the parameter through the mask).
use lstm_lm_model::burn::module::Module;
use lstm_lm_model::burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use lstm_lm_model::regularisation::Regularisation;
use lstm_lm_model::testing::assert_close;
use lstm_lm_model::{CellKind, LanguageModelConfig, LayerState, RecurrentLayer, fused};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn ids(device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = (0..24).map(|i| (i * 7 % 50) as i64).collect();
    Tensor::from_data(TensorData::new(data, [3, 8]), device)
}

fn awd_shape() -> LanguageModelConfig {
    LanguageModelConfig::new(50)
        .with_embedding_size(8)
        .with_hidden_size(12)
        .with_hidden_sizes(Some(vec![12, 10, 8]))
        .with_num_layers(3)
        .with_tie_weights(true)
}

#[test]
fn per_layer_sizes_and_a_tied_top_layer_have_awd_lstm_shapes() {
    let device = Device::flex();
    let config = awd_shape();
    let model = config.init(&device).unwrap();
    let shapes: Vec<([usize; 2], [usize; 2])> = model
        .layers
        .iter()
        .map(|l| (l.weight_ih.dims(), l.weight_hh.dims()))
        .collect();
    assert_eq!(
        shapes,
        vec![
            ([48, 8], [48, 12]),
            ([40, 12], [40, 10]),
            ([32, 10], [32, 8])
        ]
    );
    assert!(model.is_tied());
    assert_eq!(model.hidden_size(), 8);
    assert_eq!(model.layer_hidden_sizes(), &[12, 10, 8]);
    assert_eq!(config.num_parameters(), model.num_params() as u128);
    let (logits, state) = model.forward(ids(&device), None);
    assert_eq!(logits.dims(), [3, 8, 50]);
    let widths: Vec<[usize; 2]> = state.layers.iter().map(|l| l.hidden.dims()).collect();
    assert_eq!(widths, vec![[3, 12], [3, 10], [3, 8]]);
    // The carried state goes back in.
    let (again, _) = model.forward(ids(&device), Some(state));
    assert!(values(again).iter().all(|v| v.is_finite()));
    // Untied, the output projection reads the top layer's width.
    let untied = awd_shape().with_tie_weights(false).init(&device).unwrap();
    assert_eq!(untied.output_weight.as_ref().unwrap().dims(), [50, 8]);

    // Tying needs the top layer's width to be the embedding's; one width per layer.
    let e = awd_shape()
        .with_hidden_sizes(Some(vec![12, 10, 9]))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tie_weights needs embedding_size == hidden_size of the top layer"),
        "{e}"
    );
    let e = awd_shape()
        .with_hidden_sizes(Some(vec![12, 8]))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hidden_sizes has 2 entries but num_layers is 3"),
        "{e}"
    );
}

/// A config written before `hidden_sizes` existed (no such key) still loads, with every layer
/// at `hidden_size`.
#[test]
fn configs_without_hidden_sizes_still_load() {
    let mut json = serde_json::to_value(LanguageModelConfig::new(10)).unwrap();
    json.as_object_mut().unwrap().remove("hidden_sizes");
    let config: LanguageModelConfig = serde_json::from_value(json).unwrap();
    assert_eq!(config.hidden_sizes, None);
    assert_eq!(config.layer_hidden_size(0), config.hidden_size);
}

/// On a device without autodiff (evaluation, generation) nothing is dropped: the regularised
/// model gives the plain model's outputs. While training, the outputs change.
#[test]
fn regularisers_act_only_while_training() {
    let config = awd_shape()
        .with_dropout_embedding(0.4)
        .with_dropout_between(0.3)
        .with_dropout_output(0.4);
    let reg = Regularisation {
        locked_dropout: true,
        weight_drop: 0.5,
        embedding_dropout: 0.1,
    };
    let device = Device::flex();
    device.seed(5);
    let plain = config.init(&device).unwrap();
    let regularised = plain.clone().with_regularisation(reg);
    let (a, _) = plain.forward(ids(&device), None);
    let (b, _) = regularised.forward(ids(&device), None);
    assert_eq!(
        values(a.clone()),
        values(b),
        "evaluation must not drop anything"
    );

    let train = device.clone().autodiff();
    let trained = regularised.fork(&train);
    let (c, _) = trained.forward(ids(&train), None);
    let c = values(c);
    assert!(c.iter().all(|v| v.is_finite()));
    assert_ne!(values(a), c, "training draws masks");
}

/// The LSTM written with tensor operations, reading the hidden-to-hidden matrix `w_hh`.
fn composed_lstm(x: Tensor<3>, layer: &RecurrentLayer, w_hh: Tensor<2>) -> Tensor<3> {
    use lstm_lm_model::burn::tensor::activation::{sigmoid, tanh};
    let [batch, time, input] = x.dims();
    let hidden = layer.hidden_size;
    let bias = (layer.bias_ih.val() + layer.bias_hh.val()).unsqueeze::<2>();
    let (w_ih, w_hh) = (layer.weight_ih.val().transpose(), w_hh.transpose());
    let mut h = Tensor::<2>::zeros([batch, hidden], &x.device());
    let mut c = h.clone();
    let mut outs = Vec::new();
    for t in 0..time {
        let x_t = x.clone().narrow(1, t, 1).reshape([batch, input]);
        let z = x_t.matmul(w_ih.clone()) + h.clone().matmul(w_hh.clone()) + bias.clone();
        let gate = |k: usize| z.clone().narrow(1, k * hidden, hidden);
        c = sigmoid(gate(1)) * c + sigmoid(gate(0)) * tanh(gate(2));
        h = sigmoid(gate(3)) * tanh(c.clone());
        outs.push(h.clone().unsqueeze_dim::<3>(1));
    }
    Tensor::cat(outs, 1)
}

/// The fused kernel given a dropped matrix: its output and its gradient for that matrix equal
/// the composed reference's, and the parameter's gradient is that gradient times the mask
/// (zero exactly where the mask dropped an entry).
#[test]
fn weight_drop_reaches_the_fused_kernel_as_an_input_and_its_gradient_through_the_mask() {
    let device = Device::flex().autodiff();
    device.seed(9);
    let (batch, time, input, hidden) = (9, 6, 5, 7);
    let layer = RecurrentLayer::new(CellKind::Lstm, input, hidden, &device);
    let x = Tensor::<3>::random(
        [batch, time, input],
        Distribution::Uniform(-1.0, 1.0),
        &device,
    );
    let mask = Tensor::<2>::random([4 * hidden, hidden], Distribution::Bernoulli(0.5), &device)
        .mul_scalar(2.0);
    assert!(fused::applies(&x), "the fused kernel runs on flex");

    // Through the parameter: dropped = W ⊙ mask.
    let dropped = layer.weight_hh.val() * mask.clone();
    let state = LayerState {
        hidden: Tensor::zeros([batch, hidden], &device),
        cell: Some(Tensor::zeros([batch, hidden], &device)),
    };
    let (out, _) = layer.forward_with(x.clone(), state.clone(), dropped.clone());
    let grads = out.clone().powi_scalar(2).sum().backward();
    let g_param = values(layer.weight_hh.val().grad(&grads).unwrap());

    // The gradient for the dropped matrix itself, as a leaf, fused and composed.
    let leaf = dropped.clone().detach().require_grad();
    let (fused_out, _) = layer.forward_with(x.clone(), state, leaf.clone());
    let g_fused = fused_out.clone().powi_scalar(2).sum().backward();
    let g_leaf = values(leaf.grad(&g_fused).unwrap());
    let leaf2 = dropped.detach().require_grad();
    let reference = composed_lstm(x, &layer, leaf2.clone());
    let g_composed = reference.clone().powi_scalar(2).sum().backward();
    assert_close("output", &values(fused_out), &values(reference), 1e-4);
    assert_close(
        "dropped-matrix gradient",
        &g_leaf,
        &values(leaf2.grad(&g_composed).unwrap()),
        1e-4,
    );
    let m = values(mask);
    let through: Vec<f32> = g_leaf.iter().zip(&m).map(|(g, m)| g * m).collect();
    assert_close("parameter gradient", &g_param, &through, 1e-5);
    let zero_where_dropped = g_param.iter().zip(&m).all(|(g, m)| *m != 0.0 || *g == 0.0);
    assert!(zero_where_dropped, "dropped entries get no gradient");
    assert!(g_param.iter().any(|g| *g != 0.0));
}

/// Generation's host path reads per-layer widths: step by step it gives the tensor model's
/// logits for the AWD shape (the LSTM of the widest layer split across threads, the others not),
/// GRU included.
#[test]
fn host_generation_follows_per_layer_sizes() {
    use lstm_lm_model::fused::HostLanguageModel;
    let device = Device::flex();
    device.seed(2);
    for (cell, sizes) in [
        (CellKind::Lstm, vec![300, 40, 8]),
        (CellKind::Gru, vec![12, 10, 8]),
    ] {
        let model = awd_shape()
            .with_cell(cell)
            .with_hidden_sizes(Some(sizes))
            .init(&device)
            .unwrap();
        let (logits, _) = model.forward(ids(&device), None);
        let want = values(logits);
        let host = HostLanguageModel::new(&model);
        let mut state = host.zero_state();
        let row: Vec<i64> = (0..8).map(|i| (i * 7 % 50) as i64).collect();
        for (t, &id) in row.iter().enumerate() {
            host.step(id as u32, &mut state);
            assert_close(
                &format!("{cell:?} step {t}"),
                state.logits(),
                &want[t * 50..(t + 1) * 50],
                1e-4,
            );
        }
    }
}

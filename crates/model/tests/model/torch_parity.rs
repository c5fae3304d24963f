//! Forward parity with PyTorch: `tools/torch_parity_fixture.py` wrote weights, inputs and
//! `nn.LSTM` / `nn.GRU` outputs; the same weights loaded by PyTorch name must give the same
//! logits and final states to 1e-5.
use lstm_lm_model::burn::tensor::{Device, Int, Tensor, TensorData};
use lstm_lm_model::{CellKind, LanguageModelConfig, LayerState, NamedTensor, RecurrentState};
use serde_json::Value;

const TOLERANCE: f32 = 1e-5;

fn fixture() -> Value {
    let text = include_str!("fixtures/torch_parity.json");
    serde_json::from_str(text).expect("fixture is valid JSON")
}

fn named(v: &Value) -> NamedTensor {
    serde_json::from_value(v.clone()).expect("named tensor")
}

fn layer_slices(t: &NamedTensor, layer: usize, device: &Device) -> Tensor<2> {
    let (b, h) = (t.shape[1], t.shape[2]);
    let start = layer * b * h;
    Tensor::from_data(
        TensorData::new(t.data[start..start + b * h].to_vec(), [b, h]),
        device,
    )
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    lstm_lm_model::testing::assert_close(what, got, want, TOLERANCE);
}

fn check_case(case: &Value, device: &Device) {
    let cell = match case["cell"].as_str().unwrap() {
        "lstm" => CellKind::Lstm,
        "gru" => CellKind::Gru,
        other => panic!("unknown cell {other}"),
    };
    let get = |k: &str| case[k].as_u64().unwrap() as usize;
    let config = LanguageModelConfig::new(get("vocab_size"))
        .with_embedding_size(get("embedding_size"))
        .with_hidden_size(get("hidden_size"))
        .with_num_layers(get("num_layers"))
        .with_cell(cell);
    let weights: Vec<NamedTensor> = case["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(named)
        .collect();
    let model = config
        .init(device)
        .unwrap()
        .load_torch_state_dict(&weights, device)
        .unwrap();
    let ids: Vec<Vec<i64>> = serde_json::from_value(case["ids"].clone()).unwrap();
    let (b, t) = (ids.len(), ids[0].len());
    let flat: Vec<i64> = ids.into_iter().flatten().collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, t]), device);
    let h0 = named(&case["h0"]);
    let c0 = case.get("c0").map(named);
    let state = RecurrentState {
        layers: (0..get("num_layers"))
            .map(|k| LayerState {
                hidden: layer_slices(&h0, k, device),
                cell: c0.as_ref().map(|c| layer_slices(c, k, device)),
            })
            .collect(),
    };
    let (logits, state) = model.forward(ids, Some(state));
    let want = named(&case["logits"]);
    assert_eq!(logits.dims().to_vec(), want.shape, "logits shape");
    assert_close(
        &format!("{cell:?} logits"),
        &logits.into_data().try_to_vec::<f32>().unwrap(),
        &want.data,
    );
    let h_n: Vec<f32> = state
        .layers
        .iter()
        .flat_map(|l| l.hidden.to_data().try_to_vec::<f32>().unwrap())
        .collect();
    assert_close(&format!("{cell:?} h_n"), &h_n, &named(&case["h_n"]).data);
    if let Some(c_n) = case.get("c_n") {
        let got: Vec<f32> = state
            .layers
            .iter()
            .flat_map(|l| {
                l.cell
                    .as_ref()
                    .unwrap()
                    .to_data()
                    .try_to_vec::<f32>()
                    .unwrap()
            })
            .collect();
        assert_close("LSTM c_n", &got, &named(c_n).data);
    }
}

#[test]
fn lstm_and_gru_match_pytorch_on_flex() {
    let device = Device::flex();
    for case in fixture()["cases"].as_array().unwrap() {
        check_case(case, &device);
    }
}

#[test]
fn lstm_and_gru_match_pytorch_on_ndarray() {
    let device = lstm_lm_model::device_for(lstm_lm_model::BackendKind::Ndarray, 0).unwrap();
    for case in fixture()["cases"].as_array().unwrap() {
        check_case(case, &device);
    }
}

#[test]
fn a_perturbed_weight_breaks_parity() {
    let device = Device::flex();
    let mut case = fixture()["cases"][0].clone();
    // Nudge one recurrent weight: the check above must then fail.
    let w = case["weights"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|w| w["name"] == "rnn.weight_hh_l1")
        .unwrap();
    let v = w["data"][3].as_f64().unwrap();
    w["data"][3] = Value::from(v + 1e-2);
    let result = std::panic::catch_unwind(|| check_case(&case, &device));
    assert!(result.is_err(), "a perturbed weight still matched PyTorch");
}

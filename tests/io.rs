//! Saving and loading parameters as safetensors: round trips, PyTorch's names and files,
//! and a clear error (with the model unchanged) for every kind of bad file.

mod common;

use std::path::PathBuf;

use wgrad::nn::{Linear, Module, ReLU, Sequential, Tanh};
use wgrad::prelude::*;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn mlp(dev: &Device) -> Sequential {
    Sequential::new()
        .add(Linear::new(dev, 4, 8))
        .add(ReLU)
        .add(Linear::new(dev, 8, 3))
        .add(Tanh)
}

fn values(m: &dyn Module) -> Vec<Vec<f32>> {
    m.parameters()
        .iter()
        .map(|t| t.to_vec::<f32>().unwrap())
        .collect()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

#[test]
fn a_sequential_saves_with_pytorch_key_names_and_layouts() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let m = mlp(&dev);
    let path = tmp("names.safetensors");
    wgrad::io::save(&m, &path).unwrap();
    let back = wgrad::io::read_safetensors(&path, &dev).unwrap();
    let names: Vec<(&str, Vec<usize>)> = back
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape().to_vec()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("0.bias", vec![8]),
            ("0.weight", vec![8, 4]),
            ("2.bias", vec![3]),
            ("2.weight", vec![3, 8])
        ]
    );
}

common::test_device!(
    a_round_trip_restores_the_same_function_on_both_devices_cpu,
    a_round_trip_restores_the_same_function_on_both_devices_gpu,
    |dev| {
        let _serial = common::exclusive();
        dev.manual_seed(1);
        let a = mlp(&dev);
        let path = tmp(&format!("round-{}.safetensors", dev.is_gpu()));
        wgrad::io::save(&a, &path).unwrap();
        dev.manual_seed(2);
        let b = mlp(&dev);
        assert_ne!(values(&a), values(&b));
        wgrad::io::load(&b, &path).unwrap();
        assert_eq!(values(&a), values(&b));
        let x = Tensor::randn_seeded(&[5, 4], 3, &dev).unwrap();
        let (ya, yb) = (a.forward(&x).unwrap(), b.forward(&x).unwrap());
        assert_eq!(ya.to_vec::<f32>().unwrap(), yb.to_vec::<f32>().unwrap());
    }
);

common::test_device!(
    a_file_written_by_pytorch_loads_and_gives_pytorchs_outputs_cpu,
    a_file_written_by_pytorch_loads_and_gives_pytorchs_outputs_gpu,
    |dev| {
        let _serial = common::exclusive();
        // tests/fixtures/make_torch_fixture.py wrote these with torch 2 and safetensors.
        let m = mlp(&dev);
        wgrad::io::load(&m, fixture("torch_mlp.safetensors")).unwrap();
        let io = wgrad::io::read_safetensors(fixture("torch_mlp_io.safetensors"), &dev).unwrap();
        let get = |k: &str| io.iter().find(|(n, _)| n == k).unwrap().1.clone();
        let y = m.forward(&get("input")).unwrap().to_vec::<f32>().unwrap();
        common::assert_close(
            &y,
            &get("output").to_vec::<f32>().unwrap(),
            1e-5,
            0.0,
            "output vs PyTorch",
        );
    }
);

fn assert_rejected(m: &Sequential, path: &std::path::Path, needle: &str) {
    let before = values(m);
    let err = wgrad::io::load(m, path).unwrap_err().to_string();
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(
        values(m),
        before,
        "a failed load must leave the model unchanged"
    );
}

#[test]
fn every_bad_file_is_a_clear_error_and_leaves_the_model_unchanged() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let m = mlp(&dev);
    let good = tmp("good.safetensors");
    wgrad::io::save(&m, &good).unwrap();
    let mut state = m.state_dict();

    // Missing key.
    let p = tmp("missing.safetensors");
    wgrad::io::write_safetensors(&state[1..], &p).unwrap();
    assert_rejected(&m, &p, "missing key 0.weight");

    // Unexpected key.
    let p = tmp("unexpected.safetensors");
    let mut extra = state.clone();
    extra.push(("4.weight".into(), Tensor::zeros(&[2], &dev).unwrap()));
    wgrad::io::write_safetensors(&extra, &p).unwrap();
    assert_rejected(&m, &p, "unexpected key 4.weight");

    // Wrong shape.
    let p = tmp("shape.safetensors");
    state[0].1 = Tensor::zeros(&[4, 8], &dev).unwrap();
    wgrad::io::write_safetensors(&state, &p).unwrap();
    assert_rejected(&m, &p, "shape [4, 8] in the file, [8, 4] in the model");

    // Wrong dtype.
    let p = tmp("dtype.safetensors");
    let mut f64_state = m.state_dict();
    f64_state[1].1 = f64_state[1].1.to_dtype(DType::F64).unwrap();
    wgrad::io::write_safetensors(&f64_state, &p).unwrap();
    assert_rejected(&m, &p, "dtype F64 in the file, F32 in the model");

    // Truncated.
    let bytes = std::fs::read(&good).unwrap();
    let p = tmp("truncated.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    assert_rejected(&m, &p, "not a valid safetensors file");

    // Corrupt header.
    let p = tmp("corrupt.safetensors");
    let mut bad = bytes.clone();
    for b in &mut bad[8..40] {
        *b = b'#';
    }
    std::fs::write(&p, &bad).unwrap();
    assert_rejected(&m, &p, "not a valid safetensors file");

    // Not there at all.
    let err = wgrad::io::load(&m, tmp("absent.safetensors")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn a_checkpoint_given_to_load_names_the_missing_keys_and_the_prefix() {
    let _serial = common::exclusive();
    let dev = Device::cpu();
    let m = mlp(&dev);
    let opt = Sgd::new(m.parameters(), 0.1).momentum(0.9);
    let p = tmp("checkpoint.safetensors");
    wgrad::io::save_checkpoint(&p, &m, &opt, None, &dev, 0, 0).unwrap();
    assert_rejected(&m, &p, "missing key 0.weight");
    assert_rejected(&m, &p, "unexpected key model.0.weight");
    assert_rejected(&m, &p, "prefix \"model.\"");
    // Saving over an existing file replaces it and leaves no temporary file behind.
    wgrad::io::save(&m, &p).unwrap();
    wgrad::io::load(&m, &p).unwrap();
    let dir = p.parent().unwrap();
    let temps: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(wgrad::io::TEMP_SUFFIX)
        })
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

//! The browser demo's wasm module (see `web/index.html` and the README's "In the
//! browser"): the digits MLP of `examples/digits_mlp.rs`, trained in the page on the
//! browser's WebGPU device (or the wasm CPU backend) from the digits embedded in the
//! module, one epoch per call so that the page can draw its curves between epochs, and
//! a classifier for the 8x8 digit the user draws. Nothing here blocks: every readback
//! is awaited.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use js_sys::{Float32Array, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgrad::data::{Batch, DataLoader, Dataset};
use wgrad::nn::{Dropout, Linear, Module, ReLU, Sequential};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::prelude::*;

/// The bundled digits (`data/digits.csv.gz`, 1,797 images; source and licence in
/// `data/SOURCES.md`), embedded: the page needs no data download.
const DIGITS: &[u8] = include_bytes!("../../data/digits.csv.gz");

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

struct State {
    dev: Device,
    model: Sequential,
    opt: Sgd,
    loader: DataLoader,
    test: Batch,
    epoch: u32,
}

/// A training run in the page.
#[wasm_bindgen]
pub struct Demo {
    state: Rc<RefCell<State>>,
    adapter: String,
    train_size: usize,
    test_size: usize,
    parameters: usize,
}

/// 64-128-64-10 with ReLU and dropout `p`: `examples/digits_mlp.rs`'s model.
fn build_model(dev: &Device, p: f64) -> Sequential {
    Sequential::new()
        .add(Linear::new(dev, 64, 128))
        .add(ReLU)
        .add(Dropout::new(p))
        .add(Linear::new(dev, 128, 64))
        .add(ReLU)
        .add(Dropout::new(p))
        .add(Linear::new(dev, 64, 10))
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) -> std::result::Result<(), JsValue> {
    Reflect::set(obj, &JsValue::from_str(key), &value.into()).map(|_| ())
}

/// The device's description for the page: the adapter's name where the browser gives
/// one (browsers often withhold it), its type and the API.
fn describe(dev: &Device) -> String {
    match dev {
        Device::Cpu => "wasm CPU backend (one thread)".into(),
        Device::Gpu(g) => {
            let a = g.adapter();
            let kind = match a.device_type.as_str() {
                "Cpu" => "a software adapter on the CPU: SwiftShader in Chrome",
                "DiscreteGpu" => "discrete GPU",
                "IntegratedGpu" => "integrated GPU",
                "VirtualGpu" => "virtual GPU",
                _ => "GPU",
            };
            if a.name.is_empty() {
                // Browsers often withhold the adapter's name.
                format!("WebGPU ({kind})")
            } else {
                format!("WebGPU: {} ({kind})", a.name)
            }
        }
    }
}

#[wasm_bindgen]
impl Demo {
    /// Opens the device (`"gpu"`: the browser's WebGPU; `"cpu"`: the wasm CPU backend),
    /// loads the embedded digits, splits them 4:1 by `seed` and builds the model with
    /// SGD (momentum 0.9) at learning rate `lr`, batches of `batch_size`, dropout `p`.
    pub async fn create(
        device: String,
        seed: u32,
        batch_size: u32,
        lr: f64,
        p: f64,
    ) -> std::result::Result<Demo, JsValue> {
        console_error_panic_hook::set_once();
        let dev = match device.as_str() {
            "gpu" => Device::gpu_async().await.map_err(js_err)?,
            "cpu" => Device::cpu(),
            other => return Err(js_err(format!("device must be gpu or cpu, not {other}"))),
        };
        dev.manual_seed(seed as u64);
        let digits =
            wgrad::data::digits::from_gzip_bytes(DIGITS, "the embedded digits").map_err(js_err)?;
        let digits: Arc<dyn Dataset> = Arc::new(digits);
        let (train, test) =
            wgrad::data::train_test_split(digits, 0.2, seed as u64).map_err(js_err)?;
        let all: Vec<usize> = (0..test.len()).collect();
        let test_batch = wgrad::data::make_batch(&test, &all, &dev).map_err(js_err)?;
        let train_size = train.len();
        let loader =
            DataLoader::new(Arc::new(train), batch_size as usize, &dev).shuffle(seed as u64);
        let model = build_model(&dev, p);
        let opt = Sgd::new(model.parameters(), lr).momentum(0.9);
        Ok(Demo {
            adapter: describe(&dev),
            train_size,
            test_size: all.len(),
            parameters: model.num_parameters(),
            state: Rc::new(RefCell::new(State {
                dev,
                model,
                opt,
                loader,
                test: test_batch,
                epoch: 0,
            })),
        })
    }

    /// The device the model trains on.
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Training images.
    #[wasm_bindgen(js_name = trainSize)]
    pub fn train_size(&self) -> usize {
        self.train_size
    }

    /// Test images.
    #[wasm_bindgen(js_name = testSize)]
    pub fn test_size(&self) -> usize {
        self.test_size
    }

    /// The model's parameters.
    pub fn parameters(&self) -> usize {
        self.parameters
    }

    /// Trains one epoch and resolves to `{ epoch, loss, testAccuracy }` (the mean
    /// training loss and the accuracy on the held-out fifth). Two readbacks per epoch,
    /// both awaited.
    pub fn epoch(&self) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            // Everything is recorded first (the borrow ends before the first await):
            // the GPU runs the epoch while the page waits for its two readbacks.
            let (loss_sum, batches, pred, want, epoch) = {
                let mut s = state
                    .try_borrow_mut()
                    .map_err(|_| js_err("the demo is busy: one epoch at a time"))?;
                let s = &mut *s;
                let mut loss_sum = Tensor::scalar(0.0, &s.dev).map_err(js_err)?;
                let mut batches = 0;
                for batch in s.loader.epoch() {
                    let batch = batch.map_err(js_err)?;
                    let loss = s
                        .model
                        .forward(&batch.x)
                        .and_then(|y| y.cross_entropy(&batch.y))
                        .map_err(js_err)?;
                    s.opt.zero_grad();
                    loss.backward().map_err(js_err)?;
                    s.opt.step().map_err(js_err)?;
                    loss_sum = loss_sum.add(&loss.detach()).map_err(js_err)?;
                    batches += 1;
                }
                s.epoch += 1;
                s.model.eval();
                let pred = no_grad(|| s.model.forward(&s.test.x)?.argmax(1, false));
                s.model.train();
                (
                    loss_sum,
                    batches,
                    pred.map_err(js_err)?,
                    s.test.y.clone(),
                    s.epoch,
                )
            };
            let loss = loss_sum.item_async().await.map_err(js_err)? / batches.max(1) as f64;
            let pred = pred.to_vec_async::<u32>().await.map_err(js_err)?;
            let want = want.to_vec_async::<u32>().await.map_err(js_err)?;
            let right = pred.iter().zip(&want).filter(|(p, w)| p == w).count();
            let out = Object::new();
            set(&out, "epoch", epoch)?;
            set(&out, "loss", loss)?;
            set(
                &out,
                "testAccuracy",
                right as f64 / want.len().max(1) as f64,
            )?;
            Ok(out.into())
        })
    }

    /// The class probabilities of one 8x8 digit (64 grey levels 0..16, row by row, as
    /// in the data set), resolving to a `Float32Array` of 10.
    pub fn classify(&self, pixels: Vec<f32>) -> Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            if pixels.len() != 64 {
                return Err(js_err(format!("64 pixels, not {}", pixels.len())));
            }
            let probs = {
                let s = state
                    .try_borrow()
                    .map_err(|_| js_err("the demo is busy: an epoch is being recorded"))?;
                let x: Vec<f32> = pixels.iter().map(|p| p.clamp(0.0, 16.0) / 16.0).collect();
                let x = Tensor::from_vec(x, &[1, 64], &s.dev).map_err(js_err)?;
                s.model.eval();
                let probs = no_grad(|| s.model.forward(&x)?.softmax(1));
                s.model.train();
                probs.map_err(js_err)?
            };
            let probs = probs.to_vec_async::<f32>().await.map_err(js_err)?;
            Ok(Float32Array::from(probs.as_slice()).into())
        })
    }
}

//! `builtin:tvae`: the tabular variational autoencoder of Xu et al. (2019),
//! as SDV's `TVAESynthesizer` trains it — CTGAN's transformer, a (128, 128)
//! encoder and decoder, a learned output scale per α, and loss = 2 ×
//! reconstruction + KL — with the data on the device.

use std::sync::Mutex;

use arrow::record_batch::RecordBatch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Kind, Tensor};

use super::transformer::{Activation, Transformer};
use super::{
    FitSizes, Fitted, common_params, device, linear, load_weights, positive, sample_encoded, to_i64, torch_err,
    torch_lock,
};
use crate::params::{ParamSpec, Params};
use crate::saved::ModelReader;
use crate::{ColumnModel, Error, Generator, Model, Progress, Result, TrainingData};

const NAME: &str = "tvae";
const HIDDEN: [i64; 2] = [128, 128];
const LOSS_FACTOR: f64 = 2.0;

/// The TVAE generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tvae;

fn mlp(p: &nn::Path<'_>, input: i64) -> (nn::Sequential, i64) {
    let mut seq = nn::seq();
    let mut dim = input;
    for (i, &h) in HIDDEN.iter().enumerate() {
        seq = seq.add(linear(p / format!("fc{i}"), dim, h)).add_fn(Tensor::relu);
        dim = h;
    }
    (seq, dim)
}

struct Decoder {
    body: nn::Sequential,
    out: nn::Linear,
    /// Output scale of every encoded value (used for α blocks).
    sigma: Tensor,
}

impl Decoder {
    fn forward(&self, z: &Tensor) -> Tensor {
        self.body.forward(z).apply(&self.out)
    }
}

impl Generator for Tvae {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "TVAE on libtorch: CTGAN's transformer, variational autoencoder with learned output scales; \
         GPU when available."
    }

    fn saves_models(&self) -> bool {
        true
    }

    fn params(&self) -> Vec<ParamSpec> {
        common_params(300, 500)
    }

    #[allow(clippy::too_many_lines, reason = "the training loop reads best in one piece")]
    fn fit(
        &self,
        data: &TrainingData<'_>,
        params: &Params,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Model>> {
        let epochs = positive(params, "epochs", 300)?;
        let batch = positive(params, "batch_size", 500)?;
        let embedding = positive(params, "embedding_dim", 128)?;
        let max_categories = usize::try_from(positive(params, "max_categories", 1000)?).unwrap_or(usize::MAX);
        let device = device(params)?;
        data.check_semantics()?;
        let _torch = torch_lock();
        tch::manual_seed(i64::from_ne_bytes(seed.to_ne_bytes()));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (transformer, encoded) = Transformer::fit(data.batch, data.semantics, max_categories, &mut rng)?;
        let rows = to_i64(data.batch.num_rows());
        let width = to_i64(transformer.width);
        let table = Tensor::from_slice(&encoded).view([rows, width]).to_device(device);
        drop(encoded);

        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (encoder, h) = mlp(&(&root / "encoder"), width);
        let mu = linear(&root / "mu", h, embedding);
        let logvar = linear(&root / "logvar", h, embedding);
        let decoder = decoder(&root, embedding, width);
        let mut opt = nn::adam(0.9, 0.999, 1e-5).build(&vs, 1e-3).map_err(torch_err)?;
        let steps = (rows / batch).max(1);
        let mut last = 0.0;
        for epoch in 0..epochs {
            if progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            // One shuffle per epoch, on the device.
            let order = Tensor::randperm(rows, (Kind::Int64, device));
            for step in 0..steps {
                let idx = order.narrow(0, step * batch, batch.min(rows - step * batch));
                let real = table.index_select(0, &idx);
                let b = real.size()[0];
                let hidden = encoder.forward(&real);
                let m = hidden.apply(&mu);
                let lv = hidden.apply(&logvar);
                let std = (&lv * 0.5).exp();
                let z = Tensor::randn_like(&std) * &std + &m;
                let rec = decoder.forward(&z);
                let mut recon = Tensor::zeros([], (Kind::Float, device));
                for s in &transformer.spans {
                    let (start, w) = (to_i64(s.start), to_i64(s.width));
                    match s.activation {
                        Activation::Tanh => {
                            let sigma = decoder.sigma.narrow(0, start, 1);
                            let target = real.narrow(1, start, 1);
                            let pred = rec.narrow(1, start, 1).tanh();
                            let err: Tensor = (target - pred).square() / (2.0 * sigma.square());
                            recon += err.sum(Kind::Float);
                            recon += sigma.log().sum(Kind::Float) * (b as f64);
                        }
                        Activation::Softmax => {
                            let target = real.narrow(1, start, w).argmax(1, false);
                            let logits = rec.narrow(1, start, w);
                            recon += -logits
                                .log_softmax(1, Kind::Float)
                                .gather(1, &target.unsqueeze(1), false)
                                .sum(Kind::Float);
                        }
                    }
                }
                let inner: Tensor = 1.0 + &lv - m.square() - lv.exp();
                let kld = -0.5 * inner.sum(Kind::Float);
                let loss: Tensor = (recon * LOSS_FACTOR + kld) / (b as f64);
                opt.zero_grad();
                loss.backward();
                opt.step();
                tch::no_grad(|| {
                    let _ = decoder.sigma.data().clamp_(0.01, 1.0);
                });
                last = loss.double_value(&[]);
            }
            progress.advance(
                u64::try_from(epoch + 1).unwrap_or(0),
                u64::try_from(epochs).unwrap_or(1),
            );
        }
        Ok(Box::new(TvaeModel {
            inner: Mutex::new(Inner { vs, decoder }),
            fitted: Fitted::trained(
                transformer,
                data.semantics.to_vec(),
                FitSizes {
                    embedding,
                    batch,
                    device,
                    epochs,
                },
                (last, 0.0),
                data.batch.num_rows(),
            ),
        }))
    }
}

struct Inner {
    vs: nn::VarStore,
    decoder: Decoder,
}

/// The decoder half of the network, under `root` (what sampling needs).
fn decoder(root: &nn::Path<'_>, embedding: i64, width: i64) -> Decoder {
    let (body, h) = mlp(&(root / "decoder"), embedding);
    Decoder {
        body,
        out: linear(root / "out", h, width),
        sigma: root.var("sigma", &[width], nn::Init::Const(0.1)),
    }
}

/// Whether a variable belongs to [`decoder`].
fn is_decoder(name: &str) -> bool {
    name.starts_with("decoder.") || name.starts_with("out.") || name == "sigma"
}

/// Rebuild a TVAE saved by [`Model::save`], on the GPU when there is one.
pub(crate) fn load(r: &ModelReader<'_>) -> Result<Box<dyn Model>> {
    let fitted = Fitted::open(r)?;
    let _torch = torch_lock();
    let vs = nn::VarStore::new(fitted.device);
    let decoder = decoder(&vs.root(), fitted.embedding, to_i64(fitted.transformer.width));
    load_weights(&vs, r)?;
    Ok(Box::new(TvaeModel {
        inner: Mutex::new(Inner { vs, decoder }),
        fitted,
    }))
}

/// A trained TVAE.
pub struct TvaeModel {
    inner: Mutex<Inner>,
    fitted: Fitted,
}

impl std::fmt::Debug for TvaeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TvaeModel")
            .field("fitted", &self.fitted)
            .finish_non_exhaustive()
    }
}

impl Model for TvaeModel {
    fn sample(&self, rows: usize, seed: u64, progress: &dyn Progress) -> Result<RecordBatch> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let f = &self.fitted;
        let out = sample_encoded(rows, f.batch, f.transformer.width, seed, progress, |b| {
            let z = Tensor::randn([b, f.embedding], (Kind::Float, f.device));
            let rec = inner.decoder.forward(&z).tanh();
            // α gets the decoder's learned noise, as SDV's inverse transform does.
            let noise = Tensor::randn_like(&rec) * inner.decoder.sigma.unsqueeze(0);
            let parts: Vec<Tensor> = f
                .transformer
                .spans
                .iter()
                .map(|s| {
                    let (start, w) = (to_i64(s.start), to_i64(s.width));
                    let block = rec.narrow(1, start, w);
                    match s.activation {
                        Activation::Tanh => (block + noise.narrow(1, start, w)).clamp(-1.0, 1.0),
                        Activation::Softmax => block,
                    }
                })
                .collect();
            Tensor::cat(&parts, 1)
        })?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7476_6165_5f73_616d);
        f.transformer.decode(&out, rows, &mut rng)
    }

    fn columns(&self) -> Vec<ColumnModel> {
        self.fitted.columns()
    }

    fn notes(&self) -> Vec<String> {
        self.fitted.notes(&format!("last loss {:.3}", self.fitted.losses.0))
    }

    fn save(&self) -> Option<Result<Vec<u8>>> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The encoder only matters for training.
        Some(self.fitted.save(NAME, &inner.vs, is_decoder))
    }

    fn suggested_rows(&self) -> Option<usize> {
        self.fitted.suggested_rows()
    }
}

//! `builtin:ctgan`: conditional tabular GAN (Xu et al., NeurIPS 2019) as
//! SDV's `CTGANSynthesizer` trains it — mode-specific normalisation, a
//! conditional vector with training-by-sampling, a residual generator with
//! Gumbel-softmax outputs, a PacGAN critic (`pac` rows judged together) and
//! WGAN-GP — with the data and the sampling on the device.

use std::sync::Mutex;

use arrow::record_batch::RecordBatch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::cond::CondSampler;
use super::transformer::{Activation, Span, Transformer};
use super::{
    FitSizes, Fitted, common_params, device, linear, load_weights, positive, sample_encoded, to_i64, torch_err,
    torch_lock,
};
use crate::params::{ParamSpec, Params};
use crate::saved::ModelReader;
use crate::{ColumnModel, Error, Generator, Model, Progress, Result, TrainingData};

const NAME: &str = "ctgan";
const HIDDEN: [i64; 2] = [256, 256];
const GUMBEL_TAU: f64 = 0.2;
const GP_WEIGHT: f64 = 10.0;

/// The CTGAN generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ctgan;

/// Residual blocks (linear → batch norm → ReLU, concatenated with the input),
/// then a linear layer to the encoded width.
#[derive(Debug)]
struct GenNet {
    blocks: Vec<(nn::Linear, nn::BatchNorm)>,
    out: nn::Linear,
}

impl GenNet {
    fn new(p: &nn::Path<'_>, input: i64, output: i64) -> GenNet {
        let mut dim = input;
        let mut blocks = Vec::new();
        for (i, &h) in HIDDEN.iter().enumerate() {
            blocks.push((
                linear(p / format!("fc{i}"), dim, h),
                nn::batch_norm1d(p / format!("bn{i}"), h, nn::BatchNormConfig::default()),
            ));
            dim += h;
        }
        GenNet {
            blocks,
            out: linear(p / "out", dim, output),
        }
    }
}

impl ModuleT for GenNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for (fc, bn) in &self.blocks {
            let o = h.apply(fc).apply_t(bn, train).relu();
            h = Tensor::cat(&[o, h], 1);
        }
        h.apply(&self.out)
    }
}

/// The critic: `pac` rows (with their conditions) in, one score out.
#[derive(Debug)]
struct Critic {
    layers: Vec<nn::Linear>,
    out: nn::Linear,
    packed: i64,
}

impl Critic {
    fn new(p: &nn::Path<'_>, input: i64, pac: i64) -> Critic {
        let mut dim = input * pac;
        let mut layers = Vec::new();
        for (i, &h) in HIDDEN.iter().enumerate() {
            layers.push(linear(p / format!("fc{i}"), dim, h));
            dim = h;
        }
        Critic {
            layers,
            out: linear(p / "out", dim, 1),
            packed: input * pac,
        }
    }
}

impl ModuleT for Critic {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.view([-1, self.packed]);
        for l in &self.layers {
            let y = h.apply(l);
            h = y.maximum(&(&y * 0.2)).dropout(0.5, train);
        }
        h.apply(&self.out)
    }
}

/// tanh on α blocks, Gumbel-softmax (a differentiable draw from
/// `softmax(logits)`) on one-hot blocks. The Gumbel noise is drawn for the
/// whole batch in one operation; only the per-block softmax is per block.
pub(super) fn activate(raw: &Tensor, spans: &[Span]) -> Tensor {
    let u = Tensor::rand_like(raw).clamp(1e-10, 1.0 - 1e-10);
    let noisy: Tensor = (raw - (-u.log()).log()) / GUMBEL_TAU;
    let parts: Vec<Tensor> = spans
        .iter()
        .map(|s| {
            let (start, width) = (to_i64(s.start), to_i64(s.width));
            match s.activation {
                Activation::Tanh => raw.narrow(1, start, width).tanh(),
                Activation::Softmax => noisy.narrow(1, start, width).softmax(-1, Kind::Float),
            }
        })
        .collect();
    Tensor::cat(&parts, 1)
}

struct Settings {
    epochs: i64,
    batch: i64,
    embedding: i64,
    pac: i64,
    lr: f64,
    max_categories: usize,
    device: Device,
}

fn settings(params: &Params) -> Result<Settings> {
    let pac = positive(params, "pac", 10)?;
    let batch = positive(params, "batch_size", 500)?;
    if batch % pac != 0 {
        return Err(Error::InvalidParam {
            name: "batch_size".into(),
            message: format!("must be a multiple of pac ({pac})"),
        });
    }
    let lr = params.float("learning_rate", 2e-4)?;
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(Error::InvalidParam {
            name: "learning_rate".into(),
            message: "must be a positive number".into(),
        });
    }
    Ok(Settings {
        epochs: positive(params, "epochs", 300)?,
        batch,
        embedding: positive(params, "embedding_dim", 128)?,
        pac,
        lr,
        max_categories: usize::try_from(positive(params, "max_categories", 1000)?).unwrap_or(usize::MAX),
        device: device(params)?,
    })
}

impl Generator for Ctgan {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "CTGAN on libtorch: mode-specific normalisation, conditional vector with training-by-sampling, \
         PacGAN critic, WGAN-GP; GPU when available."
    }

    fn saves_models(&self) -> bool {
        true
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut p = common_params(300, 500);
        p.push(ParamSpec::integer(
            "pac",
            "Rows the critic judges together (PacGAN).",
            10,
            1.0,
            100.0,
        ));
        p.push(ParamSpec::float(
            "learning_rate",
            "Adam learning rate of both networks.",
            2e-4,
            1e-7,
            1.0,
        ));
        p
    }

    fn fit(
        &self,
        data: &TrainingData<'_>,
        params: &Params,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Model>> {
        let s = settings(params)?;
        data.check_semantics()?;
        let _torch = torch_lock();
        tch::manual_seed(i64::from_ne_bytes(seed.to_ne_bytes()));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (transformer, encoded) = Transformer::fit(data.batch, data.semantics, s.max_categories, &mut rng)?;
        let rows = data.batch.num_rows();
        let width = to_i64(transformer.width);
        let table = Tensor::from_slice(&encoded)
            .view([to_i64(rows), width])
            .to_device(s.device);
        drop(encoded);
        let cond = CondSampler::new(&transformer, rows, s.device);

        let vs_g = nn::VarStore::new(s.device);
        let vs_d = nn::VarStore::new(s.device);
        let generator = GenNet::new(&vs_g.root(), s.embedding + cond.dim, width);
        let critic = Critic::new(&vs_d.root(), width + cond.dim, s.pac);
        let mut opt_g = nn::adam(0.5, 0.9, 1e-6).build(&vs_g, s.lr).map_err(torch_err)?;
        let mut opt_d = nn::adam(0.5, 0.9, 1e-6).build(&vs_d, s.lr).map_err(torch_err)?;
        let b = s.batch;
        let steps = (to_i64(rows) / b).max(1);
        let opts = (Kind::Float, s.device);
        let mut last = (0.0, 0.0);
        for epoch in 0..s.epochs {
            if progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            for _ in 0..steps {
                // Critic step.
                let (c, _, real_rows) = cond.sample_train(b);
                let z = Tensor::randn([b, s.embedding], opts);
                // The critic step never back-propagates into the generator:
                // no graph for its forward pass.
                let fake = tch::no_grad(|| {
                    activate(
                        &generator.forward_t(&Tensor::cat(&[&z, &c], 1), true),
                        &transformer.spans,
                    )
                });
                let real = table.index_select(0, &real_rows);
                let fake_in = Tensor::cat(&[fake, c.shallow_clone()], 1);
                let real_in = Tensor::cat(&[real, c], 1);
                let y_fake = critic.forward_t(&fake_in, true);
                let y_real = critic.forward_t(&real_in, true);
                let gp = gradient_penalty(&critic, &real_in, &fake_in, s.pac, s.device);
                let loss_d = -(y_real.mean(Kind::Float) - y_fake.mean(Kind::Float)) + gp;
                opt_d.zero_grad();
                loss_d.backward();
                opt_d.step();

                // Generator step.
                let (c, cats, _) = cond.sample_train(b);
                let z = Tensor::randn([b, s.embedding], opts);
                let raw = generator.forward_t(&Tensor::cat(&[&z, &c], 1), true);
                let fake = activate(&raw, &transformer.spans);
                let y_fake = critic.forward_t(&Tensor::cat(&[fake, c], 1), true);
                let cross = cats.map_or_else(|| Tensor::zeros([], opts), |cats| cond.cond_loss(&raw, &cats));
                let loss_g = -y_fake.mean(Kind::Float) + cross;
                opt_g.zero_grad();
                loss_g.backward();
                opt_g.step();
                last = (loss_g.double_value(&[]), loss_d.double_value(&[]));
            }
            progress.advance(
                u64::try_from(epoch + 1).unwrap_or(0),
                u64::try_from(s.epochs).unwrap_or(1),
            );
        }
        Ok(Box::new(CtganModel {
            inner: Mutex::new(Inner {
                vs: vs_g,
                generator,
                cond,
            }),
            fitted: Fitted::trained(
                transformer,
                data.semantics.to_vec(),
                FitSizes {
                    embedding: s.embedding,
                    batch: b,
                    device: s.device,
                    epochs: s.epochs,
                },
                last,
                data.batch.num_rows(),
            ),
        }))
    }
}

/// WGAN-GP on packed rows: the critic's gradient norm at random points
/// between real and fake packs is pushed towards 1.
fn gradient_penalty(critic: &Critic, real: &Tensor, fake: &Tensor, pac: i64, device: Device) -> Tensor {
    let size = real.size();
    let (b, dim) = (size[0], size[1]);
    let alpha = Tensor::rand([b / pac, 1, 1], (Kind::Float, device))
        .repeat([1, pac, dim])
        .view([b, dim]);
    let mixed: Tensor = &alpha * real + (1.0 - &alpha) * fake;
    let interp = mixed.detach().set_requires_grad(true);
    let y = critic.forward_t(&interp, true);
    let grads = Tensor::run_backward(&[y.sum(Kind::Float)], &[&interp], true, true);
    let g = grads[0].view([-1, pac * dim]);
    let norm = (g.square().sum_dim_intlist([1i64].as_slice(), false, Kind::Float) + 1e-12).sqrt();
    (norm - 1.0).square().mean(Kind::Float) * GP_WEIGHT
}

struct Inner {
    vs: nn::VarStore,
    generator: GenNet,
    cond: CondSampler,
}

/// A trained CTGAN.
pub struct CtganModel {
    inner: Mutex<Inner>,
    fitted: Fitted,
}

impl std::fmt::Debug for CtganModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtganModel")
            .field("fitted", &self.fitted)
            .finish_non_exhaustive()
    }
}

impl Model for CtganModel {
    fn sample(&self, rows: usize, seed: u64, progress: &dyn Progress) -> Result<RecordBatch> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let f = &self.fitted;
        let out = sample_encoded(rows, f.batch, f.transformer.width, seed, progress, |b| {
            let z = Tensor::randn([b, f.embedding], (Kind::Float, f.device));
            let c = inner.cond.sample_original(b);
            let raw = inner.generator.forward_t(&Tensor::cat(&[z, c], 1), false);
            activate(&raw, &f.transformer.spans)
        })?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6374_6761_6e5f_7331);
        f.transformer.decode(&out, rows, &mut rng)
    }

    fn columns(&self) -> Vec<ColumnModel> {
        self.fitted.columns()
    }

    fn notes(&self) -> Vec<String> {
        let (g, d) = self.fitted.losses;
        self.fitted
            .notes(&format!("last losses: generator {g:.3}, critic {d:.3}"))
    }

    fn save(&self) -> Option<Result<Vec<u8>>> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only the generator: the critic is not needed to sample.
        Some(self.fitted.save(NAME, &inner.vs, |_| true))
    }

    fn suggested_rows(&self) -> Option<usize> {
        self.fitted.suggested_rows()
    }
}

/// Rebuild a CTGAN saved by [`Model::save`], on the GPU when there is one.
pub(crate) fn load(r: &ModelReader<'_>) -> Result<Box<dyn Model>> {
    let fitted = Fitted::open(r)?;
    // Building layers draws initial weights from libtorch's global generator.
    let _torch = torch_lock();
    let cond = CondSampler::new(&fitted.transformer, 0, fitted.device);
    let vs = nn::VarStore::new(fitted.device);
    let generator = GenNet::new(
        &vs.root(),
        fitted.embedding + cond.dim,
        to_i64(fitted.transformer.width),
    );
    load_weights(&vs, r)?;
    Ok(Box::new(CtganModel {
        inner: Mutex::new(Inner { vs, generator, cond }),
        fitted,
    }))
}

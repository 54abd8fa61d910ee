//! `builtin:dp-tvae`: TVAE trained with DP-SGD, so that the twin is
//! (ε, δ)-differentially private as a whole — what it learned, its columns'
//! value sets and ranges, and its row count.
//!
//! TVAE's own preprocessing reads the data freely (a Gaussian mixture per
//! numeric column, every category seen), which no DP-SGD on the network can
//! make private. So the network here learns PrivSyn's private domain
//! ([`crate::privsyn::private_domain`]): numeric columns as bins between
//! declared or privately found bounds, categories released by Gaussian
//! partition selection (the rest merged into a missing-or-rare bin), every
//! column one-hot. Its budget, in order:
//!
//! 1. The domain and the noisy row count: 10 % of the zCDP ρ that (ε, δ)
//!    converts to, as Gaussian measurements; partition selection takes half
//!    of δ when a column needs it.
//! 2. DP-SGD ([`super::dpsgd`]) on the encoder and decoder, with Poisson
//!    batches at `q = batch_size / noisy rows` for `epochs` passes; the
//!    noise multiplier is the smallest whose steps, composed with step 1 in
//!    Rényi DP ([`crate::accountant::rdp`]), convert to the ε asked for.
//!
//! Sampling decodes each column's bin from the decoder's softmax and the bin
//! to a value (uniform within a numeric bin), which is post-processing.
//! Neighbouring tables differ by adding or removing one row.

use std::sync::{Arc, Mutex};

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::dpsgd::{Privatizer, Tape, poisson_batch};
use super::{device, device_param, linear, positive, to_i64, torch_err, torch_lock};
use crate::accountant::rdp::{RdpAccountant, noise_multiplier_after, steps_for_epochs};
use crate::accountant::{PrivacyCost, PrivacySpend, SgdSpend, cdp_rho, gaussian_sigma};
use crate::counts::LocalCounts;
use crate::params::{ParamSpec, Params};
use crate::privsyn::domain::Codec;
use crate::privsyn::noise::Noise;
use crate::privsyn::{
    Columns, Domain, DomainBudget, DomainParams, Kind as ColumnKind, Plan, budget, invalid, keys, private_domain,
};
use crate::semantic::SemanticType;
use crate::{ColumnModel, Error, Generator, Model, Progress, Result, TrainingData};

const NAME: &str = "dp-tvae";
const HIDDEN: i64 = 128;
/// TVAE weighs reconstruction twice the KL term.
const LOSS_FACTOR: f64 = 2.0;
/// Share of ρ(ε, δ) spent on the domain and the row count; DP-SGD gets the
/// rest of the (ε, δ) through the Rényi accountant.
const DOMAIN_SHARE: f64 = 0.1;
/// Of the domain's ρ: the noisy row count's share; bounds and partition
/// selection split the rest evenly between the columns that need them.
const COUNT_SHARE: f64 = 0.1;
const SAMPLE_STREAM: u64 = 0x6470_7476_6165_5f73;
/// Clipping norm of a row's gradient. Rows' norms (of the loss per column)
/// are typically 5–50 here; a norm that clips most rows shrinks the rows a
/// model fits worst — the rarer categories — hardest, so their share in the
/// twin falls (measured on the tests' two-plan table: 1 % of "pro" rows at a
/// norm of 1, 16 % at 15, against 30 % real), while a norm above them all
/// drowns the gradient in noise.
const DEFAULT_CLIP: f64 = 15.0;
/// The most values the one-hot table may hold (2 GiB of `f32`).
const MAX_ENCODED: usize = 1 << 29;
/// Larger than TVAE's 1e-3: DP-SGD takes fewer, noisier steps.
const DEFAULT_LEARNING_RATE: f64 = 5e-3;

/// The DP-TVAE generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct DpTvae;

struct Settings {
    epsilon: f64,
    delta: f64,
    epochs: i64,
    batch: i64,
    embedding: i64,
    clip: f64,
    learning_rate: f64,
    domain: DomainParams,
    reproducible_noise: bool,
}

impl Settings {
    fn parse(params: &Params) -> Result<Settings> {
        let (epsilon, delta) = budget(params, 4.0)?;
        let clip = params.float("clip", DEFAULT_CLIP)?;
        if !(clip.is_finite() && clip > 0.0) {
            return Err(invalid("clip", "must be a positive number"));
        }
        let learning_rate = params.float("learning_rate", DEFAULT_LEARNING_RATE)?;
        if !(learning_rate.is_finite() && learning_rate > 0.0) {
            return Err(invalid("learning_rate", "must be a positive number"));
        }
        Ok(Settings {
            epsilon,
            delta,
            epochs: positive(params, "epochs", 30)?,
            batch: positive(params, "batch_size", 500)?,
            embedding: positive(params, "embedding_dim", 128)?,
            clip,
            learning_rate,
            domain: DomainParams::parse(params)?,
            reproducible_noise: params.boolean("reproducible_noise", false)?,
        })
    }
}

impl Generator for DpTvae {
    fn name(&self) -> &'static str {
        NAME
    }

    fn summary(&self) -> &'static str {
        "TVAE trained with DP-SGD (per-row clipping, Gaussian noise, Rényi accountant) on a private \
         domain: the whole twin is (ε, δ)-differentially private."
    }

    fn params(&self) -> Vec<ParamSpec> {
        let mut specs = vec![
            ParamSpec::float(
                "epsilon",
                "Privacy budget ε of the whole fit (domain and training).",
                4.0,
                0.01,
                100.0,
            ),
            ParamSpec::float(
                "delta",
                "Privacy budget δ (keep it well below 1/rows).",
                1e-9,
                1e-15,
                1e-3,
            ),
            ParamSpec::integer(
                "epochs",
                "Expected passes over the table; more epochs need more noise per step.",
                30,
                1.0,
                10_000.0,
            ),
            ParamSpec::integer(
                "batch_size",
                "Expected rows per step (each row joins a step's batch with probability batch_size / rows).",
                500,
                10.0,
                1e6,
            ),
            ParamSpec::integer("embedding_dim", "Size of the latent code.", 128, 2.0, 4096.0),
            ParamSpec::float(
                "clip",
                "Each row's gradient (of its loss per column) is clipped to this L2 norm before noise is added.",
                DEFAULT_CLIP,
                0.001,
                1000.0,
            ),
            ParamSpec::float("learning_rate", "Adam's step size.", DEFAULT_LEARNING_RATE, 1e-6, 1.0),
        ];
        specs.extend(DomainParams::specs());
        specs.extend([device_param(), crate::privsyn::reproducible_noise()]);
        specs
    }

    fn privacy_cost(&self, params: &Params) -> Result<Option<PrivacyCost>> {
        let s = Settings::parse(params)?;
        Ok(Some(PrivacyCost {
            epsilon: s.epsilon,
            delta: s.delta,
        }))
    }

    #[allow(clippy::too_many_lines, reason = "one pass through the algorithm's steps, in order")]
    fn fit(
        &self,
        data: &TrainingData<'_>,
        params: &Params,
        seed: u64,
        progress: &dyn Progress,
    ) -> Result<Box<dyn Model>> {
        let s = Settings::parse(params)?;
        let device = device(params)?;
        let schema = data.batch.schema();
        let kinds = s.domain.kinds(&schema, data.semantics)?;
        if kinds.iter().all(|k| *k == ColumnKind::Key) {
            return Err(invalid("epsilon", "every column is a key: there is nothing to learn"));
        }
        let mut noise = Noise::for_fit(s.reproducible_noise, seed)?;

        // 1. The budget split, from the schema and parameters only.
        let Columns {
            need_bounds,
            selecting,
            delta_gauss,
            delta_select,
            ..
        } = Columns::of(&kinds, s.delta);
        let rho_domain = DOMAIN_SHARE * cdp_rho(s.epsilon, delta_gauss);
        let rho_count = COUNT_SHARE * rho_domain;
        let parts = usize::from(need_bounds > 0) + usize::from(selecting > 0);
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let per_part = if parts == 0 {
            0.0
        } else {
            (rho_domain - rho_count) / parts as f64
        };
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let rho_bound_each = per_part / need_bounds.max(1) as f64;
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let rho_select_each = per_part / selecting.max(1) as f64;
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let delta_each = delta_select / selecting.max(1) as f64;

        // 2. The domain, then the noisy row count.
        let source = LocalCounts::new(data.batch, data.semantics);
        let epochs_u = u64::try_from(s.epochs).unwrap_or(1);
        let total_steps = schema.fields().len() as u64 + epochs_u;
        let domain = private_domain(
            &source,
            &kinds,
            &s.domain,
            DomainBudget {
                rho_bound_each,
                sigma_select: if selecting > 0 {
                    gaussian_sigma(rho_select_each, 1.0)
                } else {
                    f64::INFINITY
                },
                delta_each,
            },
            &mut noise,
            progress,
            total_steps,
        )?;
        let rows = data.batch.num_rows();
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let mut count = [rows as f64];
        noise.gaussian(&mut count, gaussian_sigma(rho_count, 1.0));
        let noisy_rows = count[0].round().max(1.0);
        let mut rho_steps = vec![("row count".to_owned(), rho_count)];
        if need_bounds > 0 {
            rho_steps.push((format!("bounds of {need_bounds} numeric columns"), per_part));
        }
        if selecting > 0 {
            rho_steps.push((format!("categories of {selecting} columns"), per_part));
        }
        let rho_spent: f64 = rho_steps.iter().map(|(_, r)| r).sum();

        // 3. DP-SGD's noise, solved so that everything composes to ε.
        #[allow(clippy::cast_precision_loss, reason = "batch sizes are far below 2^52")]
        let q = (s.batch as f64 / noisy_rows).min(1.0);
        #[allow(clippy::cast_precision_loss, reason = "epochs are small")]
        let steps = steps_for_epochs(q, s.epochs as f64).max(1);
        let mut spent = RdpAccountant::default();
        spent.compose_zcdp(rho_spent);
        let sigma = noise_multiplier_after(&spent, s.epsilon, delta_gauss, q, steps)?;
        let mut total = spent.clone();
        total.compose_poisson_gaussian(q, sigma, steps);
        let (epsilon, order) = total.epsilon(delta_gauss);

        // 4. The table as one-hot bins of the released domain.
        let Domain {
            plans,
            codecs,
            measured: _,
            notes: mut domain_notes,
        } = domain;
        let mut offsets = Vec::with_capacity(codecs.len());
        let mut width = 0usize;
        for c in &codecs {
            offsets.push(width);
            width += c.size();
        }
        // Bounded before it is allocated: many released categories times
        // many rows would otherwise take the process down.
        if rows.saturating_mul(width) > MAX_ENCODED {
            return Err(invalid(
                "bins",
                format!(
                    "the one-hot table would hold {rows} rows × {width} values, more than {MAX_ENCODED}: use fewer \
                     `bins`, or leave out columns with thousands of values"
                ),
            ));
        }
        let mut hot = vec![0f32; rows * width];
        for (ci, plan) in plans.iter().enumerate() {
            if let Plan::Attr(a) = plan {
                let bins = source.bins(ci, &codecs[*a].binning())?;
                for (r, b) in bins.iter().enumerate() {
                    hot[r * width + offsets[*a] + *b as usize] = 1.0;
                }
            }
        }
        let _torch = torch_lock();
        tch::manual_seed(i64::from_ne_bytes(seed.to_ne_bytes()));
        let table = Tensor::from_slice(&hot)
            .view([to_i64(rows), to_i64(width)])
            .to_device(device);
        drop(hot);
        let spans: Vec<(i64, i64)> = codecs
            .iter()
            .zip(&offsets)
            .map(|(c, &o)| (to_i64(o), to_i64(c.size())))
            .collect();
        // A column declared non-nullable never samples its missing-or-rare
        // bin (which decodes to null); one with nothing else released has
        // nothing to sample at all.
        let mut forbidden: Vec<Option<i64>> = vec![None; codecs.len()];
        for (plan, field) in plans.iter().zip(schema.fields()) {
            if let Plan::Attr(a) = plan
                && !field.is_nullable()
            {
                let missing = match &codecs[*a] {
                    Codec::Categorical { .. } => codecs[*a].size() - 1,
                    Codec::Numeric(_) => 0,
                };
                if codecs[*a].size() < 2 {
                    return Err(Error::NothingReleased {
                        column: field.name().clone(),
                    });
                }
                forbidden[*a] = Some(to_i64(missing));
            }
        }

        // 5. Training.
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let w = to_i64(width);
        let layers = vec![
            linear(&root / "encoder" / "fc0", w, HIDDEN),
            linear(&root / "encoder" / "fc1", HIDDEN, HIDDEN),
            linear(&root / "mu", HIDDEN, s.embedding),
            linear(&root / "logvar", HIDDEN, s.embedding),
            linear(&root / "decoder" / "fc0", s.embedding, HIDDEN),
            linear(&root / "decoder" / "fc1", HIDDEN, HIDDEN),
            linear(&root / "out", HIDDEN, w),
        ];
        let mut opt = nn::adam(0.9, 0.999, 1e-5)
            .build(&vs, s.learning_rate)
            .map_err(torch_err)?;
        let privatizer = Privatizer {
            clip: s.clip,
            noise_multiplier: sigma,
            expected_batch: q * noisy_rows,
        };
        let steps_per_epoch = (steps / epochs_u).max(1);
        for step in 0..steps {
            if progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let batch = poisson_batch(rows, q, noise.rng());
            opt.zero_grad();
            if batch.is_empty() {
                privatizer.noise_only(&layers, &mut noise)?;
            } else {
                let idx = Tensor::from_slice(&batch).to_device(device);
                let real = table.index_select(0, &idx);
                let mut tape = Tape::default();
                let h = tape.linear(&layers, 0, &real).relu();
                let h = tape.linear(&layers, 1, &h).relu();
                let m = tape.linear(&layers, 2, &h);
                let lv = tape.linear(&layers, 3, &h);
                let z = Tensor::randn_like(&m) * (&lv * 0.5).exp() + &m;
                let d = tape.linear(&layers, 4, &z).relu();
                let d = tape.linear(&layers, 5, &d).relu();
                let logits = tape.linear(&layers, 6, &d);
                let mut recon = Tensor::zeros([], (Kind::Float, device));
                for &(start, size) in &spans {
                    let target = real.narrow(1, start, size);
                    let logp = logits.narrow(1, start, size).log_softmax(1, Kind::Float);
                    recon -= (logp * target).sum(Kind::Float);
                }
                let inner: Tensor = 1.0 + &lv - m.square() - lv.exp();
                let kld = -0.5 * inner.sum(Kind::Float);
                // Per column, so that gradient norms (and a good clipping
                // norm) do not grow with the table's width.
                #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
                let loss: Tensor = (recon * LOSS_FACTOR + kld) / spans.len() as f64;
                // The batch's loss and how many rows were clipped are exact
                // statistics of real rows: neither is kept or reported.
                privatizer.backward(&loss, tape, &layers, &mut noise)?;
            }
            opt.step();
            if (step + 1) % steps_per_epoch == 0 || step + 1 == steps {
                let epoch = ((step + 1) / steps_per_epoch).min(epochs_u);
                progress.advance(schema.fields().len() as u64 + epoch, total_steps);
            }
        }
        drop(table);

        let mut spend_notes = vec![
            "neighbouring tables differ by one added or removed row".to_owned(),
            format!(
                "DP-SGD: {steps} steps, each row in a step's batch with probability {q:.4}, every row's gradient \
                 clipped to norm {}, Gaussian noise {sigma:.3} × the norm; Rényi DP with the domain's \
                 measurements (ρ·α per order), converted at order {order} (Balle et al. 2020)",
                s.clip
            ),
        ];
        if selecting > 0 {
            spend_notes.push(format!(
                "categories released by Gaussian partition selection; δ = {delta_select:.1e} of it, the rest \
                 from the Rényi conversion"
            ));
        }
        spend_notes.extend(s.domain.public_notes());
        if s.reproducible_noise {
            spend_notes.push(
                "noise and batches derived from the seed (reproducible_noise): not private against anyone who \
                 knows it"
                    .into(),
            );
        }
        // Only facts fixed before training: a loss or a clipped share would
        // be an exact, unprotected statistic of the rows.
        domain_notes.push(format!("{} epochs of DP-SGD on {device:?}", s.epochs));
        let spend = PrivacySpend {
            epsilon,
            delta: delta_gauss + delta_select,
            rho: rho_spent,
            steps: rho_steps,
            notes: spend_notes,
            sgd: Some(SgdSpend {
                steps,
                sampling_rate: q,
                noise_multiplier: sigma,
                clip: s.clip,
            }),
        };
        // Only the decoder samples; the encoder's weights are dropped.
        let decoder: Vec<nn::Linear> = layers.into_iter().skip(4).collect();
        Ok(Box::new(DpTvaeModel {
            inner: Mutex::new(Inner { _vs: vs, decoder }),
            schema,
            semantics: data.semantics.to_vec(),
            plans,
            codecs,
            spans,
            forbidden,
            embedding: s.embedding,
            device,
            spend,
            notes: domain_notes,
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a positive, rounded count"
            )]
            rows: noisy_rows as usize,
        }))
    }
}

struct Inner {
    /// Owns the decoder's weights.
    _vs: nn::VarStore,
    decoder: Vec<nn::Linear>,
}

/// A TVAE trained with DP-SGD on a private domain.
pub struct DpTvaeModel {
    inner: Mutex<Inner>,
    schema: SchemaRef,
    semantics: Vec<SemanticType>,
    plans: Vec<Plan>,
    codecs: Vec<Codec>,
    /// `(start, width)` of each modelled column's one-hot block.
    spans: Vec<(i64, i64)>,
    /// Per modelled column, the bin it may not sample (the null bin of a
    /// non-nullable column).
    forbidden: Vec<Option<i64>>,
    embedding: i64,
    device: Device,
    spend: PrivacySpend,
    notes: Vec<String>,
    /// The noisy count of the rows it learned from.
    rows: usize,
}

impl std::fmt::Debug for DpTvaeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpTvaeModel")
            .field("spend", &self.spend)
            .finish_non_exhaustive()
    }
}

impl Model for DpTvaeModel {
    fn sample(&self, rows: usize, seed: u64, progress: &dyn Progress) -> Result<RecordBatch> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _torch = torch_lock();
        tch::manual_seed(i64::from_ne_bytes(seed.to_ne_bytes()));
        let _no_grad = tch::no_grad_guard();
        let mut bins: Vec<Vec<u32>> = vec![Vec::with_capacity(rows); self.spans.len()];
        let chunk = 10_000usize;
        let mut done = 0usize;
        while done < rows {
            if progress.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let b = chunk.min(rows - done);
            let z = Tensor::randn([to_i64(b), self.embedding], (Kind::Float, self.device));
            let d = z.apply(&inner.decoder[0]).relu().apply(&inner.decoder[1]).relu();
            let logits = d.apply(&inner.decoder[2]);
            for (a, &(start, size)) in self.spans.iter().enumerate() {
                let block = logits.narrow(1, start, size).copy();
                if let Some(k) = self.forbidden[a] {
                    let _ = block.narrow(1, k, 1).fill_(f64::NEG_INFINITY);
                }
                let probs = block.softmax(1, Kind::Float);
                let drawn = probs
                    .multinomial(1, true)
                    .view([-1])
                    .to_kind(Kind::Int64)
                    .to_device(Device::Cpu);
                let drawn = Vec::<i64>::try_from(&drawn).map_err(torch_err)?;
                bins[a].extend(drawn.into_iter().map(|x| u32::try_from(x).unwrap_or(0)));
            }
            done += b;
            progress.advance(done as u64, rows as u64);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SAMPLE_STREAM);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.plans.len());
        for (plan, field) in self.plans.iter().zip(self.schema.fields()) {
            columns.push(match plan {
                Plan::Attr(a) => self.codecs[*a].decode(&bins[*a], field.data_type(), &mut rng)?,
                Plan::Key => keys(rows, field.data_type())?,
            });
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    fn columns(&self) -> Vec<ColumnModel> {
        self.plans
            .iter()
            .zip(self.schema.fields())
            .zip(&self.semantics)
            .map(|((plan, field), semantic)| ColumnModel {
                column: field.name().clone(),
                semantic: *semantic,
                model: match plan {
                    Plan::Key => "key: fresh sequential values".to_owned(),
                    Plan::Attr(a) => format!("{}; decoded from the network's softmax", self.codecs[*a].describe()),
                },
            })
            .collect()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        notes.push(format!(
            "(ε = {:.3}, δ = {:.1e})-DP over the domain's measurements and DP-SGD",
            self.spend.epsilon, self.spend.delta
        ));
        notes
    }

    fn privacy(&self) -> Option<PrivacySpend> {
        Some(self.spend.clone())
    }

    fn suggested_rows(&self) -> Option<usize> {
        Some(self.rows.max(1))
    }
}

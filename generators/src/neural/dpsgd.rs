//! DP-SGD (Abadi et al. 2016, the algorithm Opacus runs) for networks whose
//! trainable parts are linear layers: each step takes every training row
//! independently with probability `q` (Poisson sampling), clips each row's
//! gradient to L2 norm `C`, sums them, adds Gaussian noise of standard
//! deviation `σ·C` to every coordinate and divides by the expected batch
//! size `q·N`. [`crate::accountant::rdp`] says what the steps spend.
//!
//! Per-row gradients are never materialised. For a linear layer `y = W a + b`
//! used once per row, row `i`'s gradient is `gᵢ aᵢᵀ` for `W` and `gᵢ` for
//! `b`, where `gᵢ` is the gradient of the summed loss with respect to row
//! `i`'s output — so its squared norm is `‖gᵢ‖² (‖aᵢ‖² + 1)` (Goodfellow
//! 2015; Li et al. 2022's "ghost norm"). With every row's norm over all
//! layers in hand, the clipped sum for a layer is one matrix product,
//! `(c ⊙ G)ᵀ A`: the cost of an ordinary backward pass, and exactly the
//! clipped sum of per-row gradients (the tests compare it with one backward
//! pass per row).
//!
//! The noise comes from the host ([`Noise`]: ChaCha20 keyed by the operating
//! system's entropy), not from libtorch's seeded generator, which anyone who
//! knows the seed could replay; the same goes for which rows a batch takes.

use rand::{Rng, RngExt};
use tch::{Device, Kind, Tensor, nn};

use super::torch_err;
use crate::privsyn::noise::Noise;
use crate::{Error, Result};

/// What a DP-SGD step needs from each linear layer a batch went through:
/// the layer, its input and its output.
#[derive(Default)]
pub(crate) struct Tape {
    uses: Vec<(usize, Tensor, Tensor)>,
}

impl Tape {
    /// Apply `layers[index]` to `input` (rows × in) and record it. A layer
    /// may be used once per batch: per-row norms assume it.
    pub(crate) fn linear(&mut self, layers: &[nn::Linear], index: usize, input: &Tensor) -> Tensor {
        let layer = &layers[index];
        let output = input.linear(&layer.ws, layer.bs.as_ref());
        self.uses.push((index, input.shallow_clone(), output.shallow_clone()));
        output
    }
}

/// One DP-SGD step's clipping and noise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Privatizer {
    /// Each row's gradient is clipped to this L2 norm (`C`).
    pub(crate) clip: f64,
    /// Noise standard deviation over the clipping norm (`σ`).
    pub(crate) noise_multiplier: f64,
    /// `q · N`: what the noisy sum is divided by.
    pub(crate) expected_batch: f64,
}

impl Privatizer {
    /// Set the gradients of `layers` to DP-SGD's for this batch: `loss` is
    /// the sum over the batch of per-row losses (row `i`'s reading row `i`
    /// only, through the layers `tape` recorded). Call after the
    /// optimiser's `zero_grad` and before its `step`.
    pub(crate) fn backward(&self, loss: &Tensor, tape: Tape, layers: &[nn::Linear], noise: &mut Noise) -> Result<()> {
        let mut seen = vec![false; layers.len()];
        for (index, _, _) in &tape.uses {
            if std::mem::replace(&mut seen[*index], true) {
                return Err(Error::Torch(format!(
                    "DP-SGD: layer {index} was used twice in one batch; per-row norms need one use"
                )));
            }
        }
        if tape.uses.is_empty() {
            return self.noise_only(layers, noise);
        }
        let outputs: Vec<&Tensor> = tape.uses.iter().map(|(_, _, y)| y).collect();
        let grads = Tensor::f_run_backward(&[loss], &outputs, false, false).map_err(torch_err)?;
        let first = &grads[0];
        let rows = first.size()[0];
        let device = first.device();
        let dims = [1i64];
        let mut norms = Tensor::zeros([rows], (Kind::Float, device));
        for ((index, input, _), g) in tape.uses.iter().zip(&grads) {
            let inputs = input
                .detach()
                .square()
                .sum_dim_intlist(dims.as_slice(), false, Kind::Float);
            let bias = if layers[*index].bs.is_some() { 1.0 } else { 0.0 };
            norms += g.square().sum_dim_intlist(dims.as_slice(), false, Kind::Float) * (inputs + bias);
        }
        let norms = norms.sqrt();
        // Opacus's factor: min(1, C / (‖g‖ + 1e-6)).
        let factor = (self.clip / (&norms + 1e-6)).clamp_max(1.0);
        let sigma = self.noise_multiplier * self.clip;
        let mut surrogate = Tensor::zeros([], (Kind::Float, device));
        let mut clipped_grads: Vec<Option<(Tensor, Option<Tensor>)>> = (0..layers.len()).map(|_| None).collect();
        for ((index, input, _), g) in tape.uses.iter().zip(&grads) {
            let scaled = g * factor.unsqueeze(1);
            let w = scaled.tr().matmul(&input.detach());
            let b = layers[*index]
                .bs
                .as_ref()
                .map(|_| scaled.sum_dim_intlist([0i64].as_slice(), false, Kind::Float));
            clipped_grads[*index] = Some((w, b));
        }
        for (layer, grad) in layers.iter().zip(clipped_grads) {
            // A layer this batch did not reach gets noise alone: its
            // gradient sum is zero, and the noise is what the accountant
            // assumes every coordinate gets.
            let (w, b) =
                grad.unwrap_or_else(|| (Tensor::zeros_like(&layer.ws), layer.bs.as_ref().map(Tensor::zeros_like)));
            let w = (w + gaussian(noise, &layer.ws, sigma, device)?) / self.expected_batch;
            surrogate += (&layer.ws * w.detach()).sum(Kind::Float);
            if let (Some(bs), Some(b)) = (&layer.bs, b) {
                let b = (b + gaussian(noise, bs, sigma, device)?) / self.expected_batch;
                surrogate += (bs * b.detach()).sum(Kind::Float);
            }
        }
        // The gradient of Σ⟨W, G̃⟩ with respect to W is G̃: one backward pass
        // puts the privatised gradients where the optimiser reads them.
        surrogate.f_backward().map_err(torch_err)
    }

    /// An empty batch: the gradients are the noise alone.
    pub(crate) fn noise_only(&self, layers: &[nn::Linear], noise: &mut Noise) -> Result<()> {
        let Some(device) = layers.first().map(|l| l.ws.device()) else {
            return Ok(());
        };
        let sigma = self.noise_multiplier * self.clip;
        let mut surrogate = Tensor::zeros([], (Kind::Float, device));
        for layer in layers {
            let w = gaussian(noise, &layer.ws, sigma, device)? / self.expected_batch;
            surrogate += (&layer.ws * w).sum(Kind::Float);
            if let Some(bs) = &layer.bs {
                let b = gaussian(noise, bs, sigma, device)? / self.expected_batch;
                surrogate += (bs * b).sum(Kind::Float);
            }
        }
        surrogate.f_backward().map_err(torch_err)
    }
}

/// N(0, σ²) in the shape of `like`, drawn on the host, on `device`.
fn gaussian(noise: &mut Noise, like: &Tensor, sigma: f64, device: Device) -> Result<Tensor> {
    let shape = like.size();
    let n = usize::try_from(shape.iter().product::<i64>()).unwrap_or(0);
    let mut values = vec![0.0f64; n];
    noise.gaussian(&mut values, sigma);
    #[allow(clippy::cast_possible_truncation, reason = "gradients are f32")]
    let values: Vec<f32> = values.into_iter().map(|v| v as f32).collect();
    Tensor::from_slice(&values)
        .f_view(shape.as_slice())
        .map(|t| t.to_device(device))
        .map_err(torch_err)
}

/// A Poisson sample of `rows` rows at rate `q`: each row independently with
/// probability `q`. Drawn as its size (binomial) and then that many distinct
/// rows uniformly, which is the same distribution in O(batch) time.
pub(crate) fn poisson_batch<R: Rng + ?Sized>(rows: usize, q: f64, rng: &mut R) -> Vec<i64> {
    let size = binomial(rows, q, rng);
    let mut picked: Vec<i64> = rand::seq::index::sample(rng, rows, size)
        .into_iter()
        .map(|i| i64::try_from(i).expect("row indices fit in i64"))
        .collect();
    picked.sort_unstable();
    picked
}

/// A Binomial(n, p) draw: by inversion of the geometric gaps between
/// successes (O(n p) expected), exact for any n.
fn binomial<R: Rng + ?Sized>(n: usize, p: f64, rng: &mut R) -> usize {
    if p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let log_q = (-p).ln_1p();
    let mut count = 0usize;
    let mut position = 0usize;
    loop {
        // Failures before the next success: Geometric(p) by inversion.
        let u: f64 = rng.random();
        let gap = ((1.0 - u).ln() / log_q).floor();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a non-negative gap, capped"
        )]
        let gap = if gap.is_finite() { gap.min(n as f64) as usize } else { n };
        position = position.saturating_add(gap);
        if position >= n {
            return count;
        }
        count += 1;
        position += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A two-layer network and a batch; each row's loss reads its own row.
    fn network(vs: &nn::VarStore) -> Vec<nn::Linear> {
        let root = vs.root();
        vec![
            nn::linear(&root / "a", 5, 7, nn::LinearConfig::default()),
            nn::linear(&root / "b", 7, 3, nn::LinearConfig::default()),
        ]
    }

    fn loss_of(layers: &[nn::Linear], x: &Tensor, tape: &mut Tape) -> Tensor {
        let h = tape.linear(layers, 0, x).tanh();
        let y = tape.linear(layers, 1, &h);
        // Per row: a smooth loss with gradients of very different sizes.
        (y.square() * 3.0 + y).sum(Kind::Float)
    }

    fn grads(layers: &[nn::Linear]) -> Vec<Tensor> {
        layers
            .iter()
            .flat_map(|l| [Some(l.ws.grad()), l.bs.as_ref().map(Tensor::grad)])
            .flatten()
            .map(|g| g.detach().copy())
            .collect()
    }

    fn zero(layers: &[nn::Linear]) {
        for l in layers {
            for t in [Some(&l.ws), l.bs.as_ref()].into_iter().flatten() {
                let mut g = t.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        }
    }

    #[test]
    fn the_clipped_sum_is_the_sum_of_clipped_per_row_gradients() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let layers = network(&vs);
        let x = Tensor::randn([9, 5], (Kind::Float, Device::Cpu)) * 2.0;
        let expected_batch = 4.5;

        // By brute force: one backward pass per row.
        let mut rows: Vec<(Vec<Tensor>, f64)> = Vec::new();
        for i in 0..9 {
            zero(&layers);
            let mut tape = Tape::default();
            loss_of(&layers, &x.narrow(0, i, 1), &mut tape).backward();
            let g = grads(&layers);
            let norm = g
                .iter()
                .map(|t| t.square().sum(Kind::Float).double_value(&[]))
                .sum::<f64>()
                .sqrt();
            rows.push((g, norm));
        }
        // Clip between the 4th and 5th smallest norms: five rows are clipped.
        let mut norms: Vec<f64> = rows.iter().map(|(_, n)| *n).collect();
        norms.sort_by(f64::total_cmp);
        let clip = (norms[3] + norms[4]) / 2.0;
        let mut want: Vec<Tensor> = rows[0].0.iter().map(Tensor::zeros_like).collect();
        for (g, norm) in &rows {
            let factor = (clip / (norm + 1e-6)).min(1.0);
            for (w, t) in want.iter_mut().zip(g) {
                *w += t * factor;
            }
        }

        zero(&layers);
        let mut tape = Tape::default();
        let loss = loss_of(&layers, &x, &mut tape);
        let p = Privatizer {
            clip,
            noise_multiplier: 0.0,
            expected_batch,
        };
        p.backward(&loss, tape, &layers, &mut Noise::seeded(1)).unwrap();
        for (got, want) in grads(&layers).iter().zip(&want) {
            let diff = (got - want / expected_batch).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{diff}");
        }
    }

    #[test]
    fn noise_has_the_calibrated_spread_on_every_coordinate() {
        let vs = nn::VarStore::new(Device::Cpu);
        let layers = vec![nn::linear(&vs.root() / "a", 200, 100, nn::LinearConfig::default())];
        let p = Privatizer {
            clip: 2.0,
            noise_multiplier: 1.5,
            expected_batch: 10.0,
        };
        // An empty batch: the gradient is noise alone, N(0, (σC / (qN))²).
        zero(&layers);
        p.noise_only(&layers, &mut Noise::seeded(7)).unwrap();
        let g = layers[0].ws.grad();
        let sd = g.std(true).double_value(&[]);
        assert!((sd - 0.3).abs() < 0.01, "{sd}");
        assert!(g.mean(Kind::Float).double_value(&[]).abs() < 0.005);
        // Two layers used once each is fine; one layer used twice is refused.
        let mut tape = Tape::default();
        let x = Tensor::ones([2, 200], (Kind::Float, Device::Cpu));
        let y = tape.linear(&layers, 0, &x);
        let _ = tape.linear(&layers, 0, &x);
        let err = p.backward(&y.sum(Kind::Float), tape, &layers, &mut Noise::seeded(7));
        assert!(err.is_err());
    }

    #[test]
    fn poisson_batches_take_each_row_with_probability_q() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (rows, q, draws) = (1000, 0.05, 2000);
        let mut hits = vec![0u32; rows];
        let mut sizes = Vec::new();
        for _ in 0..draws {
            let batch = poisson_batch(rows, q, &mut rng);
            assert!(batch.windows(2).all(|w| w[0] < w[1]), "distinct, sorted");
            sizes.push(batch.len() as f64);
            for i in batch {
                hits[usize::try_from(i).unwrap()] += 1;
            }
        }
        let mean = sizes.iter().sum::<f64>() / f64::from(draws);
        let var = sizes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / f64::from(draws);
        // Binomial(1000, 0.05): mean 50, variance 47.5.
        assert!((mean - 50.0).abs() < 0.7, "{mean}");
        assert!((var - 47.5).abs() < 5.0, "{var}");
        // Every row about equally often (100 expected each).
        let (lo, hi) = (hits.iter().min().unwrap(), hits.iter().max().unwrap());
        assert!(*lo > 60 && *hi < 145, "{lo} {hi}");
        assert!(poisson_batch(10, 0.0, &mut rng).is_empty());
        assert_eq!(poisson_batch(10, 1.0, &mut rng).len(), 10);
    }
}

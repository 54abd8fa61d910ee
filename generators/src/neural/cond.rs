//! CTGAN's conditional vector and training-by-sampling, on the device.
//!
//! Training picks a discrete column uniformly, a category with probability
//! ∝ log(1 + frequency) (so rare categories are seen), and a real row of that
//! category; sampling picks categories by their real frequency. All three
//! draws are tensor operations over precomputed per-category row lists.

use tch::{Device, Kind, Tensor};

use super::to_i64;
use super::transformer::Transformer;

pub(crate) struct CondSampler {
    /// Categories over all discrete columns (the conditional vector's width).
    pub(crate) dim: i64,
    offsets: Vec<i64>,
    sizes: Vec<i64>,
    starts: Vec<i64>,
    train_probs: Tensor,
    sample_probs: Tensor,
    row_offsets: Tensor,
    row_counts: Tensor,
    rows_sorted: Tensor,
    rows: i64,
    device: Device,
}

impl CondSampler {
    pub(crate) fn new(t: &Transformer, rows: usize, device: Device) -> CondSampler {
        let mut offsets = Vec::new();
        let mut sizes = Vec::new();
        let mut starts = Vec::new();
        let mut train = Vec::new();
        let mut sample = Vec::new();
        let mut row_offsets = Vec::new();
        let mut row_counts = Vec::new();
        let mut rows_sorted: Vec<i64> = Vec::new();
        let columns = t.discrete.len();
        #[allow(clippy::cast_precision_loss, reason = "column counts are small")]
        let per_column = 1.0 / columns.max(1) as f64;
        let mut dim = 0i64;
        for d in &t.discrete {
            offsets.push(dim);
            sizes.push(to_i64(d.counts.len()));
            starts.push(to_i64(t.spans[d.span].start));
            let logs: Vec<f64> = d.counts.iter().map(|c| (1.0 + c).ln()).collect();
            let log_total: f64 = logs.iter().sum();
            let total: f64 = d.counts.iter().sum();
            // Rows of each category, in row order.
            let mut by_cat: Vec<Vec<i64>> = vec![Vec::new(); d.counts.len()];
            for (r, &c) in d.codes.iter().enumerate() {
                by_cat[c as usize].push(to_i64(r));
            }
            for (c, list) in by_cat.into_iter().enumerate() {
                #[allow(clippy::cast_possible_truncation, reason = "probabilities as f32")]
                {
                    train.push((per_column * logs[c] / log_total) as f32);
                    sample.push((per_column * d.counts[c] / total) as f32);
                }
                row_offsets.push(to_i64(rows_sorted.len()));
                #[allow(clippy::cast_precision_loss, reason = "row counts as f32")]
                row_counts.push(list.len() as f32);
                rows_sorted.extend(list);
            }
            dim += to_i64(d.counts.len());
        }
        let t = |v: &[f32]| Tensor::from_slice(v).to_device(device);
        let ti = |v: &[i64]| Tensor::from_slice(v).to_device(device);
        CondSampler {
            dim,
            offsets,
            sizes,
            starts,
            train_probs: t(&train),
            sample_probs: t(&sample),
            row_offsets: ti(&row_offsets),
            row_counts: t(&row_counts),
            rows_sorted: ti(&rows_sorted),
            rows: to_i64(rows),
            device,
        }
    }

    /// Conditional vectors `[b, dim]`, the chosen global categories `[b]` and
    /// the index of a real row having each `[b]`.
    pub(crate) fn sample_train(&self, b: i64) -> (Tensor, Option<Tensor>, Tensor) {
        if self.dim == 0 {
            let rows = Tensor::randint(self.rows, [b], (Kind::Int64, self.device));
            return (Tensor::zeros([b, 0], (Kind::Float, self.device)), None, rows);
        }
        let cats = self.train_probs.multinomial(b, true);
        let offsets = self.row_offsets.index_select(0, &cats);
        let counts = self.row_counts.index_select(0, &cats);
        let pick = (Tensor::rand([b], (Kind::Float, self.device)) * &counts)
            .floor()
            .minimum(&(counts - 1.0))
            .to_kind(Kind::Int64);
        let rows = self.rows_sorted.index_select(0, &(offsets + pick));
        let cond = cats.one_hot(self.dim).to_kind(Kind::Float);
        (cond, Some(cats), rows)
    }

    /// Conditional vectors `[b, dim]` drawn by real category frequency.
    pub(crate) fn sample_original(&self, b: i64) -> Tensor {
        if self.dim == 0 {
            return Tensor::zeros([b, 0], (Kind::Float, self.device));
        }
        self.sample_probs
            .multinomial(b, true)
            .one_hot(self.dim)
            .to_kind(Kind::Float)
    }

    /// Mean cross-entropy between the generator's raw outputs of each sample's
    /// conditioned column and the category it was asked for. The discrete
    /// blocks' log-softmaxes laid side by side are indexed exactly like the
    /// conditional vector, so one gather picks every sample's term.
    pub(crate) fn cond_loss(&self, raw: &Tensor, cats: &Tensor) -> Tensor {
        let blocks: Vec<Tensor> = (0..self.offsets.len())
            .map(|j| raw.narrow(1, self.starts[j], self.sizes[j]).log_softmax(1, Kind::Float))
            .collect();
        let logp = Tensor::cat(&blocks, 1);
        -logp.gather(1, &cats.unsqueeze(1), false).mean(Kind::Float)
    }
}

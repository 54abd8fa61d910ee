//! Dense symmetric-matrix helpers for the copula's correlation matrix.
//!
//! Matrices are row-major `Vec<f64>` of size `d × d`; `d` is the number of
//! modelled columns (tens to a few hundred), so a straightforward O(d³)
//! Cholesky is plenty.

/// Pearson correlation of the columns of `z` (each of length `n`).
pub(crate) fn correlation(z: &[Vec<f64>]) -> Vec<f64> {
    let d = z.len();
    let n = z.first().map_or(0, Vec::len);
    let mut centered: Vec<Vec<f64>> = Vec::with_capacity(d);
    let mut norms = Vec::with_capacity(d);
    for col in z {
        #[allow(clippy::cast_precision_loss, reason = "row counts are far below 2^52")]
        let mean = col.iter().sum::<f64>() / n.max(1) as f64;
        let c: Vec<f64> = col.iter().map(|x| x - mean).collect();
        norms.push(c.iter().map(|x| x * x).sum::<f64>().sqrt());
        centered.push(c);
    }
    let mut r = vec![0.0; d * d];
    for i in 0..d {
        r[i * d + i] = 1.0;
        for j in 0..i {
            let denom = norms[i] * norms[j];
            let v = if denom > 0.0 {
                let dot: f64 = centered[i].iter().zip(&centered[j]).map(|(a, b)| a * b).sum();
                (dot / denom).clamp(-1.0, 1.0)
            } else {
                0.0
            };
            r[i * d + j] = v;
            r[j * d + i] = v;
        }
    }
    r
}

/// Lower-triangular Cholesky factor of a symmetric positive-definite matrix,
/// or `None` if it is not positive definite.
pub(crate) fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut sum = a[i * d + j];
            for k in 0..j {
                sum -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[i * d + i] = sum.sqrt();
            } else {
                l[i * d + j] = sum / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// Cholesky factor of a correlation matrix, shrinking it towards the identity
/// until it is positive definite. Empirical correlations of columns that are
/// functions of each other (e.g. `education` and `education_num`) are singular;
/// shrinking by the smallest λ that works keeps them as close as possible.
pub(crate) fn cholesky_shrunk(r: &[f64], d: usize) -> (Vec<f64>, f64) {
    let mut lambda = 0.0;
    loop {
        let shrunk: Vec<f64> = r
            .iter()
            .enumerate()
            .map(|(idx, v)| if idx / d == idx % d { 1.0 } else { v * (1.0 - lambda) })
            .collect();
        if let Some(l) = cholesky(&shrunk, d) {
            return (l, lambda);
        }
        lambda = if lambda == 0.0 { 1e-6 } else { (lambda * 4.0).min(1.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn multiply_llt(l: &[f64], d: usize) -> Vec<f64> {
        let mut out = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] = (0..d).map(|k| l[i * d + k] * l[j * d + k]).sum();
            }
        }
        out
    }

    proptest! {
        #[test]
        fn cholesky_reconstructs_spd(entries in proptest::collection::vec(-1.0f64..1.0, 16)) {
            // A·Aᵀ + I is symmetric positive definite.
            let d = 4;
            let mut a = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..d {
                    a[i * d + j] = (0..d).map(|k| entries[i * d + k] * entries[j * d + k]).sum::<f64>()
                        + if i == j { 1.0 } else { 0.0 };
                }
            }
            let l = cholesky(&a, d).expect("SPD matrix");
            let back = multiply_llt(&l, d);
            for (x, y) in a.iter().zip(&back) {
                prop_assert!((x - y).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn singular_correlation_is_shrunk_not_rejected() {
        // Two identical columns: correlation 1, singular.
        let r = vec![1.0, 1.0, 1.0, 1.0];
        assert!(cholesky(&r, 2).is_none());
        let (l, lambda) = cholesky_shrunk(&r, 2);
        assert!(lambda > 0.0 && lambda < 1e-3, "lambda {lambda}");
        let back = multiply_llt(&l, 2);
        assert!((back[1] - 1.0).abs() < 1e-3);
    }

    #[test]
    fn correlation_of_linear_columns() {
        let x: Vec<f64> = (0..100).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| 3.0 - 2.0 * v).collect();
        let r = correlation(&[x, y]);
        assert!((r[1] + 1.0).abs() < 1e-12);
        assert_eq!(r[0], 1.0);
    }
}

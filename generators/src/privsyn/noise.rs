//! Where DP noise comes from.
//!
//! Noise drawn from a seed the analyst knows can be subtracted again, so by
//! default the Gaussian noise comes from a ChaCha20 stream keyed by the
//! operating system's entropy, independent of the stage's `seed`. Tests and
//! experiments that need identical output ask for `reproducible_noise`,
//! which derives the key from the seed and voids the guarantee for anyone
//! who knows it.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::stats::NormalSampler;

/// A source of Gaussian noise.
pub(crate) struct Noise {
    rng: ChaCha20Rng,
    normals: NormalSampler,
}

impl Noise {
    /// Keyed by the operating system's entropy.
    pub(crate) fn os() -> std::io::Result<Noise> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        Ok(Noise {
            rng: ChaCha20Rng::from_seed(key),
            normals: NormalSampler::default(),
        })
    }

    /// A fit's noise: from the operating system unless the fit asked for
    /// `reproducible_noise`.
    pub(crate) fn for_fit(reproducible: bool, seed: u64) -> crate::Result<Noise> {
        if reproducible {
            Ok(Noise::seeded(seed))
        } else {
            Noise::os().map_err(|e| crate::Error::Entropy(e.to_string()))
        }
    }

    /// Keyed by a seed: reproducible, and not private against whoever knows it.
    pub(crate) fn seeded(seed: u64) -> Noise {
        Noise {
            rng: ChaCha20Rng::seed_from_u64(seed ^ 0x6e6f_6973_655f_6470),
            normals: NormalSampler::default(),
        }
    }

    /// The stream itself, for other random choices that must be as private
    /// as the noise (which rows a DP-SGD batch takes).
    #[cfg(feature = "torch")]
    pub(crate) fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// Add N(0, σ²) to every value.
    pub(crate) fn gaussian(&mut self, values: &mut [f64], sigma: f64) {
        for v in values {
            *v += sigma * self.normals.sample(&mut self.rng);
        }
    }
}

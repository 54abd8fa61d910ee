//! Neural generators on libtorch (`torch` feature): [`Ctgan`], [`Tvae`] and
//! [`DpTvae`] (TVAE under DP-SGD, [`dpsgd`]).
//!
//! Both share CTGAN's data transformer ([`transformer`]) and keep the whole
//! training loop on the device: the encoded table is one tensor, and
//! conditional vectors and the rows that match them are drawn with tensor
//! operations (multinomial over categories, gathers into per-category row
//! lists), so no per-row host work happens after the one-off encoding.
//! `Device::cuda_if_available()` picks the GPU when there is one.
//!
//! libtorch's random generator is process-wide, so fits and samples take a
//! process-wide lock: with the same seed a fit is reproducible on CPU, and
//! two jobs never fight over one GPU's memory.

mod cond;
mod ctgan;
mod dp_tvae;
mod dpsgd;
pub(crate) mod transformer;
mod tvae;

use std::sync::Mutex;

use tch::{Device, Tensor, nn};

use crate::params::{ParamSpec, ParamType, ParamValue, Params};
use crate::{Error, Progress, Result};

pub(crate) use ctgan::load as load_ctgan;
pub use ctgan::{Ctgan, CtganModel};
pub use dp_tvae::{DpTvae, DpTvaeModel};
pub(crate) use tvae::load as load_tvae;
pub use tvae::{Tvae, TvaeModel};

use crate::saved::{ModelReader, ModelWriter};
use crate::semantic::SemanticType;

/// Serialises every use of libtorch's global random generator.
static TORCH: Mutex<()> = Mutex::new(());

fn torch_lock() -> std::sync::MutexGuard<'static, ()> {
    // A panic while holding the lock leaves no state behind worth refusing.
    TORCH.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn device(params: &Params) -> Result<Device> {
    let name = match params.string("device")? {
        Some(s) => s.to_owned(),
        None => "auto".to_owned(),
    };
    match name.as_str() {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        "cuda" => Err(Error::InvalidParam {
            name: "device".into(),
            message: "no CUDA device is available to this process".into(),
        }),
        other => Err(Error::InvalidParam {
            name: "device".into(),
            message: format!("`{other}` is not one of auto, cpu, cuda"),
        }),
    }
}

fn positive(params: &Params, name: &str, default: i64) -> Result<i64> {
    let v = params.integer(name, default)?;
    if v > 0 {
        Ok(v)
    } else {
        Err(Error::InvalidParam {
            name: name.into(),
            message: "must be a positive integer".into(),
        })
    }
}

/// Parameters both neural generators take.
fn common_params(epochs: i64, batch: i64) -> Vec<ParamSpec> {
    vec![
        ParamSpec::integer("epochs", "Passes over the table.", epochs, 1.0, 100_000.0),
        ParamSpec::integer(
            "batch_size",
            "Rows per training step (a multiple of `pac` for CTGAN).",
            batch,
            10.0,
            1e6,
        ),
        ParamSpec::integer(
            "embedding_dim",
            "Size of the random input (CTGAN) or latent code (TVAE).",
            128,
            2.0,
            4096.0,
        ),
        ParamSpec::integer(
            "max_categories",
            "Columns with more distinct values are resampled independently instead of one-hot encoded.",
            1000,
            2.0,
            1e6,
        ),
        device_param(),
    ]
}

/// `device`: the operator's hardware, never a job's to set.
fn device_param() -> ParamSpec {
    ParamSpec {
        name: "device",
        description: "`auto` (CUDA when available), `cpu` or `cuda`.",
        ty: ParamType::String,
        default: Some(ParamValue::String("auto".into())),
        allowed: &["auto", "cpu", "cuda"],
        minimum: None,
        maximum: None,
        user_settable: false,
    }
}

/// `[start, width]` of each discrete block, for gathers on the device.
fn to_i64(x: usize) -> i64 {
    i64::try_from(x).expect("sizes fit in i64")
}

/// A linear layer initialised as PyTorch's `nn.Linear` is (Kaiming uniform
/// with a = √5: bound 1/√fan_in), which is what SDV trains; tch's default
/// uses the ReLU gain, 2.4× larger, and CTGAN then learns more slowly.
fn linear(p: nn::Path<'_>, input: i64, output: i64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Uniform,
            fan: nn::init::FanInOut::FanIn,
            non_linearity: nn::init::NonLinearity::ExplicitGain(1.0 / 3f64.sqrt()),
        },
        ..nn::LinearConfig::default()
    };
    nn::linear(p, input, output, config)
}

/// Draw `rows` encoded rows (`rows × width`, row-major, on the host) in
/// batches of at most `batch` from `generate`, which returns one batch of
/// activated rows on the device. Seeded, under the process-wide torch lock,
/// without autograd; cancellable between batches.
fn sample_encoded(
    rows: usize,
    batch: i64,
    width: usize,
    seed: u64,
    progress: &dyn Progress,
    mut generate: impl FnMut(i64) -> Tensor,
) -> Result<Vec<f32>> {
    let _torch = torch_lock();
    tch::manual_seed(i64::from_ne_bytes(seed.to_ne_bytes()));
    let _no_grad = tch::no_grad_guard();
    let mut out: Vec<f32> = Vec::with_capacity(rows * width);
    let mut done = 0usize;
    while done < rows {
        if progress.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let b = batch.min(to_i64(rows - done));
        let act = generate(b).to_device(Device::Cpu).contiguous();
        out.extend_from_slice(&Vec::<f32>::try_from(&act.view([-1])).map_err(torch_err)?);
        done += usize::try_from(b).unwrap_or(0);
        progress.advance(done as u64, rows as u64);
    }
    Ok(out)
}

/// Write the variables of `vs` that `keep` accepts as `weights.<path>`
/// (`F32`, on the host), in name order so the file is reproducible.
fn save_weights(vs: &nn::VarStore, w: &mut ModelWriter, keep: impl Fn(&str) -> bool) -> Result<()> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(n, _)| keep(n)).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, var) in vars {
        let t = var
            .detach()
            .to_device(Device::Cpu)
            .to_kind(tch::Kind::Float)
            .contiguous();
        let shape = t.size().iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
        let data = Vec::<f32>::try_from(&t.view([-1])).map_err(torch_err)?;
        w.f32(format!("weights.{name}"), shape, &data);
    }
    Ok(())
}

/// Fill every variable of `vs` from `weights.<path>` of a saved model; each
/// must be there with the shape the network was rebuilt with.
fn load_weights(vs: &nn::VarStore, r: &ModelReader<'_>) -> Result<()> {
    let _no_grad = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let key = format!("weights.{name}");
        let (shape, data) = r.f32(&key)?;
        let want: Vec<usize> = var.size().iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
        if shape != want {
            return Err(Error::InvalidModel(format!(
                "tensor `{key}` has shape {shape:?}, the network needs {want:?}"
            )));
        }
        let dims: Vec<i64> = shape.iter().map(|&d| to_i64(d)).collect();
        let value = Tensor::from_slice(&data).view(dims.as_slice()).to_device(var.device());
        var.f_copy_(&value).map_err(torch_err)?;
    }
    Ok(())
}

/// What both neural models keep besides weights and the transformer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SavedSettings {
    transformer: transformer::TransformerState,
    /// Semantic type names, in schema order.
    semantics: Vec<String>,
    embedding: i64,
    batch: i64,
    epochs: i64,
    /// Final losses: CTGAN's (generator, critic), TVAE's (loss, 0).
    losses: (f64, f64),
    /// Where it was trained (`Cpu`, `Cuda(0)`).
    trained_on: String,
    /// Rows it learned from: what a loaded model samples by default.
    rows: usize,
}

/// What a trained or loaded CTGAN and TVAE both keep besides their
/// networks: the data transformer, the columns' semantics, the sizes
/// sampling needs, and the facts their notes and saved files carry.
pub(crate) struct Fitted {
    transformer: transformer::Transformer,
    semantics: Vec<SemanticType>,
    embedding: i64,
    batch: i64,
    device: Device,
    epochs: i64,
    /// Final losses: CTGAN's (generator, critic), TVAE's (loss, 0).
    losses: (f64, f64),
    /// Where it was trained (`Cpu`, `Cuda(0)`).
    trained_on: String,
    /// Whether it came from a saved file.
    loaded: bool,
    /// Rows it learned from.
    rows: usize,
}

/// The sizes a fit ran with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FitSizes {
    embedding: i64,
    batch: i64,
    device: Device,
    epochs: i64,
}

impl Fitted {
    /// A model just trained on `rows` rows.
    fn trained(
        transformer: transformer::Transformer,
        semantics: Vec<SemanticType>,
        sizes: FitSizes,
        losses: (f64, f64),
        rows: usize,
    ) -> Fitted {
        Fitted {
            transformer,
            semantics,
            embedding: sizes.embedding,
            batch: sizes.batch,
            device: sizes.device,
            epochs: sizes.epochs,
            losses,
            trained_on: format!("{:?}", sizes.device),
            loaded: false,
            rows,
        }
    }

    /// The parts of a saved model besides its weights, checked, for
    /// sampling on the GPU when there is one.
    fn open(r: &ModelReader<'_>) -> Result<Fitted> {
        let (s, transformer, semantics) = SavedSettings::open(r)?;
        Ok(Fitted {
            transformer,
            semantics,
            embedding: s.embedding,
            batch: s.batch,
            device: Device::cuda_if_available(),
            epochs: s.epochs,
            losses: s.losses,
            trained_on: s.trained_on,
            loaded: true,
            rows: s.rows,
        })
    }

    /// Per-column models for the report.
    fn columns(&self) -> Vec<crate::ColumnModel> {
        self.transformer
            .describe()
            .into_iter()
            .zip(self.transformer.column_names())
            .zip(&self.semantics)
            .map(|((model, column), semantic)| crate::ColumnModel {
                column,
                semantic: *semantic,
                model,
            })
            .collect()
    }

    /// The model's notes: how it was trained (`losses` says how it ended)
    /// and, for a loaded one, where it samples.
    fn notes(&self, losses: &str) -> Vec<String> {
        let mut notes = vec![format!("{} epochs on {}; {losses}", self.epochs, self.trained_on)];
        if self.loaded {
            notes.push(format!("loaded from a saved model; sampling on {:?}", self.device));
        }
        notes
    }

    /// A fitted model leaves the size to its stage (the real table's); a
    /// loaded one has no table but knows how large its own was.
    fn suggested_rows(&self) -> Option<usize> {
        (self.loaded && self.rows > 0).then_some(self.rows)
    }

    /// The saved file: transformer, the weights `keep` selects from `vs`,
    /// and these settings.
    fn save(&self, name: &str, vs: &nn::VarStore, keep: impl Fn(&str) -> bool) -> Result<Vec<u8>> {
        let mut w = ModelWriter::new(name);
        let transformer = self.transformer.save(&mut w)?;
        save_weights(vs, &mut w, keep)?;
        w.finish(&SavedSettings {
            transformer,
            semantics: self.semantics.iter().map(|s| s.as_str().to_owned()).collect(),
            embedding: self.embedding,
            batch: self.batch,
            epochs: self.epochs,
            losses: self.losses,
            trained_on: self.trained_on.clone(),
            rows: self.rows,
        })
    }
}

impl std::fmt::Debug for Fitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fitted")
            .field("device", &self.device)
            .field("epochs", &self.epochs)
            .field("loaded", &self.loaded)
            .finish_non_exhaustive()
    }
}

impl SavedSettings {
    /// The parts a loaded model needs, checked.
    fn open(r: &ModelReader<'_>) -> Result<(SavedSettings, transformer::Transformer, Vec<SemanticType>)> {
        let s: SavedSettings = r.state()?;
        let t = transformer::Transformer::load(r, s.transformer.clone())?;
        let semantics = s
            .semantics
            .iter()
            .map(|n| {
                n.parse::<SemanticType>()
                    .map_err(|_| Error::InvalidModel(format!("unknown semantic type `{n}`")))
            })
            .collect::<Result<Vec<_>>>()?;
        if semantics.len() != t.column_names().len() {
            return Err(Error::InvalidModel(format!(
                "{} semantic types for {} columns",
                semantics.len(),
                t.column_names().len()
            )));
        }
        if s.embedding <= 0 || s.batch <= 0 {
            return Err(Error::InvalidModel("embedding and batch sizes must be positive".into()));
        }
        Ok((s, t, semantics))
    }
}

fn torch_err(e: tch::TchError) -> Error {
    Error::Torch(e.to_string())
}

//! The sandboxed plugin host.
//!
//! One [`PluginHost`] per process owns the wasmtime [`Engine`] (epoch
//! interruption on, component-model concurrency off: a synchronous call is ~3×
//! cheaper), the [`Linker`] (an empty WASI context plus `host.log`) and an
//! on-disk cache of compiled components. [`PluginRegistry`] knows every
//! installed plugin by manifest and loads one on demand into a
//! [`LoadedPlugin`]: compiled, its imports checked against what it declared and
//! the operator granted, its `describe` read. Each stage run gets a fresh
//! [`Session`] (store + instance) with its own limits; after a trap, timeout or
//! cancellation the session is discarded.

pub mod bindings;
mod error;
mod manifest;
mod registry;
mod sandbox;
mod session;
pub(crate) mod stage;

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

use bindings::types::{PluginInfo, StageKind};
use bindings::v0_1;
pub use error::{Failure, PluginError};
pub use manifest::{Capabilities, ConfigEntry, ConfigType, Manifest, ManifestLimits, PluginKind};
pub use registry::{PluginEntry, PluginRegistry, ResolveError, WasmSource};
pub use sandbox::Grants;
pub(crate) use sandbox::HostState;
pub use session::{OutputCaps, Session};

/// Epoch tick: the granularity of timeouts and cancellation.
const TICK: Duration = Duration::from_millis(10);

/// Per-call limits of one stage's plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Linear memory cap, MiB.
    pub memory_mb: u64,
    /// Wall-time cap of one call, ms.
    pub timeout_ms: u64,
    /// Fuel per call, if metered.
    pub fuel: Option<u64>,
}

/// How the host is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Meter fuel. Costs ~20 % of plugin CPU, so it is on only when a stage
    /// sets `limits.fuel`.
    pub fuel: bool,
    /// What plugins may have beyond their sandbox.
    pub grants: Grants,
    /// Largest `limits.memory_mb` a pipeline may ask for.
    pub max_memory_mb: u64,
    /// Largest `limits.timeout_ms` a pipeline may ask for.
    pub max_timeout_ms: u64,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: default_cache_dir(),
            fuel: false,
            grants: Grants::default(),
            max_memory_mb: 4096,
            max_timeout_ms: 600_000,
        }
    }
}

/// `$XDG_CACHE_HOME/doppel/components`, else `~/.cache/doppel/components`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("doppel").join("components"))
}

/// Increments the engine epoch every [`TICK`] until dropped.
#[derive(Debug)]
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The process-wide plugin runtime.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    config: HostConfig,
    /// Hex digest of everything that makes compiled code engine-specific.
    engine_key: String,
    _ticker: Ticker,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Feeds `Hash` output into SHA-256 so the engine key is stable across runs.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl PluginHost {
    /// Build the engine, linker and epoch ticker.
    pub fn new(config: HostConfig) -> Result<Arc<PluginHost>, PluginError> {
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        wasm.concurrency_support(false);
        wasm.consume_fuel(config.fuel);
        // A plugin author's or operator's tool, read from the process's own
        // environment (never from a request): name each compiled plugin
        // function in /tmp/perf-<pid>.map, so `perf record` on the binary
        // shows where a plugin spends its time.
        if std::env::var("DOPPEL_PLUGIN_PROFILER").as_deref() == Ok("perfmap") {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&wasm).map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
        v0_1::shared::doppel::plugin::host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Runtime(format!("{e:#}")))?;

        let mut hasher = ShaHasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);

        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop_flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("doppel-epoch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PluginError::Runtime(e.to_string()))?;
        Ok(Arc::new(PluginHost {
            engine,
            linker,
            config,
            engine_key,
            _ticker: Ticker {
                stop,
                handle: Some(handle),
            },
        }))
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Compile `wasm`, or load its compiled form from the cache. Returns the
    /// component, the wasm's SHA-256 and whether the cache had it.
    fn compile(&self, label: &str, wasm: &[u8]) -> Result<(Component, String, bool), PluginError> {
        let sha = hex(&Sha256::digest(wasm));
        let cached = self
            .config
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{sha}-{}.cwasm", self.engine_key)));
        if let Some(path) = &cached
            && path.exists()
        {
            match load_cached(&self.engine, path) {
                Ok(component) => return Ok((component, sha, true)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "Ignoring unusable cached component."),
            }
        }
        let component = Component::new(&self.engine, wasm).map_err(|e| PluginError::Compile {
            plugin: label.to_owned(),
            message: format!("{e:#}"),
        })?;
        if let Some(path) = &cached {
            // The cache only saves time; failing to write it must not fail the run.
            if let Err(e) = store_cached(&component, path) {
                tracing::warn!(error = %e, "Could not cache a compiled component.");
            }
        }
        Ok((component, sha, false))
    }

    /// Compile and vet a plugin: contract version, kind, imports, `describe`.
    pub fn load(self: &Arc<Self>, manifest: Manifest, wasm: &[u8], origin: &str) -> Result<LoadedPlugin, PluginError> {
        let label = manifest.label();
        let (component, sha256, from_cache) = self.compile(&label, wasm)?;
        let ty = component.component_type();

        // The exports carry the contract version: `doppel:plugin/detector@0.1.0`.
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let (kind, contract) = exports
            .iter()
            .find_map(|name| {
                let rest = name.strip_prefix("doppel:plugin/")?;
                let (iface, version) = rest.split_once('@')?;
                let kind = match iface {
                    "detector" => PluginKind::Detector,
                    "metric" => PluginKind::Metric,
                    "rule" => PluginKind::Rule,
                    _ => return None,
                };
                Some((kind, semver::Version::parse(version).ok()?))
            })
            .ok_or_else(|| PluginError::UnsupportedContract {
                plugin: label.clone(),
                found: if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                },
            })?;
        if !(contract.major == 0 && contract.minor == 1) {
            return Err(PluginError::UnsupportedContract {
                plugin: label,
                found: format!("doppel:plugin@{contract}"),
            });
        }
        if kind != manifest.kind {
            return Err(PluginError::Mismatch {
                plugin: label,
                message: format!(
                    "its manifest says kind = \"{}\" but the component is a {kind}",
                    manifest.kind
                ),
            });
        }

        let imports: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let reasons = sandbox::refused_imports(
            imports.iter().map(String::as_str),
            &manifest.capabilities,
            &self.config.grants,
        );
        if !reasons.is_empty() {
            return Err(PluginError::Refused { plugin: label, reasons });
        }

        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Compile {
                plugin: label.clone(),
                message: format!("{e:#}"),
            })?;
        let pre = match kind {
            PluginKind::Detector => v0_1::detector::DetectorPluginPre::new(instance_pre).map(session::Pre::Detector),
            PluginKind::Metric => v0_1::metric::MetricPluginPre::new(instance_pre).map(session::Pre::Metric),
            PluginKind::Rule => v0_1::rule::RulePluginPre::new(instance_pre).map(session::Pre::Rule),
        }
        .map_err(|e| PluginError::Compile {
            plugin: label.clone(),
            message: format!("{e:#}"),
        })?;

        let mut plugin = LoadedPlugin {
            manifest,
            info: None,
            sha256,
            origin: origin.to_owned(),
            contract,
            from_cache,
            pre,
            host: Arc::clone(self),
        };
        let info = plugin.read_info()?;
        check_info(&plugin.manifest, &info)?;
        plugin.info = Some(info);
        Ok(plugin)
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

#[allow(
    unsafe_code,
    reason = "deserializing compiled code is unsafe by nature; see the safety comment"
)]
fn load_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was written by `store_cached` from `Component::serialize`
    // into the user's private cache directory (created 0700), and its name
    // binds it to the source wasm's hash and this engine's configuration.
    // wasmtime still validates the header and rejects artifacts from another
    // engine version or configuration.
    unsafe { Component::deserialize_file(engine, path) }
}

fn store_cached(component: &Component, path: &Path) -> Result<(), PluginError> {
    let err = |source| PluginError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().expect("cache files live in a directory");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(err)?;
    let bytes = component
        .serialize()
        .map_err(|e| err(std::io::Error::other(format!("{e:#}"))))?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// `describe` must agree with the manifest the plugin was resolved by.
fn check_info(manifest: &Manifest, info: &PluginInfo) -> Result<(), PluginError> {
    let mismatch = |message: String| PluginError::Mismatch {
        plugin: manifest.label(),
        message,
    };
    if info.name != manifest.id {
        return Err(mismatch(format!(
            "describe() names it `{}`, its manifest `{}`",
            info.name, manifest.id
        )));
    }
    if semver::Version::parse(&info.version).ok().as_ref() != Some(&manifest.version) {
        return Err(mismatch(format!(
            "describe() says version `{}`, its manifest `{}`",
            info.version, manifest.version
        )));
    }
    let kind = match info.kind {
        StageKind::Detector => PluginKind::Detector,
        StageKind::Metric => PluginKind::Metric,
        StageKind::Rule => PluginKind::Rule,
    };
    if kind != manifest.kind {
        return Err(mismatch(format!(
            "describe() says kind {kind}, its manifest {}",
            manifest.kind
        )));
    }
    let names: Vec<&str> = info.config.iter().map(|f| f.name.as_str()).collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(mismatch(format!("describe() declares config key `{n}` twice")));
        }
    }
    // A built plugin's manifest states its `with` schema; a component that
    // disagrees is not the one the manifest was written for.
    if let Some(stated) = &manifest.config {
        let described: Vec<ConfigEntry> = info.config.iter().map(config_entry).collect();
        if let Some((a, b)) = stated.iter().zip(&described).find(|(a, b)| a != b) {
            return Err(mismatch(format!(
                "its manifest's [[config]] `{}` differs from describe()'s `{}`; rebuild with `doppel plugin build`",
                a.name, b.name
            )));
        }
        if stated.len() != described.len() {
            return Err(mismatch(format!(
                "its manifest lists {} config keys, describe() {}; rebuild with `doppel plugin build`",
                stated.len(),
                described.len()
            )));
        }
    }
    Ok(())
}

/// A `describe()` config field as a manifest `[[config]]` entry.
pub fn config_entry(field: &bindings::types::ConfigField) -> ConfigEntry {
    use bindings::types::{ConfigValue, ValueType};
    let default = field.default.as_ref().map(|v| match v {
        ConfigValue::String(s) => toml::Value::String(s.clone()),
        ConfigValue::Integer(i) => toml::Value::Integer(*i),
        ConfigValue::Float(f) => toml::Value::Float(*f),
        ConfigValue::Boolean(b) => toml::Value::Boolean(*b),
        ConfigValue::Strings(list) => toml::Value::Array(list.iter().map(|s| toml::Value::String(s.clone())).collect()),
    });
    ConfigEntry {
        name: field.name.clone(),
        ty: match field.type_ {
            ValueType::String => ConfigType::String,
            ValueType::Integer => ConfigType::Integer,
            ValueType::Float => ConfigType::Float,
            ValueType::Boolean => ConfigType::Boolean,
            ValueType::Strings => ConfigType::Strings,
        },
        description: field.description.clone(),
        required: field.required,
        default,
        allowed: field.allowed.clone(),
        minimum: field.minimum,
        maximum: field.maximum,
    }
}

/// A compiled, vetted plugin, ready to start sessions.
pub struct LoadedPlugin {
    /// Its manifest.
    pub manifest: Manifest,
    info: Option<PluginInfo>,
    /// SHA-256 of the component.
    pub sha256: String,
    /// Where it came from (`embedded`, or a path).
    pub origin: String,
    /// Contract version it exports.
    pub contract: semver::Version,
    /// Whether the compiled form came from the cache.
    pub from_cache: bool,
    pre: session::Pre,
    host: Arc<PluginHost>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("manifest", &self.manifest)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// What the plugin said about itself.
    pub fn info(&self) -> &PluginInfo {
        self.info.as_ref().expect("set by PluginHost::load")
    }

    /// `id@version`.
    pub fn label(&self) -> String {
        self.manifest.label()
    }

    /// Limits of a stage: the pipeline's values, else the manifest defaults,
    /// capped by the operator's maximums.
    pub fn limits(&self, memory_mb: Option<u64>, timeout_ms: Option<u64>, fuel: Option<u64>) -> Limits {
        let cfg = &self.host.config;
        Limits {
            memory_mb: memory_mb
                .unwrap_or(self.manifest.limits.memory_mb)
                .min(cfg.max_memory_mb),
            timeout_ms: timeout_ms
                .unwrap_or(self.manifest.limits.timeout_ms)
                .min(cfg.max_timeout_ms),
            fuel: fuel.or(self.manifest.limits.fuel),
        }
    }

    fn read_info(&self) -> Result<PluginInfo, PluginError> {
        let limits = self.limits(None, None, None);
        let mut session = Session::start(self, "describe", limits, Arc::new(AtomicBool::new(false)))?;
        session.describe()
    }

    /// Start an instance for one stage run.
    pub fn start(&self, stage: &str, limits: Limits, cancel: Arc<AtomicBool>) -> Result<Session, PluginError> {
        Session::start(self, stage, limits, cancel)
    }

    pub(crate) fn new_store(
        &self,
        stage: &str,
        limits: Limits,
        cancel: Arc<AtomicBool>,
    ) -> wasmtime::Result<Store<HostState>> {
        let memory = usize::try_from(limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let state = HostState::new(
            Arc::from(stage),
            Arc::from(self.label().as_str()),
            memory,
            &self.manifest.capabilities,
            &self.host.config.grants,
            cancel,
        )?;
        let mut store = Store::new(self.host.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(HostState::on_epoch);
        store.set_epoch_deadline(1);
        if self.host.config.fuel {
            store.set_fuel(limits.fuel.unwrap_or(u64::MAX))?;
        }
        Ok(store)
    }

    pub(crate) fn fuel_metered(&self) -> bool {
        self.host.config.fuel
    }
}

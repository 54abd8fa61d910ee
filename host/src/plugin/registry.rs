//! Installed plugins, by id and version: first-party plugins embedded in the
//! binary plus directories of third-party ones, resolved as `id@version-req`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{LoadedPlugin, Manifest, PluginError, PluginHost};

/// Where a plugin's component bytes live.
#[derive(Debug, Clone)]
pub enum WasmSource {
    /// Compiled into the binary.
    Embedded(&'static [u8]),
    /// A `.wasm` file.
    File(PathBuf),
}

/// One installed plugin, known by its manifest.
#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its component.
    pub source: WasmSource,
    /// `embedded` or the manifest path.
    pub origin: String,
}

/// Why `uses = "<id>@<req>"` could not be satisfied.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No plugin has this id.
    #[error("no plugin named `{id}` is installed")]
    Unknown {
        /// Requested id.
        id: String,
        /// Installed ids.
        installed: Vec<String>,
    },
    /// The id exists but no version matches.
    #[error("no version of `{id}` matches `{req}` (installed: {})", available.join(", "))]
    NoMatchingVersion {
        /// Requested id.
        id: String,
        /// Requested versions.
        req: semver::VersionReq,
        /// Installed versions.
        available: Vec<String>,
    },
    /// The plugin was found but could not be loaded.
    #[error(transparent)]
    Load(#[from] Arc<PluginError>),
}

/// Loaded plugins (or why they failed to load) by id and version.
type LoadCache = HashMap<(String, semver::Version), Result<Arc<LoadedPlugin>, Arc<PluginError>>>;

/// Every installed plugin, loaded lazily and at most once per process.
pub struct PluginRegistry {
    host: Arc<PluginHost>,
    entries: Vec<PluginEntry>,
    loaded: Mutex<LoadCache>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl PluginRegistry {
    /// An empty registry over `host`.
    pub fn new(host: Arc<PluginHost>) -> Self {
        PluginRegistry {
            host,
            entries: Vec::new(),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// The host plugins run in.
    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    /// Register a plugin compiled into the binary.
    pub fn add_embedded(&mut self, manifest: &str, wasm: &'static [u8], name: &str) -> Result<(), PluginError> {
        let manifest = Manifest::parse(manifest, &format!("embedded plugin {name}")).map_err(PluginError::Manifest)?;
        self.entries.push(PluginEntry {
            manifest,
            source: WasmSource::Embedded(wasm),
            origin: "embedded".to_owned(),
        });
        Ok(())
    }

    /// Register a plugin from its manifest file; the component sits next to it.
    pub fn add_manifest(&mut self, path: &Path) -> Result<(), PluginError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| PluginError::Manifest(format!("{}: {e}", path.display())))?;
        let manifest = Manifest::parse(&text, &path.display().to_string()).map_err(PluginError::Manifest)?;
        let wasm = manifest.wasm.clone().ok_or_else(|| {
            PluginError::Manifest(format!(
                "{}: `plugin.wasm` must name the component file",
                path.display()
            ))
        })?;
        let wasm_path = path.parent().unwrap_or(Path::new(".")).join(wasm);
        self.entries.push(PluginEntry {
            manifest,
            source: WasmSource::File(wasm_path),
            origin: path.display().to_string(),
        });
        Ok(())
    }

    /// Register every plugin in `dir`: `*.toml` manifests directly inside it
    /// and `*/plugin.toml` one level down.
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), PluginError> {
        let read = |d: &Path| {
            std::fs::read_dir(d).map_err(|e| PluginError::Manifest(format!("plugin directory {}: {e}", d.display())))
        };
        let mut paths: Vec<PathBuf> = read(dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                let manifest = path.join("plugin.toml");
                if manifest.is_file() {
                    self.add_manifest(&manifest)?;
                }
            } else if path.extension().is_some_and(|e| e == "toml") {
                self.add_manifest(&path)?;
            }
        }
        Ok(())
    }

    /// Every registered plugin.
    pub fn entries(&self) -> &[PluginEntry] {
        &self.entries
    }

    /// The highest installed version of `id` matching `req`, loaded.
    pub fn resolve(&self, id: &str, req: &semver::VersionReq) -> Result<Arc<LoadedPlugin>, ResolveError> {
        let candidates: Vec<&PluginEntry> = self.entries.iter().filter(|e| e.manifest.id == id).collect();
        if candidates.is_empty() {
            let mut installed: Vec<String> = self.entries.iter().map(|e| e.manifest.id.clone()).collect();
            installed.sort();
            installed.dedup();
            return Err(ResolveError::Unknown {
                id: id.to_owned(),
                installed,
            });
        }
        let best = candidates
            .iter()
            .filter(|e| req.matches(&e.manifest.version))
            .max_by(|a, b| a.manifest.version.cmp(&b.manifest.version))
            .ok_or_else(|| ResolveError::NoMatchingVersion {
                id: id.to_owned(),
                req: req.clone(),
                available: candidates.iter().map(|e| e.manifest.version.to_string()).collect(),
            })?;
        Ok(self.load(best)?)
    }

    /// Load (once) and return the plugin of `entry`.
    pub fn load(&self, entry: &PluginEntry) -> Result<Arc<LoadedPlugin>, Arc<PluginError>> {
        let key = (entry.manifest.id.clone(), entry.manifest.version.clone());
        // Loading compiles; hold the lock so two stages never compile the same
        // plugin at once.
        let mut loaded = self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = loaded.get(&key) {
            return found.clone();
        }
        let result = (|| {
            let owned;
            let bytes: &[u8] = match &entry.source {
                WasmSource::Embedded(b) => b,
                WasmSource::File(path) => {
                    owned = std::fs::read(path).map_err(|source| PluginError::ReadWasm {
                        plugin: entry.manifest.label(),
                        path: path.clone(),
                        source,
                    })?;
                    &owned
                }
            };
            self.host
                .load(entry.manifest.clone(), bytes, &entry.origin)
                .map(Arc::new)
        })()
        .map_err(Arc::new);
        loaded.insert(key, result.clone());
        result
    }
}

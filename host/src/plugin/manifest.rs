//! `plugin.toml`: what a plugin is, what it may touch and its default limits,
//! readable without compiling the component.
//!
//! ```toml
//! [plugin]
//! id = "acme/name-hint"     # namespace/name, as pipelines write it in `uses`
//! version = "0.1.0"
//! api = "0.1"               # doppel:plugin contract version
//! kind = "detector"         # detector | metric | rule
//! wasm = "name_hint.wasm"   # next to this file
//! summary = "Flags columns named like e-mail addresses."
//!
//! [capabilities]            # all off by default; the operator must also grant them
//! env = []                  # environment variables it may read
//! clock = false             # wall and monotonic clocks
//! files = []                # guest paths it wants mounted read-only
//!
//! [limits]                  # defaults; a pipeline may set others per stage
//! memory_mb = 256
//! timeout_ms = 30000
//! ```

use serde::Deserialize;

/// The stage kind a plugin implements (its world).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// `doppel:plugin/detector-plugin`.
    Detector,
    /// `doppel:plugin/metric-plugin`.
    Metric,
    /// `doppel:plugin/rule-plugin`.
    Rule,
}

impl PluginKind {
    /// The WIT interface the component exports.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Detector => "detector",
            PluginKind::Metric => "metric",
            PluginKind::Rule => "rule",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.interface())
    }
}

/// What a plugin asks to reach beyond its own memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Environment variables it may read.
    #[serde(default)]
    pub env: Vec<String>,
    /// Wall-clock and monotonic-clock access.
    #[serde(default)]
    pub clock: bool,
    /// Guest paths it wants mounted read-only (the operator maps them).
    #[serde(default)]
    pub files: Vec<String>,
    /// Network access. No host grants it in contract 0.1; a plugin that asks
    /// is refused at load.
    #[serde(default)]
    pub network: bool,
}

/// Default per-stage limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    /// Linear memory, MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Wall time of one call, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Fuel per call (none: unmetered).
    #[serde(default)]
    pub fuel: Option<u64>,
}

fn default_memory_mb() -> u64 {
    256
}
fn default_timeout_ms() -> u64 {
    30_000
}

impl Default for ManifestLimits {
    fn default() -> Self {
        ManifestLimits {
            memory_mb: default_memory_mb(),
            timeout_ms: default_timeout_ms(),
            fuel: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSection {
    id: String,
    version: semver::Version,
    api: String,
    kind: PluginKind,
    #[serde(default)]
    wasm: Option<String>,
    #[serde(default)]
    summary: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    plugin: PluginSection,
    #[serde(default)]
    capabilities: Capabilities,
    #[serde(default)]
    limits: ManifestLimits,
}

/// A parsed `plugin.toml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Manifest {
    /// `namespace/name`.
    pub id: String,
    /// The plugin's version.
    pub version: semver::Version,
    /// Contract version, `major.minor`.
    pub api: semver::Version,
    /// Stage kind.
    pub kind: PluginKind,
    /// Component file, relative to the manifest (file plugins).
    pub wasm: Option<String>,
    /// One-line description.
    pub summary: String,
    /// Requested capabilities.
    pub capabilities: Capabilities,
    /// Default limits.
    pub limits: ManifestLimits,
}

impl Manifest {
    /// Parse manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, String> {
        let file: ManifestFile = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let p = file.plugin;
        let valid_part = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        match p.id.split_once('/') {
            Some((ns, name)) if valid_part(ns) && valid_part(name) => {}
            _ => {
                return Err(format!(
                    "{origin}: plugin id `{}` must be `namespace/name` in lowercase letters, digits, `-` and `_`",
                    p.id
                ));
            }
        }
        let api = semver::Version::parse(&format!("{}.0", p.api))
            .or_else(|_| semver::Version::parse(&p.api))
            .map_err(|_| format!("{origin}: `api` must look like \"0.1\", found `{}`", p.api))?;
        Ok(Manifest {
            id: p.id,
            version: p.version,
            api,
            kind: p.kind,
            wasm: p.wasm,
            summary: p.summary,
            capabilities: file.capabilities,
            limits: file.limits,
        })
    }

    /// `id@version`, as errors name a plugin.
    pub fn label(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = Manifest::parse(
            "[plugin]\nid = \"acme/x\"\nversion = \"1.2.3\"\napi = \"0.1\"\nkind = \"metric\"\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(m.label(), "acme/x@1.2.3");
        assert_eq!(m.api, semver::Version::new(0, 1, 0));
        assert_eq!(m.limits, ManifestLimits::default());
        assert_eq!(m.capabilities, Capabilities::default());
    }

    #[test]
    fn bad_manifests_say_why_and_where() {
        let e = Manifest::parse(
            "[plugin]\nid = \"x\"\nversion = \"1.0.0\"\napi = \"0.1\"\nkind = \"detector\"\n",
            "m.toml",
        )
        .unwrap_err();
        assert!(e.contains("namespace/name"), "{e}");
        let e = Manifest::parse(
            "[plugin]\nid = \"a/b\"\nversion = \"1.0.0\"\napi = \"0.1\"\nkind = \"detector\"\n[capabilities]\nsockets = true\n",
            "m.toml",
        )
        .unwrap_err();
        assert!(
            e.contains("m.toml") && e.contains("sockets") && e.contains("line 7"),
            "{e}"
        );
    }
}

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
//!
//! [[config]]                # the `with` schema; `doppel plugin build` writes it
//! name = "prefix"           # from the component's describe(), and the host
//! type = "string"           # refuses a component that disagrees with it
//! description = "Start of every member number."
//! default = "ACM-"
//! ```

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct PluginSection {
    id: String,
    version: semver::Version,
    api: String,
    kind: PluginKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wasm: Option<String>,
    #[serde(default)]
    summary: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    plugin: PluginSection,
    #[serde(default)]
    capabilities: Capabilities,
    #[serde(default)]
    limits: ManifestLimits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<Vec<ConfigEntry>>,
}

/// Type of a config value, as a manifest spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// A number.
    Float,
    /// `true` / `false`.
    Boolean,
    /// A list of texts.
    Strings,
}

/// One `[[config]]` entry: a `with` key the plugin accepts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigEntry {
    /// The key.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ConfigType,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Whether a stage must set it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Value when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<toml::Value>,
    /// The only values accepted (strings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// Smallest number accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// Largest number accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
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
    /// The `with` schema, when the manifest states it (built plugins do).
    pub config: Option<Vec<ConfigEntry>>,
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
            config: file.config,
        })
    }

    /// The manifest as `plugin.toml` text.
    pub fn to_toml(&self) -> String {
        let file = ManifestFile {
            plugin: PluginSection {
                id: self.id.clone(),
                version: self.version.clone(),
                api: format!("{}.{}", self.api.major, self.api.minor),
                kind: self.kind,
                wasm: self.wasm.clone(),
                summary: self.summary.clone(),
            },
            capabilities: self.capabilities.clone(),
            limits: self.limits,
            config: self.config.clone(),
        };
        // Every field serialises to TOML (no maps with non-string keys, no
        // values after tables), so this cannot fail.
        toml::to_string(&file).unwrap_or_default()
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

    #[test]
    fn manifests_round_trip_through_toml() {
        let text = "[plugin]\nid = \"acme/x\"\nversion = \"1.2.3\"\napi = \"0.1\"\nkind = \"detector\"\nwasm = \"x.wasm\"\n\
                    [capabilities]\nclock = true\n[limits]\nmemory_mb = 64\n\
                    [[config]]\nname = \"prefix\"\ntype = \"string\"\ndefault = \"ACM-\"\n\
                    [[config]]\nname = \"share\"\ntype = \"float\"\nminimum = 0.0\nmaximum = 1.0\nrequired = true\n";
        let m = Manifest::parse(text, "x.toml").unwrap();
        let config = m.config.as_ref().unwrap();
        assert_eq!(config[0].default, Some(toml::Value::String("ACM-".into())));
        assert_eq!(config[1].ty, ConfigType::Float);
        assert!(config[1].required);
        let again = Manifest::parse(&m.to_toml(), "again.toml").unwrap();
        assert_eq!(again, m);
    }
}

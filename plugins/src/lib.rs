//! doppel's first-party plugins, compiled to WASM components by `build.rs` and
//! embedded in the binary so a fresh build needs no install step.
//!
//! Every folder here with a `Cargo.toml` and a `plugin.toml` is a plugin crate
//! built for `wasm32-wasip2` against `doppel-sdk`:
//!
//! | folder     | id               | kind     |
//! |------------|------------------|----------|
//! | `pii/`     | `doppel/pii`     | detector |
//! | `quality/` | `doppel/quality` | metric   |
//!
//! # Example
//! ```
//! for plugin in doppel_plugins::FIRST_PARTY {
//!     assert!(plugin.manifest.contains("[plugin]"));
//!     assert!(plugin.wasm.starts_with(b"\0asm"));
//! }
//! ```

/// A plugin compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedPlugin {
    /// Folder name.
    pub name: &'static str,
    /// `plugin.toml` text.
    pub manifest: &'static str,
    /// The component.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

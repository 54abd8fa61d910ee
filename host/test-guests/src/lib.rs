//! Test-only WASM guests for the host's sandbox tests, compiled by `build.rs`.
//!
//! | guest         | what it does                                                        |
//! |---------------|---------------------------------------------------------------------|
//! | `hostile`     | per `with.mode`: spin forever, allocate without bound, panic, return |
//! |               | millions of findings, flood stdout, read the environment             |
//! | `hostile-fs`  | reads a file (imports `wasi:filesystem`)                             |
//! | `hostile-net` | opens a socket (imports `wasi:sockets`)                              |
//! | `facts-rule`  | a well-behaved rule plugin over pipeline facts                       |
//!
//! Not a stable API: only the host's tests use it.
//!
//! # Example
//! ```
//! assert!(doppel_test_guests::GUESTS.iter().any(|g| g.name == "hostile"));
//! ```

/// A guest compiled for the tests.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedPlugin {
    /// Folder name.
    pub name: &'static str,
    /// `plugin.toml` text.
    pub manifest: &'static str,
    /// The component.
    pub wasm: &'static [u8],
}

/// Look a guest up by folder name.
pub fn guest(name: &str) -> &'static EmbeddedPlugin {
    GUESTS
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no test guest `{name}`"))
}

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

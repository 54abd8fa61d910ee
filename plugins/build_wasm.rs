//! Compile plugin crates to WASM components from a build script, and generate
//! the Rust that embeds them. Shared by `plugins/build.rs` (first-party
//! plugins) and `host/test-guests/build.rs` (test-only guests), as wasmtime's
//! `test-programs/artifacts` does for its guests.
//!
//! Each crate directory under `root` holding a `Cargo.toml` and a `plugin.toml`
//! is built with a nested `cargo build --target wasm32-wasip2`, one crate per
//! invocation, into a target directory of its own (so the outer build's lock is
//! never contended).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A built plugin.
pub(crate) struct Built {
    /// Folder name, e.g. `pii`.
    pub(crate) name: String,
    /// Path of the `.wasm` component.
    pub(crate) wasm: PathBuf,
    /// Path of its `plugin.toml`.
    pub(crate) manifest: PathBuf,
}

fn package_name(cargo_toml: &Path) -> String {
    let text = std::fs::read_to_string(cargo_toml).expect("read Cargo.toml");
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("name")?.trim_start().strip_prefix('=')?;
            Some(rest.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| panic!("no package name in {}", cargo_toml.display()))
}

/// `<target dir>/wasm-plugins`, found from `OUT_DIR`
/// (`<target>/<profile>/build/<pkg>-<hash>/out`).
fn wasm_target_dir() -> PathBuf {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let target = out.ancestors().nth(4).expect("OUT_DIR is inside a target directory");
    target.join("wasm-plugins")
}

/// Make sure the toolchain building us can compile for `wasm32-wasip2`.
///
/// rustup installs a `rust-toolchain.toml`'s `targets` only when it installs
/// the toolchain itself, so a machine that already had Rust 1.95 lacks the
/// target and the nested build would fail with "can't find crate for `core`".
/// Add it through rustup (once; a lock keeps the two build scripts that build
/// guests from installing it at the same time) and say so in the build output.
fn ensure_wasm_target(target_dir: &Path) {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let installed = || {
        Command::new(&rustc)
            .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            // rustc prints the directory whether or not the target is installed.
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .is_some_and(|dir| has_core(&dir))
    };
    if installed() {
        return;
    }
    std::fs::create_dir_all(target_dir).expect("create the WASM target directory");
    let lock = std::fs::File::create(target_dir.join(".rustup-target.lock")).expect("create lock file");
    lock.lock().expect("lock the target install");
    if installed() {
        return;
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", "wasm32-wasip2"]);
    // Inside a rustup proxy this names the toolchain cargo runs on (the one
    // rust-toolchain.toml pins), so the target goes to that toolchain.
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &toolchain]);
    }
    println!(
        "cargo:warning=the wasm32-wasip2 target was missing from this toolchain; installing it \
         with `rustup target add wasm32-wasip2` (once per machine) to build the WASM plugins"
    );
    match cmd.status() {
        Ok(status) if status.success() && installed() => {}
        Ok(_) | Err(_) => panic!(
            "the `wasm32-wasip2` target is missing and `rustup target add wasm32-wasip2` did not \
             install it; the WASM plugins cannot be built without it. Install it with rustup (or \
             your distribution's rust-std for wasm32-wasip2) and build again."
        ),
    }
}

/// Whether a target library directory holds the `core` crate.
fn has_core(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false)
}

/// Build every plugin crate directly under `root`.
pub(crate) fn build_all(root: &Path, workspace: &Path) -> Vec<Built> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("read plugin directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file() && p.join("plugin.toml").is_file())
        .collect();
    dirs.sort();
    for watched in [
        workspace.join("wit"),
        workspace.join("sdk"),
        workspace.join("vocab"),
        workspace.join("Cargo.lock"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    let target_dir = wasm_target_dir();
    ensure_wasm_target(&target_dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut built = Vec::new();
    for dir in dirs {
        println!("cargo:rerun-if-changed={}", dir.display());
        let package = package_name(&dir.join("Cargo.toml"));
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(workspace)
            .args([
                "build",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "wasm-plugin",
                "--package",
                &package,
            ])
            .arg("--target-dir")
            .arg(&target_dir);
        // The outer build's flags target the host machine (and clippy's
        // wrapper would lint instead of build); the guest build wants none.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET_DIR",
            "RUSTC_WORKSPACE_WRAPPER",
            "CLIPPY_ARGS",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().expect("run cargo");
        if !status.success() {
            panic!(
                "building the WASM plugin `{package}` failed (see above). If the error says the \
                 `wasm32-wasip2` target is missing, run `rustup target add wasm32-wasip2` (a fresh \
                 clone gets it from rust-toolchain.toml)."
            );
        }
        let wasm = target_dir
            .join("wasm32-wasip2")
            .join("wasm-plugin")
            .join(format!("{}.wasm", package.replace('-', "_")));
        assert!(
            wasm.is_file(),
            "cargo built {package} but {} is missing",
            wasm.display()
        );
        built.push(Built {
            name: dir.file_name().expect("dir name").to_string_lossy().into_owned(),
            wasm,
            manifest: dir.join("plugin.toml"),
        });
    }
    built
}

/// Rust source of a `&[EmbeddedPlugin]` static holding every built plugin.
pub(crate) fn embed(name: &str, built: &[Built]) -> String {
    let mut src = format!("/// Generated by build.rs.\npub static {name}: &[EmbeddedPlugin] = &[\n");
    for b in built {
        writeln!(
            src,
            "    EmbeddedPlugin {{ name: {:?}, manifest: include_str!({:?}), wasm: include_bytes!({:?}) }},",
            b.name,
            b.manifest.display().to_string(),
            b.wasm.display().to_string(),
        )
        .expect("write to string");
    }
    src.push_str("];\n");
    src
}

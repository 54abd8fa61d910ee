//! Embeds the SDK sources (and the vocabulary crate the SDK re-exports), the
//! WIT contract and the workspace lockfile, which
//! `doppel plugin new` writes into every new plugin project so it builds
//! without a doppel checkout, against the exact versions doppel is tested with.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    link_libtorch();
    let cli = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&cli).parent().expect("cli/ is in the workspace");
    let sdk_src = root.join("sdk/src");
    let mut names: Vec<String> = std::fs::read_dir(&sdk_src)
        .expect("read sdk/src")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".rs"))
        .collect();
    names.sort();
    let mut code =
        String::from("/// `sdk/src/*.rs`, by file name.\npub(crate) const SDK_SOURCES: &[(&str, &str)] = &[\n");
    for n in &names {
        let path = sdk_src.join(n);
        let _ = writeln!(code, "    ({n:?}, include_str!({:?})),", path.display().to_string());
    }
    code.push_str("];\n");
    for (name, file) in [
        ("WIT", "wit/plugin.wit"),
        ("LOCKFILE", "Cargo.lock"),
        ("TOOLCHAIN", "rust-toolchain.toml"),
        ("VOCAB_LIB", "vocab/src/lib.rs"),
    ] {
        let path = root.join(file);
        let _ = writeln!(
            code,
            "/// `{file}`.\npub(crate) const {name}: &str = include_str!({:?});",
            path.display().to_string()
        );
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed={}", sdk_src.display());
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out).join("scaffold_files.rs"), code).expect("write scaffold_files.rs");
}

/// With the `torch` feature: an rpath to PyTorch's `torch/lib`, and
/// `libtorch_cuda.so` kept linked although no symbol is used from it directly
/// (the linker's `--as-needed` would drop it and CUDA would never load).
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
}

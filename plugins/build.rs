//! Builds the first-party plugins in this folder to WASM components and embeds
//! them (see `build_wasm.rs`).

#[path = "build_wasm.rs"]
mod build_wasm;

fn main() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let workspace = root.parent().expect("plugins/ sits in the workspace").to_path_buf();
    let built = build_wasm::build_all(&root, &workspace);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("plugins.rs");
    std::fs::write(out, build_wasm::embed("FIRST_PARTY", &built)).expect("write plugins.rs");
}

//! Builds the test-only guests in this folder to WASM components (see
//! `plugins/build_wasm.rs`).

#[path = "../../plugins/build_wasm.rs"]
mod build_wasm;

fn main() {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let workspace = root
        .ancestors()
        .nth(2)
        .expect("host/test-guests sits two levels down")
        .to_path_buf();
    let built = build_wasm::build_all(&root, &workspace);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("guests.rs");
    std::fs::write(out, build_wasm::embed("GUESTS", &built)).expect("write guests.rs");
}

//! With the `torch` feature, give this crate's tests, examples and benches an
//! rpath to the libtorch they link (PyTorch's `torch/lib`), and keep
//! `libtorch_cuda.so` linked even though no symbol is used from it directly:
//! the linker's `--as-needed` would drop it and CUDA would never load.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::path::Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
}

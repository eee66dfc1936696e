//! Sets `cfg(wasm_split)` when the WASM is built to be split into lazily loaded parts
//! (`cargo leptos build --split` links it with `--emit-relocs`). Only then may a route's
//! view call a split function: in a WASM that is not split, such a call imports a
//! placeholder module that does not exist, and the page never hydrates (src/app.rs).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(wasm_split)");
    // No rerun-if-env-changed: cargo builds anew when the flags change (they are part
    // of the build's identity), so the cfg follows --split without it.
    println!("cargo::rerun-if-changed=build.rs");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.split('\x1f').any(|flag| flag.contains("--emit-relocs")) {
        println!("cargo::rustc-cfg=wasm_split");
    }
}

//! Lays out the `sluice` binary's functions in the order of
//! `link/sluice.order` (written by `scripts/orderfile`): the ones the request
//! path runs first, then the start-up ones, so that the code a running
//! gateway keeps resident sits together instead of scattered over ~20 MiB of
//! text (docs/performance.md, "Function order").
//!
//! Only for release builds on x86_64 Linux, where rustc links with lld (its
//! default there since 1.90); lld ignores names the build no longer has
//! (`--no-warn-symbol-ordering`), so a stale file costs layout, never a
//! failed link. `SLUICE_NO_ORDER=1` turns it off.

fn main() {
    println!("cargo:rerun-if-changed=link/sluice.order");
    println!("cargo:rerun-if-env-changed=SLUICE_NO_ORDER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" || profile != "release" || std::env::var_os("SLUICE_NO_ORDER").is_some() {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else { return };
    let order = std::path::Path::new(&dir).join("link").join("sluice.order");
    if !order.exists() {
        return;
    }
    println!("cargo:rustc-link-arg-bin=sluice=-Wl,--symbol-ordering-file={}", order.display());
    println!("cargo:rustc-link-arg-bin=sluice=-Wl,--no-warn-symbol-ordering");
}

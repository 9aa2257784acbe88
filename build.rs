//! Link settings of the release `sluice` binary on x86_64 Linux, where rustc
//! links with lld (its default there since 1.90). Both only change how the
//! binary is laid out and loaded, not what it runs (docs/performance.md).
//!
//! - **Function order.** The functions are laid out in the order of
//!   `link/sluice.order` (written by `scripts/orderfile`): the ones the
//!   request path runs first, then those other traffic runs, then the
//!   start-up ones, so that the code a running gateway keeps resident sits
//!   together instead of scattered over ~20 MiB of text ("Function
//!   order"; the gateway lets all of it go once it serves and maps back
//!   what runs, src/server/code_pages.rs). lld ignores names the build no
//!   longer has (`--no-warn-symbol-ordering`), so a stale file costs
//!   layout, never a failed link. `SLUICE_NO_ORDER=1` turns it off.
//! - **Packed relocations.** The binary is position-independent, so the
//!   loader rewrites every pointer in its read-only data at start, reading a
//!   table of 24 bytes per pointer (540 KiB, all of it resident for the
//!   process's life). `-z pack-relative-relocs` stores the same relocations
//!   as a bitmap (DT_RELR) of a few KiB ("Packed relocations"). It needs
//!   glibc 2.36 or later where the binary runs (Debian 12, the image's
//!   base); `SLUICE_NO_RELR=1` builds without it for an older one.

fn main() {
    println!("cargo:rerun-if-changed=link/sluice.order");
    println!("cargo:rerun-if-env-changed=SLUICE_NO_ORDER");
    println!("cargo:rerun-if-env-changed=SLUICE_NO_RELR");
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" || profile != "release" {
        return;
    }
    if std::env::var_os("SLUICE_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bin=sluice=-Wl,-z,pack-relative-relocs");
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else { return };
    let order = std::path::Path::new(&dir).join("link").join("sluice.order");
    if std::env::var_os("SLUICE_NO_ORDER").is_some() || !order.exists() {
        return;
    }
    println!("cargo:rustc-link-arg-bin=sluice=-Wl,--symbol-ordering-file={}", order.display());
    println!("cargo:rustc-link-arg-bin=sluice=-Wl,--no-warn-symbol-ordering");
}

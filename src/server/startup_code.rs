//! Start-up code let go once the gateway serves, as the Linux kernel frees
//! its `__init` sections after boot.
//!
//! The release binary's functions are laid out in the order of
//! `link/sluice.order` (build.rs): those the request path runs, then those
//! other traffic runs (probes, scrapes, handed-over connections), then those
//! that ran only while the gateway started (config parsing and checks,
//! building providers, actors and workers): ~1.3 MiB of code, resident for
//! the process's life although it does not run again. `scripts/orderfile`
//! puts [`sluice_startup_code_begin`] and [`sluice_startup_code_end`] around
//! that last group, and once every worker serves (and [`SETTLE`] later),
//! [`release`] tells the kernel the pages between them are not needed
//! (`MADV_DONTNEED`): they leave the process's resident set, and stay in
//! the page cache as the binary's clean file pages, first in line when
//! memory is reclaimed. Code among them that runs again (a config reload
//! parses and checks a file again) is mapped back from the page cache on
//! its first call, as after any reclaim: the same bytes, a minor fault per
//! page.
//! docs/performance.md ("Start-up code let go") has the numbers.

/// First of the start-up-only functions in the release binary's layout.
/// Never called: only its address is read. Distinct bodies, so no linker
/// pass folds the two markers into one. Unmangled (the `unsafe_code` lint
/// counts that) so that the order file can name it; the name is the
/// project's own and clashes with nothing.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sluice_startup_code_begin() -> u32 {
    0x5354_4152
}

/// Just past the start-up-only functions (see [`sluice_startup_code_begin`]).
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sluice_startup_code_end() -> u32 {
    0x454e_4421
}

/// The whole pages strictly between the two markers, as (start, length):
/// `None` when they are not laid out as the order file puts them (begin
/// first, at least one page apart, within a plausible text size), as in a
/// build without the order file, where codegen leaves the two side by side.
fn span(begin: usize, end: usize, page: usize) -> Option<(usize, usize)> {
    /// More than the binary's whole text: anything larger is not the layout.
    const MAX: usize = 64 << 20;
    if page == 0 || !page.is_power_of_two() || end <= begin || end - begin > MAX {
        return None;
    }
    let start = begin.checked_add(page - 1)? & !(page - 1);
    let stop = end & !(page - 1);
    // Markers within a page of each other round to stop < start.
    stop.checked_sub(start).filter(|&len| len > 0).map(|len| (start, len))
}

/// How long after the last worker is up [`release`] waits: start-up goes on
/// for a moment after that (actix-server's accept loop, the main thread's
/// last steps, the first ticks of timers), and code it runs from a page
/// already let go maps that page's 64 KiB neighbourhood back (the kernel's
/// fault-around). Released the moment the last worker was up, the text was
/// back to its full size by the first `/ready`.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// [`release`], [`SETTLE`] from now, on the calling thread's runtime.
pub fn release_soon() {
    actix_rt::spawn(async {
        actix_rt::time::sleep(SETTLE).await;
        release();
    });
}

/// Drop the start-up-only functions' pages from the resident set. Nothing
/// is done when the layout is not there, and a failed call changes nothing
/// but the memory kept.
#[cfg(target_os = "linux")]
fn release() {
    let begin = sluice_startup_code_begin as *const () as usize;
    let end = sluice_startup_code_end as *const () as usize;
    let page = rustix::param::page_size();
    let Some((start, len)) = span(begin, end, page) else {
        tracing::debug!("start-up code not laid out apart (no order file): kept");
        return;
    };
    // Logged before, not after: the log's formatting code ran only at
    // start-up too, so it lies among the pages let go, and logging after
    // the call mapped ~0.3 MiB of them back (text 2,524 kB after, against
    // 2,192 kB when logged before).
    tracing::info!(kib = len / 1024, "letting start-up code go from the resident set");
    // SAFETY: the range lies strictly between two functions of the
    // binary's text, so it is only text: a private, read-only mapping of
    // the executable that nothing writes (the binary has no text
    // relocations). MADV_DONTNEED on it discards the page table entries
    // only; the next execution of any of it faults the same bytes back in
    // from the file. No Rust value lives there, so nothing observes a
    // change.
    #[allow(unsafe_code)]
    let done = unsafe { rustix::mm::madvise(start as *mut std::ffi::c_void, len, rustix::mm::Advice::LinuxDontNeed) };
    if let Err(e) = done {
        tracing::warn!(error = %e, "cannot let start-up code go; it stays resident");
    }
}

#[cfg(not(target_os = "linux"))]
fn release() {}

#[cfg(test)]
mod tests {
    use super::span;

    #[test]
    fn only_whole_pages_strictly_between_the_markers() {
        // 0x1010..0x5008: pages 0x2000..0x5000.
        assert_eq!(span(0x1010, 0x5008, 0x1000), Some((0x2000, 0x3000)));
        // Already aligned: the begin marker's own page is kept out only if
        // the marker is not on its first byte.
        assert_eq!(span(0x2000, 0x4000, 0x1000), Some((0x2000, 0x2000)));
    }

    #[test]
    fn markers_side_by_side_or_reversed_release_nothing() {
        // Without the order file codegen puts the two next to each other.
        assert_eq!(span(0x1010, 0x1020, 0x1000), None);
        assert_eq!(span(0x1ff0, 0x2010, 0x1000), None);
        assert_eq!(span(0x5000, 0x1000, 0x1000), None);
        assert_eq!(span(0x1000, 0x1000, 0x1000), None);
        // Farther apart than any text: not the layout.
        assert_eq!(span(0x1000, 0x1000 + (65 << 20), 0x1000), None);
        assert_eq!(span(0x1000, 0x9000, 0), None);
        assert_eq!(span(usize::MAX - 10, usize::MAX, 0x1000), None);
    }
}

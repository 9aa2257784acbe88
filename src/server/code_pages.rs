//! The binary's code and read-only data let go from the resident set once
//! the gateway serves; what runs again maps back.
//!
//! The binary is ~26 MiB of text and read-only data (the mock, the clouds'
//! signing, the CLI, Redis and TLS are all in it). Start-up runs code and
//! reads constants scattered over it, and the kernel maps a 64 KiB window
//! around each page that faults (fault-around), so after start-up ~4.5 MiB
//! of it is resident, of which a c=256 load touches about a quarter
//! (docs/performance.md, "The binary's read-only pages let go once the
//! gateway serves"). Once every worker serves (and [`SETTLE`] later),
//! [`release`] tells the kernel that none of the binary's read-only load
//! segments (its text, its read-only data, its unwind tables) is needed
//! (`MADV_DONTNEED`): their pages leave the process's resident set and
//! stay in the page cache as the binary's clean file pages, first in line
//! when memory is reclaimed. What the gateway runs or reads afterwards is
//! mapped back from the page cache on first use, a minor fault per 64 KiB
//! window: the request path's code, which `link/sluice.order` lays out
//! together, within the first requests; a probe's or a config reload's
//! code when one comes.
//!
//! The writable segments, among them the data the loader relocated at
//! start (made read-only afterwards, but anonymous memory by then), are
//! not touched: their contents exist nowhere else.
//!
//! A debugger's breakpoint or a uprobe set in the gateway before the
//! release is lost with its page (both write a private copy of the page).

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

/// Drop the binary's read-only segments from the resident set. Nothing is
/// done when they cannot be found, and a failed call changes nothing but
/// the memory kept.
#[cfg(target_os = "linux")]
fn release() {
    let page = rustix::param::page_size();
    let spans: Vec<(usize, usize)> =
        read_only_segments().into_iter().filter_map(|(start, len)| whole_pages(start, len, page)).collect();
    if spans.is_empty() {
        tracing::debug!("the binary's read-only segments not found: kept resident");
        return;
    }
    // Logged before, not after: the log's formatting code ran only at
    // start-up, so logging after the call would map it straight back.
    let kib: usize = spans.iter().map(|&(_, len)| len / 1024).sum();
    tracing::info!(kib, "letting the binary's code and read-only data go from the resident set");
    for (start, len) in spans {
        // SAFETY: a load segment without write permission is a private,
        // read-only mapping of the executable that nothing writes (the
        // binary has no text relocations, which `read_only_segments`
        // checks: what the loader relocates lies in a writable segment,
        // which it leaves out).
        // MADV_DONTNEED on it discards page table entries only; the next
        // read of any of it faults the same bytes back in from the file.
        // No Rust value lives there that could observe a change.
        #[allow(unsafe_code)]
        let done =
            unsafe { rustix::mm::madvise(start as *mut std::ffi::c_void, len, rustix::mm::Advice::LinuxDontNeed) };
        if let Err(e) = done {
            tracing::warn!(error = %e, "cannot let the binary's read-only pages go; they stay resident");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn release() {}

/// The main program's load segments without write permission, as (address,
/// length in memory).
#[cfg(target_os = "linux")]
fn read_only_segments() -> Vec<(usize, usize)> {
    /// Called by `dl_iterate_phdr` for each loaded object, the main program
    /// first; returns non-zero to stop after it.
    #[allow(unsafe_code)]
    unsafe extern "C" fn main_program(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        out: *mut std::ffi::c_void,
    ) -> libc::c_int {
        // SAFETY: the C library passes a valid `dl_phdr_info` for the call,
        // whose `dlpi_phdr` points to `dlpi_phnum` program headers; `out`
        // is the `Vec` that `read_only_segments` passed, alive and not
        // otherwise borrowed during the call.
        let (info, out) = unsafe { (&*info, &mut *out.cast::<Vec<(usize, usize)>>()) };
        if info.dlpi_phdr.is_null() {
            return 1;
        }
        // SAFETY: as above.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let Ok(bias) = usize::try_from(info.dlpi_addr) else { return 1 };
        let at = |vaddr| usize::try_from(vaddr).ok().and_then(|v| bias.checked_add(v));
        // Text relocations would have the loader write into a read-only
        // segment: its pages would then hold what exists nowhere else.
        // No toolchain that builds this binary makes them, but it is
        // checked, not assumed.
        for h in headers.iter().filter(|h| h.p_type == libc::PT_DYNAMIC) {
            // SAFETY: the dynamic section is mapped for the process's life,
            // an array of entries up to the first `DT_NULL`.
            if at(h.p_vaddr).is_some_and(|start| unsafe { text_relocations(start as *const Dyn) }) {
                return 1;
            }
        }
        for h in headers.iter().filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0) {
            if let (Some(start), Ok(len)) = (at(h.p_vaddr), usize::try_from(h.p_memsz)) {
                out.push((start, len));
            }
        }
        1
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    // SAFETY: `main_program` only reads what the C library hands it and
    // pushes onto `out`, which outlives the call.
    #[allow(unsafe_code)]
    unsafe {
        libc::dl_iterate_phdr(Some(main_program), (&raw mut out).cast());
    }
    out
}

/// An entry of the dynamic section (`Elf32_Dyn` / `Elf64_Dyn`).
#[cfg(target_os = "linux")]
#[repr(C)]
struct Dyn {
    tag: isize,
    val: usize,
}

/// Whether the dynamic section at `entry` asks for text relocations.
///
/// # Safety
/// `entry` points to a mapped dynamic section.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe fn text_relocations(mut entry: *const Dyn) -> bool {
    const DT_NULL: isize = 0;
    const DT_TEXTREL: isize = 22;
    const DT_FLAGS: isize = 30;
    const DF_TEXTREL: usize = 0x4;
    loop {
        // SAFETY: within the section, which ends with `DT_NULL`.
        let e = unsafe { &*entry };
        match e.tag {
            DT_NULL => return false,
            DT_TEXTREL => return true,
            DT_FLAGS if e.val & DF_TEXTREL != 0 => return true,
            _ => {}
        }
        // SAFETY: not past `DT_NULL`, so the next entry is in the section.
        entry = unsafe { entry.add(1) };
    }
}

/// The whole pages within `len` bytes from `start`, as (start, length);
/// `None` when there is no whole page.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn whole_pages(start: usize, len: usize, page: usize) -> Option<(usize, usize)> {
    if page == 0 || !page.is_power_of_two() {
        return None;
    }
    let first = start.checked_add(page - 1)? & !(page - 1);
    let stop = start.checked_add(len)? & !(page - 1);
    stop.checked_sub(first).filter(|&l| l > 0).map(|l| (first, l))
}

#[cfg(test)]
mod tests {
    use super::whole_pages;

    #[test]
    fn only_whole_pages_inside_the_segment() {
        // 0x1010..0x5018: pages 0x2000..0x5000.
        assert_eq!(whole_pages(0x1010, 0x4008, 0x1000), Some((0x2000, 0x3000)));
        // Aligned at both ends: all of it.
        assert_eq!(whole_pages(0x2000, 0x2000, 0x1000), Some((0x2000, 0x2000)));
    }

    #[test]
    fn less_than_a_whole_page_or_nonsense_is_nothing() {
        assert_eq!(whole_pages(0x1010, 0x20, 0x1000), None);
        assert_eq!(whole_pages(0x1ff0, 0x20, 0x1000), None);
        assert_eq!(whole_pages(0x1000, 0, 0x1000), None);
        assert_eq!(whole_pages(0x1000, 0x8000, 0), None);
        assert_eq!(whole_pages(0x1000, 0x8000, 0x1800), None);
        assert_eq!(whole_pages(usize::MAX - 10, 0x2000, 0x1000), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn text_relocations_are_seen_in_either_form() {
        use super::{Dyn, text_relocations};
        let check = |entries: &[Dyn]| {
            // SAFETY: a dynamic section of our own, ending with DT_NULL.
            #[allow(unsafe_code)]
            unsafe {
                text_relocations(entries.as_ptr())
            }
        };
        let e = |tag, val| Dyn { tag, val };
        // DT_TEXTREL (22); DT_FLAGS (30) with DF_TEXTREL (4).
        assert!(check(&[e(1, 7), e(22, 0), e(0, 0)]));
        assert!(check(&[e(30, 0x4 | 0x8), e(0, 0)]));
        // DT_FLAGS with BIND_NOW (8) only; nothing after DT_NULL is read.
        assert!(!check(&[e(30, 0x8), e(0, 0), e(22, 0)]));
        assert!(!check(&[e(0, 0)]));
    }

    /// The segments found are the binary's code and constants, and none
    /// of its writable data: this function's own code and a string
    /// constant lie in them; a static that is written to does not.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_read_only_segments_hold_code_and_constants_but_no_writable_data() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static WRITTEN: AtomicUsize = AtomicUsize::new(0);
        WRITTEN.fetch_add(1, Ordering::Relaxed);
        let segments = super::read_only_segments();
        assert!(!segments.is_empty());
        let within = |addr: usize| segments.iter().any(|&(start, len)| addr >= start && addr - start < len);
        let code = the_read_only_segments_hold_code_and_constants_but_no_writable_data as *const () as usize;
        let constant: &'static str = "a constant in the binary's read-only data";
        assert!(within(code), "own code at {code:#x} not in {segments:x?}");
        assert!(within(constant.as_ptr() as usize), "a constant not in {segments:x?}");
        assert!(!within((&raw const WRITTEN) as usize), "writable data in {segments:x?}");
    }
}

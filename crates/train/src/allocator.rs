//! Process-wide allocator settings for training and generation on the CPU.

/// Keeps large freed buffers inside the process (glibc only; elsewhere nothing happens).
///
/// A training step allocates and frees the same large buffers (logits and their gradient are
/// `batch·time·vocab` floats, 45 MB in the `lm` benchmark) every step. glibc serves blocks above
/// its mmap threshold (at most 32 MiB) with a fresh `mmap` and returns them with `munmap`, so
/// every step pays for zeroed pages and page faults again: about a fifth of a step's CPU time in
/// our measurements. Serving everything from the heap and trimming it only above 1 GiB of free
/// space makes the second step reuse the first step's memory. Peak memory is unchanged: it is
/// still the largest amount live at once.
///
/// Does nothing when the user set `MALLOC_MMAP_MAX_` or `MALLOC_TRIM_THRESHOLD_`. Binaries call
/// this once at start; libraries never do it on their own.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = ["MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"]
            .iter()
            .any(|k| std::env::var_os(k).is_some());
        if !user_set {
            // SAFETY: mallopt only changes allocator parameters; valid at any time.
            unsafe {
                libc::mallopt(libc::M_MMAP_MAX, 0);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            }
        }
    }
}

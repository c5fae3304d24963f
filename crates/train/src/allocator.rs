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
/// The pool threads need one more setting: glibc gives each thread that allocates its own
/// arena, made of heaps of at most 64 MiB that it shrinks with `madvise`, and with those the
/// `lm` benchmark still took about 5,000 page faults per step (a sixth of its time; more once
/// the optimizer updates in place). With one arena for the whole process the count drops to
/// nothing; with a handful of threads, sharing its lock costs nothing measurable.
///
/// Does nothing when the user set `MALLOC_MMAP_MAX_`, `MALLOC_TRIM_THRESHOLD_` or
/// `MALLOC_ARENA_MAX`. Binaries call this once at start, before starting threads; libraries
/// never do it on their own.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = [
            "MALLOC_MMAP_MAX_",
            "MALLOC_TRIM_THRESHOLD_",
            "MALLOC_ARENA_MAX",
        ]
        .iter()
        .any(|k| std::env::var_os(k).is_some());
        if !user_set {
            // SAFETY: mallopt only changes allocator parameters; valid at any time.
            unsafe {
                libc::mallopt(libc::M_MMAP_MAX, 0);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
    }
}

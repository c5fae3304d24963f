//! A global allocator that refuses any single allocation above a stated limit while a fuzz
//! target runs: such a request means a loader trusted a size read from its input.
//!
//! Refusing cannot be a panic (an allocator must not unwind) and must not be granted either
//! (the program would go on to touch the memory and be killed for it), so the process writes
//! one line naming the size and the file holding the current input, and aborts. The fuzz
//! runner runs each target in a child process and reports such an abort as a failure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The largest single allocation a target may make: 1 GiB.
pub const ALLOCATION_LIMIT: usize = 1 << 30;

static ARMED: AtomicBool = AtomicBool::new(false);
static LIMIT: AtomicUsize = AtomicUsize::new(ALLOCATION_LIMIT);

/// The system allocator with the limit; a binary opts in with
/// `#[global_allocator] static A: LimitedAllocator = LimitedAllocator;`.
pub struct LimitedAllocator;

/// While the returned guard lives, an allocation above `limit` bytes aborts the process.
pub fn arm(limit: usize) -> Armed {
    LIMIT.store(limit, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    Armed(())
}

/// Keeps the limit in force; see [`arm`].
pub struct Armed(());

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.store(false, Ordering::SeqCst);
    }
}

fn check(size: usize) {
    if size > LIMIT.load(Ordering::Relaxed) && ARMED.load(Ordering::Relaxed) {
        refuse(size);
    }
}

#[cold]
fn refuse(size: usize) -> ! {
    // No allocation from here on: the message is built in a fixed buffer.
    let mut line = [0u8; 160];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    put(b"fuzz: an allocation of ");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut value = size;
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    put(&digits[at..]);
    put(b" bytes is past the limit of the fuzz targets; the input is in the case file\n");
    // SAFETY: writing a buffer we own to the standard error descriptor.
    unsafe {
        libc::write(2, line.as_ptr().cast(), len);
    }
    std::process::abort();
}

// SAFETY: every request goes to the system allocator unchanged; `check` only reads atomics
// and aborts, it never unwinds or allocates.
unsafe impl GlobalAlloc for LimitedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: as `alloc`; `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

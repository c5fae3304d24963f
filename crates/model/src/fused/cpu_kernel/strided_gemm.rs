//! The one GEMM wrapper every kernel goes through: strided operands, accumulation, and how many
//! threads a product is worth.

/// A strided matrix operand: base pointer, row stride, column stride (in elements).
#[derive(Clone, Copy)]
pub(super) struct In {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl In {
    pub(super) fn new(ptr: *const f32, rs: isize, cs: isize) -> Self {
        In { ptr, rs, cs }
    }
}

/// A strided output matrix.
#[derive(Clone, Copy)]
pub(super) struct Out {
    ptr: *mut f32,
    rs: isize,
    cs: isize,
}

impl Out {
    pub(super) fn new(ptr: *mut f32, rs: isize, cs: isize) -> Self {
        Out { ptr, rs, cs }
    }
}

/// `dst = lhs · rhs` (`accumulate == false`) or `dst += lhs · rhs`, with `lhs` `[m, k]` and `rhs`
/// `[k, n]`.
///
/// # Safety
/// Every element addressed through the pointers and strides must be in bounds, and `dst` must not
/// overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_acc(
    m: usize,
    n: usize,
    k: usize,
    dst: Out,
    lhs: In,
    rhs: In,
    accumulate: bool,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    // SAFETY: in bounds by the caller's contract.
                    unsafe { *dst.ptr.offset(i as isize * dst.rs + j as isize * dst.cs) = 0.0 };
                }
            }
        }
        return;
    }
    // SAFETY: forwarded from the caller; `gemm` computes dst = 1·dst + 1·lhs·rhs when reading
    // dst, else dst = lhs·rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.cs,
            dst.rs,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            match threads {
                Threads::Auto => parallelism(m, n, k),
                Threads::One => gemm::Parallelism::None,
                Threads::Share(share) => match parallelism(m, n, k) {
                    gemm::Parallelism::Rayon(_) if share > 1 => gemm::Parallelism::Rayon(share),
                    _ => gemm::Parallelism::None,
                },
            },
        );
    }
}

/// Whether a GEMM may use the thread pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Threads {
    /// Multi-threaded when large enough (see [`parallelism`]).
    Auto,
    /// On the calling thread: the caller already runs one task per thread.
    One,
    /// At most this many threads (when large enough): the caller runs other work beside it.
    Share(usize),
}

/// Multi-threaded GEMM pays off from about 2 M multiply-adds (burn-flex uses 192³).
pub(super) fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= 2_000_000 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

//! Float sums that add in one order on every CPU: AVX-512's.
//!
//! A SIMD sum keeps one partial sum per lane and adds the lanes at the
//! end, so its rounding depends on the lanes: burn Flex's `sum` and layer
//! norm added in 16 lanes on a CPU with AVX-512 and in 8 on one with only
//! AVX2, and the two trained different models from the same seed. Here a
//! sum keeps 16 lanes of f32 (64 bytes, one AVX-512 vector) on every SIMD
//! level, each made of as many of the level's own vectors as it takes (two
//! with AVX2, four with SSE or NEON), and halves them at the end as
//! AVX-512's `_mm512_reduce_add_ps` does (in scalar code, the same adds in
//! the same order). On AVX-512 it adds what Flex added before; elsewhere it
//! gives AVX-512's bits. (Patched in: vendor/README.md.)

use macerator::{Arch, Scalar, Simd, Vector, WithSimd, vload_unaligned, vstore_unaligned};

/// Lanes of the order: an AVX-512 vector of f32.
pub const LANES: usize = 16;

/// Most vectors of a level one order vector takes (the scalar fallback's
/// registers hold two f32).
const MAX_PARTS: usize = 8;

/// Sum accumulators of `LANES` lanes, on the SIMD level `S`: part `p`
/// holds lanes `p * lanes .. (p + 1) * lanes`.
struct Lanes<S: Simd>([Vector<S, f32>; MAX_PARTS]);

// By hand: a derive would ask `S: Copy` of the level's marker type.
impl<S: Simd> Clone for Lanes<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S: Simd> Copy for Lanes<S> {}

impl<S: Simd> Lanes<S> {
    #[inline(always)]
    fn parts() -> usize {
        let lanes = f32::lanes::<S>();
        debug_assert!(LANES % lanes == 0 && LANES / lanes <= MAX_PARTS, "{lanes} lanes");
        LANES / lanes
    }

    #[inline(always)]
    fn zero() -> Self {
        Self([0.0f32.splat::<S>(); MAX_PARTS])
    }

    /// # Safety
    /// `ptr` is valid for reading `LANES` f32.
    #[inline(always)]
    unsafe fn load(ptr: *const f32) -> Self {
        let mut out = Self::zero();
        for p in 0..Self::parts() {
            out.0[p] = unsafe { vload_unaligned(ptr.add(p * f32::lanes::<S>())) };
        }
        out
    }

    #[inline(always)]
    fn add(self, other: Self) -> Self {
        let mut out = self;
        for p in 0..Self::parts() {
            out.0[p] = self.0[p] + other.0[p];
        }
        out
    }

    /// `self + x * x`, fused where the level has FMA.
    #[inline(always)]
    fn add_squares(self, x: Self) -> Self {
        let mut out = self;
        for p in 0..Self::parts() {
            out.0[p] = x.0[p].mul_add(x.0[p], self.0[p]);
        }
        out
    }

    /// The lanes' sum as `_mm512_reduce_add_ps` adds them: the upper half
    /// added to the lower, lane by lane, until one lane is left.
    #[inline(always)]
    fn sum(self) -> f32 {
        let mut lanes = [0.0f32; LANES];
        for p in 0..Self::parts() {
            unsafe {
                vstore_unaligned(lanes.as_mut_ptr().add(p * f32::lanes::<S>()), self.0[p]);
            }
        }
        let mut n = LANES;
        while n > 1 {
            n /= 2;
            for j in 0..n {
                lanes[j] += lanes[j + n];
            }
        }
        lanes[0]
    }
}

/// `sum_f32` on the SIMD level `arch` (`Arch::new()`: this CPU's best; the
/// tests compare the levels).
pub fn sum_f32_on(arch: Arch, data: &[f32]) -> f32 {
    struct Op<'a>(&'a [f32]);
    impl WithSimd for Op<'_> {
        type Output = f32;
        #[inline(always)]
        fn with_simd<S: Simd>(self) -> f32 {
            sum_in::<S>(self.0)
        }
    }
    arch.dispatch(Op(data))
}

/// Layer norm's `(Σx, Σx²)` of `row` on the SIMD level `arch`.
pub fn sum_and_sum_sq_f32_on(arch: Arch, row: &[f32]) -> (f32, f32) {
    struct Op<'a>(&'a [f32]);
    impl WithSimd for Op<'_> {
        type Output = (f32, f32);
        #[inline(always)]
        fn with_simd<S: Simd>(self) -> (f32, f32) {
            sum_and_sum_sq_in::<S>(self.0)
        }
    }
    arch.dispatch(Op(row))
}

/// Eight accumulators over blocks of `8 * LANES` (independent chains, so
/// the adds pipeline), combined pairwise; whole groups of `LANES` left
/// added to that; the lanes halved; the rest added in turn. (burn Flex's
/// `macerator_sum`, with its lanes fixed at `LANES`.)
#[inline(always)]
pub(crate) fn sum_in<S: Simd>(mut xs: &[f32]) -> f32 {
    let block = 8 * LANES;
    let mut acc = [Lanes::<S>::zero(); 8];
    while xs.len() >= block {
        for (k, a) in acc.iter_mut().enumerate() {
            *a = a.add(unsafe { Lanes::load(xs.as_ptr().add(k * LANES)) });
        }
        xs = &xs[block..];
    }
    let mut sum = (acc[0].add(acc[1]).add(acc[2].add(acc[3])))
        .add(acc[4].add(acc[5]).add(acc[6].add(acc[7])));
    while xs.len() >= LANES {
        sum = sum.add(unsafe { Lanes::load(xs.as_ptr()) });
        xs = &xs[LANES..];
    }
    sum.sum() + xs.iter().copied().sum::<f32>()
}

/// Σx and Σx² in one sweep: one accumulator each over the whole groups of
/// `LANES` (x² fused into the sum where the level has FMA), halved, the
/// rest added in turn; a row shorter than `LANES` added in turn from zero.
#[inline(always)]
pub(crate) fn sum_and_sum_sq_in<S: Simd>(row: &[f32]) -> (f32, f32) {
    let whole = row.len() / LANES * LANES;
    let in_turn = |(s, sq): (f32, f32), &x: &f32| (s + x, sq + x * x);
    if whole == 0 {
        return row.iter().fold((0.0, 0.0), in_turn);
    }
    let (mut sum, mut sum_sq) = (Lanes::<S>::zero(), Lanes::<S>::zero());
    for group in row[..whole].chunks_exact(LANES) {
        let x = unsafe { Lanes::load(group.as_ptr()) };
        sum = sum.add(x);
        sum_sq = sum_sq.add_squares(x);
    }
    row[whole..].iter().fold((sum.sum(), sum_sq.sum()), in_turn)
}

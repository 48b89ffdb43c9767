//! simlab patch: GELU in f32 with an `erf` that vectorises.
//!
//! GELU spends most of its time in `erf`. libm's `erff` (FreeBSD's
//! `s_erff.c`) branches on |x| and calls `expf` twice past 1.25, so a loop
//! over it runs one element at a time. [`erff`] is the same function with
//! every branch computed and the result picked by masks: the same float
//! operations in the same order, so it returns libm's `erff` to the bit
//! (checked on all 2^32 inputs, see vendor/README.md), and a loop over it
//! vectorises. [`gelu`] and [`gelu_backward`] give most elements erff's
//! first branch, the rest the whole of it (`erf_scaled_any`), with AVX2
//! where the CPU has it (the build targets baseline x86-64) and on rayon's
//! threads for large tensors; elementwise, so none of it changes a bit.
//! The backward's `exp` is glibc's `expf` ([`glibc_expf`], `exp_f32.rs`),
//! which Flex's formula called through `f32::exp`, written so that the
//! loop around it vectorises too. Outputs are written into unzeroed
//! memory: every element once, by erff's first branch, before anything
//! reads it.

use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::Bytes;
use core::mem::MaybeUninit;

use super::exp_f32::glibc_expf;
use crate::{FlexTensor, Layout};
#[cfg(not(feature = "std"))]
#[allow(unused_imports)]
use num_traits::Float;

const ERX: f32 = 8.4506291151e-01;
const EFX8: f32 = 1.0270333290e+00;
/// erf on |x| < 0.84375: x + x * P(x²) / Q(x²).
const PP: [f32; 5] = [
    1.2837916613e-01,
    -3.2504209876e-01,
    -2.8481749818e-02,
    -5.7702702470e-03,
    -2.3763017452e-05,
];
const QQ: [f32; 5] = [
    3.9791721106e-01,
    6.5022252500e-02,
    5.0813062117e-03,
    1.3249473704e-04,
    -3.9602282413e-06,
];
/// erf on 0.84375 <= |x| < 1.25: erx + P(|x| - 1) / Q(|x| - 1).
const PA: [f32; 7] = [
    -2.3621185683e-03,
    4.1485610604e-01,
    -3.7220788002e-01,
    3.1834661961e-01,
    -1.1089469492e-01,
    3.5478305072e-02,
    -2.1663755178e-03,
];
const QA: [f32; 6] = [
    1.0642088205e-01,
    5.4039794207e-01,
    7.1828655899e-02,
    1.2617121637e-01,
    1.3637083583e-02,
    1.1984500103e-02,
];
/// erfc on 1.25 <= |x| < 1/0.35 (RA, SA) and 1/0.35 <= |x| < 6 (RB, SB).
/// RB and SB carry one more coefficient than libm's, a 0: Horner's
/// `c + s * 0` is `c` to the bit for the finite s here, so one loop of
/// picked coefficients evaluates both.
const RA: [f32; 8] = [
    -9.8649440333e-03,
    -6.9385856390e-01,
    -1.0558626175e+01,
    -6.2375331879e+01,
    -1.6239666748e+02,
    -1.8460508728e+02,
    -8.1287437439e+01,
    -9.8143291473e+00,
];
const SA: [f32; 8] = [
    1.9651271820e+01,
    1.3765776062e+02,
    4.3456588745e+02,
    6.4538726807e+02,
    4.2900814819e+02,
    1.0863500214e+02,
    6.5702495575e+00,
    -6.0424413532e-02,
];
const RB: [f32; 8] = [
    -9.8649431020e-03,
    -7.9928326607e-01,
    -1.7757955551e+01,
    -1.6063638306e+02,
    -6.3756646729e+02,
    -1.0250950928e+03,
    -4.8351919556e+02,
    0.0,
];
const SB: [f32; 8] = [
    3.0338060379e+01,
    3.2579251099e+02,
    1.5367296143e+03,
    3.1998581543e+03,
    2.5530502930e+03,
    4.7452853394e+02,
    -2.2440952301e+01,
    0.0,
];

/// `if m { a } else { b }` on the bits, which compilers turn into a blend.
#[inline(always)]
pub(super) fn pick(m: bool, a: f32, b: f32) -> f32 {
    f32::from_bits(if m { a.to_bits() } else { b.to_bits() })
}

/// Horner's rule on picked coefficients: `c0 + s * (c1 + s * (... + s * c7))`.
#[inline(always)]
fn horner8(m: bool, a: &[f32; 8], b: &[f32; 8], s: f32) -> f32 {
    let mut acc = pick(m, a[7], b[7]);
    for i in (0..7).rev() {
        acc = pick(m, a[i], b[i]) + s * acc;
    }
    acc
}

/// libm's `expf` (FreeBSD's `e_expf.c`) without branches, for the
/// arguments `erff` gives it (-37 < x < 1): results stay normal, so
/// libm's overflow, underflow and subnormal paths are left out.
#[inline(always)]
fn expf(x: f32) -> f32 {
    const LN2_HI: f32 = 6.9314575195e-01;
    const LN2_LO: f32 = 1.4286067653e-06;
    const INV_LN2: f32 = 1.4426950216e+00;
    const P1: f32 = 1.6666625440e-1;
    const P2: f32 = -2.7667332906e-3;
    let hx = x.to_bits() & 0x7fff_ffff;
    let neg = x.to_bits() >> 31 != 0;
    // SAFETY: |x| < 37, so the sum is finite and far inside i32's range.
    let k_far: i32 = unsafe { (INV_LN2 * x + pick(neg, -0.5, 0.5)).to_int_unchecked() };
    let k_near = if neg { -1 } else { 1 };
    // |x| > 1.5 ln2, 0.5 ln2 < |x| <= 1.5 ln2, else no reduction (k = 0
    // leaves hi = x and lo = 0 exactly, as libm's own k = 0 branch does).
    let k = if hx > 0x3f85_1592 {
        k_far
    } else if hx > 0x3eb1_7218 {
        k_near
    } else {
        0
    };
    let kf = k as f32;
    let hi = x - kf * LN2_HI;
    let lo = kf * LN2_LO;
    let r = hi - lo;
    let rr = r * r;
    let c = r - rr * (P1 + rr * P2);
    let y = 1. + (r * c / (2. - c) - lo + hi);
    // libm's scalbnf(y, k): a product by 2^k, exact for the k >= -54 here.
    let y = y * f32::from_bits(((0x7f + k) as u32) << 23);
    pick(hx <= 0x3900_0000, 1. + x, y)
}

/// The |x| (as bits) of erff's first branch: 2^-28 <= |x| < 0.84375.
const FIRST_BRANCH: core::ops::Range<u32> = 0x3180_0000..0x3f58_0000;

/// erff's first branch, `x + x P(x²) / Q(x²)` (any x; used on FIRST_BRANCH).
#[inline(always)]
fn erff_first_branch(x: f32) -> f32 {
    let z = x * x;
    let r = PP[0] + z * (PP[1] + z * (PP[2] + z * (PP[3] + z * PP[4])));
    let s = 1.0 + z * (QQ[0] + z * (QQ[1] + z * (QQ[2] + z * (QQ[3] + z * QQ[4]))));
    x + x * (r / s)
}

/// The error function, libm's `erff` to the bit.
#[inline(always)]
pub fn erff(x: f32) -> f32 {
    let ix = x.to_bits() & 0x7fff_ffff;
    let neg = x.to_bits() >> 31 != 0;
    let ax = f32::from_bits(ix);

    // |x| < 0.84375 (below 2^-28, libm's form that avoids underflow).
    let small = erff_first_branch(x);
    let tiny = 0.125 * (8.0 * x + EFX8 * x);

    // 0.84375 <= |x| < 1.25: erfc = 1 - erx - P / Q.
    let s1 = ax - 1.0;
    let p = PA[0]
        + s1 * (PA[1] + s1 * (PA[2] + s1 * (PA[3] + s1 * (PA[4] + s1 * (PA[5] + s1 * PA[6])))));
    let q =
        1.0 + s1 * (QA[0] + s1 * (QA[1] + s1 * (QA[2] + s1 * (QA[3] + s1 * (QA[4] + s1 * QA[5])))));
    let erfc_mid = 1.0 - ERX - p / q;

    // 1.25 <= |x| < 6: erfc = exp(-z² - 0.5625) exp((z - |x|)(z + |x|) + R/S) / |x|,
    // z = |x| with its low 13 mantissa bits cleared. Other lanes get -1 as
    // the exponent, so every lane stays finite; their result is not used.
    let near = ix < 0x4036_db6d;
    let s2 = 1.0 / (ax * ax);
    let big_r = horner8(near, &RA, &RB, s2);
    let big_s = 1.0 + s2 * horner8(near, &SA, &SB, s2);
    let zt = f32::from_bits(ix & 0xffff_e000);
    let tail = (0x3fa0_0000..0x40c0_0000).contains(&ix);
    let e1 = pick(tail, -zt * zt - 0.5625, -1.0);
    let e2 = pick(tail, (zt - ax) * (zt + ax) + big_r / big_s, -1.0);
    let erfc_far = expf(e1) * expf(e2) / ax;

    let erfc = pick(ix < 0x3fa0_0000, erfc_mid, erfc_far);
    let y = pick(
        ix < 0x40c0_0000,
        1.0 - erfc,
        1.0 - f32::from_bits(0x0380_0000),
    );
    let y = pick(neg, -y, y);
    let y = pick(ix < 0x3f58_0000, pick(ix < 0x3180_0000, tiny, small), y);
    // erf(nan) = nan, erf(±inf) = ±1.
    pick(
        ix >= 0x7f80_0000,
        1.0 - 2.0 * (neg as u32 as f32) + 1.0 / x,
        y,
    )
}

/// GELU, `0.5 x (1 + erf(x / √2))`, of an f32 tensor.
pub fn gelu(tensor: FlexTensor) -> FlexTensor {
    let x = tensor.to_contiguous();
    let xs = values(&x);
    let out = fill_chunked(xs.len(), |start, o| {
        let xs = &xs[start..start + o.len()];
        let o = erf_scaled(xs, o);
        for (d, &x) in o.iter_mut().zip(xs) {
            *d = 0.5 * x * (1.0 + *d);
        }
    });
    contiguous_like(&x, out)
}

/// GELU's backward, `grad (Φ(x) + x φ(x))` with `Φ(x) = 0.5 (1 + erf(x / √2))`
/// and `φ(x) = exp(-x² / 2) / √(2π)`, for `x` and `grad` of one shape, in
/// Flex's own operations and order.
pub fn gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    debug_assert_eq!(x.layout().shape(), grad.layout().shape());
    let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
    let (xs, gs) = (values(&x), values(&grad));
    let out = fill_chunked(xs.len(), |start, o| {
        let (xs, gs) = (&xs[start..start + o.len()], &gs[start..start + o.len()]);
        let o = erf_scaled(xs, o);
        backward_from_erf(xs, gs, o);
    });
    contiguous_like(&x, out)
}

/// `g (Φ(x) + x φ(x))` for each `x`, `g` and `erf(x / √2)` (in `out`), into
/// `out`, with AVX2 and FMA where the CPU has them (FMA for `glibc_expf`'s
/// fused steps only: Rust fuses nothing else).
fn backward_from_erf(xs: &[f32], gs: &[f32], out: &mut [f32]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        unsafe { backward_from_erf_avx2(xs, gs, out) };
        return;
    }
    backward_from_erf_any(xs, gs, out);
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_from_erf_avx2(xs: &[f32], gs: &[f32], out: &mut [f32]) {
    backward_from_erf_any(xs, gs, out);
}

/// Flex's formula, its operations in its order.
#[inline(always)]
fn backward_from_erf_any(xs: &[f32], gs: &[f32], out: &mut [f32]) {
    let inv_sqrt_2pi: f32 = 1.0 / (2.0 * core::f32::consts::PI).sqrt();
    for ((d, &x), &g) in out.iter_mut().zip(xs).zip(gs) {
        let cdf = 0.5 * (1.0 + *d);
        let pdf = inv_sqrt_2pi * glibc_expf(-0.5 * x * x);
        *d = g * (cdf + x * pdf);
    }
}

/// The elements of a contiguous f32 tensor.
pub(super) fn values(tensor: &FlexTensor) -> &[f32] {
    debug_assert_eq!(tensor.dtype(), DType::F32);
    let start = tensor.layout().start_offset();
    &tensor.storage::<f32>()[start..start + tensor.layout().num_elements()]
}

/// `values` as a contiguous tensor of `like`'s shape.
pub(super) fn contiguous_like(like: &FlexTensor, values: Vec<f32>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(like.layout().shape().clone()),
        DType::F32,
    )
}

/// `len` elements made by `fill(start, chunk)` on chunks of unzeroed
/// memory (`start`: the chunk's first index), on rayon's threads for large
/// tensors: each element is computed alone, so the split changes no bit.
/// `fill` must write every element of its chunk: each starts with
/// [`erf_scaled`], which does.
fn fill_chunked<F: Fn(usize, &mut [MaybeUninit<f32>]) + Send + Sync>(
    len: usize,
    fill: F,
) -> Vec<f32> {
    const CHUNK: usize = 16 * 1024;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let chunks = &mut out.spare_capacity_mut()[..len];
    #[cfg(feature = "rayon")]
    if len >= super::PARALLEL_THRESHOLD {
        use rayon::prelude::*;
        chunks
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, o)| fill(i * CHUNK, o));
        // SAFETY: every chunk of the `len` elements was written.
        unsafe { out.set_len(len) };
        return out;
    }
    for (i, o) in chunks.chunks_mut(CHUNK).enumerate() {
        fill(i * CHUNK, o);
    }
    // SAFETY: every chunk of the `len` elements was written.
    unsafe { out.set_len(len) };
    out
}

/// `erf(x / √2)` of every `x` into `out`, with AVX2 where the CPU has it;
/// returns `out`, every element written.
fn erf_scaled<'a>(xs: &[f32], out: &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { erf_scaled_avx2(xs, out) };
    }
    erf_scaled_any(xs, out)
}

/// The same loops compiled for AVX2: eight lanes where baseline x86-64 has
/// four. No FMA: Rust never fuses a product and a sum, so the bits stay.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn erf_scaled_avx2<'a>(xs: &[f32], out: &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] {
    erf_scaled_any(xs, out)
}

/// Most of GELU's inputs take erff's first branch (|x / √2| < 0.84375, a
/// rational function without `exp`): that form for every element, then
/// the others (and the tiny, the infinite and the NaN) gathered and given
/// the whole of [`erff`]. A block at a time, so the gathered ones sit on
/// the stack. `x / √2` is computed once, in the vectorised pass, with a
/// flag per element for the gathering, which reads the flags eight at a
/// time and skips the groups that have none (a scalar division per
/// element there took 40 % of this function's time).
#[inline(always)]
fn erf_scaled_any<'a>(xs: &[f32], out: &'a mut [MaybeUninit<f32>]) -> &'a mut [f32] {
    const BLOCK: usize = 1024;
    const GROUP: usize = 8;
    assert_eq!(xs.len(), out.len());
    for (xs, out) in xs.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        let len = xs.len();
        let mut scaled = [0.0f32; BLOCK];
        let mut outside = [0u8; BLOCK];
        for (((d, s), o), &x) in out
            .iter_mut()
            .zip(&mut scaled)
            .zip(&mut outside)
            .zip(xs)
        {
            *s = x / core::f32::consts::SQRT_2;
            d.write(erff_first_branch(*s));
            *o = !FIRST_BRANCH.contains(&(s.to_bits() & 0x7fff_ffff)) as u8;
        }
        // SAFETY: the loop above wrote each of the block's elements.
        let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
        let mut others = [0u16; BLOCK];
        let mut n = 0;
        for (g, flags) in outside[..len].chunks(GROUP).enumerate() {
            if flags.iter().fold(0, |any, &f| any | f) == 0 {
                continue;
            }
            for (j, &f) in flags.iter().enumerate() {
                others[n] = (g * GROUP + j) as u16;
                n += f as usize;
            }
        }
        let mut args = [0.0f32; BLOCK];
        for (a, &i) in args.iter_mut().zip(&others[..n]) {
            *a = scaled[i as usize];
        }
        for a in &mut args[..n] {
            *a = erff(*a);
        }
        for (&a, &i) in args.iter().zip(&others[..n]) {
            out[i as usize] = a;
        }
    }
    // SAFETY: each block was written in full above.
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

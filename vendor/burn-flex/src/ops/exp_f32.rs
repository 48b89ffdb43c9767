//! simlab patch: `exp` of f32 tensors as glibc's `expf`, in a loop that
//! vectorises.
//!
//! Flex's `exp` op and its fused softmax call `f32::exp` per element,
//! which on x86-64 Linux is a call into glibc that keeps the loop around
//! it scalar (softmax's exps: 1.5 % of the samples of a DINO process and
//! of a fine-tuning run). [`glibc_expf`] is glibc's `expf` written in
//! Rust, its special cases picked by masks, so a loop over it vectorises;
//! [`exp`] and the fused softmax (`activation.rs`) run it where it is what
//! `f32::exp` computes ([`is_the_systems_expf`]), so no bit changes, and
//! Flex's own loops run everywhere else. GELU's backward calls it too
//! (`gelu_f32.rs`).

use super::gelu_f32::pick;

/// Whether `f32::exp` here computes [`glibc_expf`]: glibc's `expf` on
/// x86-64, which runs its FMA build on CPUs with AVX2 and FMA (its
/// `ifunc-fma.h` asks for both).
pub fn is_the_systems_expf() -> bool {
    #[cfg(all(
        feature = "std",
        target_arch = "x86_64",
        target_os = "linux",
        target_env = "gnu"
    ))]
    return std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    #[allow(unreachable_code)]
    false
}

#[cfg(all(
    feature = "std",
    target_arch = "x86_64",
    target_os = "linux",
    target_env = "gnu"
))]
pub use on_glibc::exp;

/// Where `f32::exp` may be glibc's FMA build.
#[cfg(all(
    feature = "std",
    target_arch = "x86_64",
    target_os = "linux",
    target_env = "gnu"
))]
mod on_glibc {
    use super::{glibc_expf, is_the_systems_expf};
    use crate::FlexTensor;
    use crate::ops::gelu_f32::{contiguous_like, values};
    use alloc::vec::Vec;
    use burn_backend::DType;
    use core::mem::MaybeUninit;

    /// `exp` of every element of an f32 tensor, as [`glibc_expf`]: in
    /// place when the tensor is the only owner of its contiguous storage,
    /// else into a new contiguous tensor. Only where
    /// [`is_the_systems_expf`], whose check also makes the AVX2 and FMA
    /// loops safe.
    pub fn exp(tensor: FlexTensor) -> FlexTensor {
        debug_assert_eq!(tensor.dtype(), DType::F32);
        assert!(
            is_the_systems_expf(),
            "exp_f32::exp needs glibc's expf, AVX2 and FMA"
        );
        let mut x = tensor.to_contiguous();
        // `to_contiguous` shares a contiguous tensor's storage: let go of
        // the argument's handle so that `x` may own it alone.
        drop(tensor);
        if x.is_unique() {
            let n = x.layout().num_elements();
            // SAFETY: the CPU has AVX2 and FMA (`is_the_systems_expf`).
            unsafe { exp_in_place_avx2(&mut x.storage_mut::<f32>()[..n]) };
            return x;
        }
        let xs = values(&x);
        let mut out: Vec<f32> = Vec::with_capacity(xs.len());
        // SAFETY: as above; and the loop writes every one of the
        // `xs.len()` elements before the length is set.
        unsafe {
            exp_into_avx2(xs, &mut out.spare_capacity_mut()[..xs.len()]);
            out.set_len(xs.len());
        }
        contiguous_like(&x, out)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp_in_place_avx2(xs: &mut [f32]) {
        for x in xs {
            *x = glibc_expf(*x);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp_into_avx2(xs: &[f32], out: &mut [MaybeUninit<f32>]) {
        for (o, &x) in out.iter_mut().zip(xs) {
            o.write(glibc_expf(x));
        }
    }
}

/// glibc's `expf` to the bit, as its FMA build (`__expf_fma`, from
/// `sysdeps/ieee754/flt-32/e_expf.c`; read from glibc 2.36), the one
/// `f32::exp` calls on x86-64 Linux with an FMA CPU, computes it: in f64, `x` as `k / 32 + r / 32`
/// in units of ln 2, `2^(k / 32)` from a table of 32, a cubic in `r`, each
/// `a * b + c` fused where that build fuses it. Its special cases (|x| ≥ 88,
/// infinities, NaN) are picked by masks, so a loop over it vectorises. The
/// constants are the ones in `__exp2f_data` of glibc 2.36's libm.so.6.
#[inline(always)]
pub fn glibc_expf(x: f32) -> f32 {
    let xd = x as f64;
    let shifted = EXPF_INV_LN2_N.mul_add(xd, EXPF_SHIFT);
    let ki = shifted.to_bits();
    let kd = shifted - EXPF_SHIFT;
    let r = EXPF_INV_LN2_N.mul_add(xd, -kd);
    let s = f64::from_bits(EXPF_TABLE[(ki % 32) as usize].wrapping_add(ki << 47));
    let z = EXPF_POLY[0].mul_add(r, EXPF_POLY[1]);
    let r2 = r * r;
    let y = EXPF_POLY[2].mul_add(r, 1.0);
    let y = z.mul_add(r2, y);
    let normal = (y * s) as f32;
    // |x| >= 88, infinities and NaN: glibc's branches, in its order.
    let bits = x.to_bits();
    let special = if bits == 0xff80_0000 {
        0.0
    } else if (bits >> 20) & 0x7ff >= 0x7f8 {
        x + x
    } else if x > f32::from_bits(0x42b1_7217) {
        f32::INFINITY
    } else if x < f32::from_bits(0xc2cf_f1b4) {
        0.0
    } else if x < f32::from_bits(0xc2ce_8ecf) {
        // __math_may_uflowf: 0x1.4p-75 squared, the smallest subnormal.
        f32::from_bits(1)
    } else {
        normal
    };
    pick((bits >> 20) & 0x7ff >= 0x42b, special, normal)
}

/// `32 / ln 2`, the shift that rounds to an integer in f64, and the cubic's
/// coefficients for `2^(r / 32)` (`invln2_scaled`, `shift`, `poly_scaled`).
const EXPF_INV_LN2_N: f64 = f64::from_bits(0x4047_1547_652b_82fe);
const EXPF_SHIFT: f64 = f64::from_bits(0x4338_0000_0000_0000);
const EXPF_POLY: [f64; 3] = [
    f64::from_bits(0x3ebc_6af8_4b91_2394),
    f64::from_bits(0x3f2e_bfce_50fa_c4f3),
    f64::from_bits(0x3f96_2e42_ff0c_52d6),
];
/// `2^(i / 32)` with the `i / 32` taken out of the exponent (`tab`).
const EXPF_TABLE: [u64; 32] = [
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
];

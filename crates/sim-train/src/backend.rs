//! The burn backends. Flex is the CPU default (1.3–1.8x faster than ndarray
//! on this machine kind); the `ndarray` feature switches to burn's ndarray
//! backend; the `cuda` feature runs the binaries on an NVIDIA GPU. Also the
//! allocator every process linking this crate uses (mimalloc).

use std::ffi::{c_int, c_long};
use std::path::Path;

/// The allocator of every process linking this crate (the binary, its
/// benches and tests). A tensor op allocates its output afresh: with
/// glibc's malloc, outputs above its mmap threshold come as new pages from
/// the kernel each time (page faults, zeroing) and go back on free;
/// mimalloc keeps and reuses them. BENCHMARKS.md has what it changes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the 16th entry of `mi_option_e` in
/// the mimalloc.h it builds, v3; a test checks it against the option the
/// variable `MIMALLOC_PURGE_DELAY` sets).
const MI_OPTION_PURGE_DELAY: c_int = 15;

unsafe extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
}

/// Keeps the memory freed in this process for its later allocations
/// instead of returning it to the OS 10 ms after (mimalloc's default): a
/// training step frees and allocates the same activations again, and
/// memory handed back comes back as page faults and zeroed pages (about
/// 8 % of a small ViT's step, and up to 20 % fewer images/s, measured by
/// `scripts/bench_train.py`). The process's memory then stays at its peak
/// until it exits. Called first by the binaries and benches.
pub fn keep_freed_memory() {
    // SAFETY: sets an integer option; mimalloc reads options atomically.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// The CPU backend of default builds (tests always run on it).
#[cfg(not(feature = "ndarray"))]
pub type CpuBackend = burn::backend::Flex;
/// The CPU backend, with `--features ndarray`.
#[cfg(feature = "ndarray")]
pub type CpuBackend = burn::backend::NdArray;

/// What the binaries run on: the GPU with `--features cuda`, else the CPU.
#[cfg(feature = "cuda")]
pub type DeviceBackend = burn::backend::Cuda;
/// What the binaries run on: the GPU with `--features cuda`, else the CPU.
#[cfg(not(feature = "cuda"))]
pub type DeviceBackend = CpuBackend;

/// [`DeviceBackend`] in words (tables, logs).
pub const DEVICE_NAME: &str = if cfg!(feature = "cuda") {
    "GPU (burn CUDA)"
} else if cfg!(feature = "ndarray") {
    "CPU (burn ndarray)"
} else {
    "CPU (burn Flex)"
};

/// The training backend: automatic differentiation over [`DeviceBackend`].
pub type TrainBackend = burn::backend::Autodiff<DeviceBackend>;

/// Keeps the GPU's compiled kernels (PTX) and autotune results in `dir`,
/// shared by every process that names the same folder (the runs of a
/// study, its Slurm array tasks: cubecl's cache files are safe for several
/// writers), so only the first process of a study compiles and tunes. Without
/// it cubecl keeps no compiled kernels and tunes into `./target`. Any other
/// setting of a `cubecl.toml` and the `CUBECL_*` variables (e.g.
/// `CUBECL_AUTOTUNE_LEVEL=minimal`) still applies. Takes effect before the
/// process's first tensor only: a later call (or one after another folder
/// was named) changes nothing. A CPU build has nothing to keep.
pub fn use_kernel_cache(dir: &Path) {
    #[cfg(feature = "cuda")]
    {
        use burn::cubecl::config::cache::CacheConfig;
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
        if CubeClRuntimeConfig::storage().lock().is_some() {
            return;
        }
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.autotune.cache = CacheConfig::File(dir.join("autotune"));
        config.compilation.cache = Some(CacheConfig::File(dir.join("compiled")));
        CubeClRuntimeConfig::set(config);
    }
    #[cfg(not(feature = "cuda"))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number is mimalloc's purge delay: a child process given
    /// `MIMALLOC_PURGE_DELAY` reads that value back under our number.
    #[test]
    fn the_purge_delay_option_is_the_one_its_variable_sets() {
        const CHILD: &str = "SIM_TRAIN_ALLOCATOR_TEST_CHILD";
        if std::env::var_os(CHILD).is_some() {
            assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, 1234);
            keep_freed_memory();
            assert_eq!(unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }, -1);
            return;
        }
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "backend::tests::the_purge_delay_option_is_the_one_its_variable_sets",
            ])
            .env(CHILD, "1")
            .env("MIMALLOC_PURGE_DELAY", "1234")
            .output()
            .unwrap();
        let said = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            child.status.success(),
            "the child saw another value:\n{}{}",
            said(&child.stdout),
            said(&child.stderr)
        );
    }

    /// burn Flex's copy of a strided view into a contiguous tensor, for
    /// the layouts that cannot collapse to two dims (the attention's head
    /// merge and its gradients; vendor/burn-flex patches their path):
    /// every element lands where an index walk over the view puts it.
    #[test]
    fn strided_views_copy_to_where_an_index_walk_puts_each_element() {
        use burn::tensor::{Tensor, TensorData};
        /// The value at `i` of the `[2, 3, 4, 5]` tensor: its flat index.
        fn at(i: [usize; 4]) -> f32 {
            (((i[0] * 3 + i[1]) * 4 + i[2]) * 5 + i[3]) as f32
        }
        let values: Vec<f32> = (0..120).map(|v| v as f32).collect();
        let x = Tensor::<CpuBackend, 4>::from_data(
            TensorData::new(values, [2, 3, 4, 5]),
            &Default::default(),
        );
        /// A case's name, its view, the view's shape, and where the view's
        /// element `[a, b, c, d]` comes from.
        type Case = (
            &'static str,
            Tensor<CpuBackend, 4>,
            [usize; 4],
            fn([usize; 4]) -> f32,
        );
        let cases: [Case; 4] = [
            (
                "heads merged back: unit-stride rows",
                x.clone().swap_dims(1, 2),
                [2, 4, 3, 5],
                |[a, b, c, d]| at([a, c, b, d]),
            ),
            (
                "innermost dim strided: tiled 2D blocks",
                x.clone().permute([1, 0, 3, 2]),
                [3, 2, 5, 4],
                |[a, b, c, d]| at([b, a, d, c]),
            ),
            (
                "a narrowed view of a permuted one, at an offset",
                x.clone()
                    .permute([2, 0, 1, 3])
                    .narrow(0, 1, 2)
                    .narrow(3, 2, 3),
                [2, 2, 3, 3],
                |[a, b, c, d]| at([b, c, a + 1, d + 2]),
            ),
            (
                "a flipped one (negative strides: the index walk itself)",
                x.swap_dims(1, 2).flip([3]),
                [2, 4, 3, 5],
                |[a, b, c, d]| at([a, c, b, 4 - d]),
            ),
        ];
        for (case, view, dims, source) in cases {
            assert_eq!(view.dims(), dims, "{case}");
            let flat: Tensor<CpuBackend, 1> = view.reshape([dims.iter().product::<usize>()]);
            let mut expected = Vec::new();
            for a in 0..dims[0] {
                for b in 0..dims[1] {
                    for c in 0..dims[2] {
                        for d in 0..dims[3] {
                            expected.push(source([a, b, c, d]));
                        }
                    }
                }
            }
            assert_eq!(
                flat.into_data().to_vec::<f32>().unwrap(),
                expected,
                "{case}"
            );
        }
    }

    /// burn Flex's elementwise ops with a block broadcast over the leading
    /// dim (a ViT's position embedding `[1, T, D]` added to `[B, T, D]`;
    /// vendor/burn-flex gives it the shared-row path): each element is the
    /// op on the two elements an index walk pairs, for each of the four ops,
    /// with the left operand shared (so copied) and owned (so overwritten),
    /// and with a broadcast over the last dim only (the path's old case).
    #[test]
    fn a_broadcast_block_pairs_the_elements_an_index_walk_pairs() {
        use burn::tensor::{Tensor, TensorData};
        let dev = Default::default();
        let tensor = |values: Vec<f32>, shape: [usize; 3]| {
            Tensor::<CpuBackend, 3>::from_data(TensorData::new(values, shape), &dev)
        };
        let (b, t, d) = (3, 5, 7);
        let lhs: Vec<f32> = (0..b * t * d).map(|i| 1.0 + i as f32 * 0.37).collect();
        let block: Vec<f32> = (0..t * d).map(|i| 0.5 + i as f32 * 1.13).collect();
        let row: Vec<f32> = (0..d).map(|i| 2.0 - i as f32 * 0.29).collect();
        type T3 = Tensor<CpuBackend, 3>;
        /// An op's name, on tensors, and on two elements.
        type Op = (&'static str, fn(T3, T3) -> T3, fn(f32, f32) -> f32);
        let ops: [Op; 4] = [
            ("add", |l, r| l + r, |l, r| l + r),
            ("sub", |l, r| l - r, |l, r| l - r),
            ("mul", |l, r| l * r, |l, r| l * r),
            ("div", |l, r| l / r, |l, r| l / r),
        ];
        for (name, op, scalar) in ops {
            // The right operand repeats with the period of its values.
            for (case, rhs, rhs_shape) in [
                ("[1, T, D] block", &block, [1, t, d]),
                ("[1, 1, D] row", &row, [1, 1, d]),
            ] {
                let want: Vec<f32> = lhs
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| scalar(l, rhs[i % rhs.len()]))
                    .collect();
                let x = tensor(lhs.clone(), [b, t, d]);
                let r = tensor(rhs.clone(), rhs_shape);
                let shared = op(x.clone(), r.clone());
                // A tensor of its own: Flex writes the result into it.
                let owned = op(tensor(lhs.clone(), [b, t, d]), r);
                for (which, got) in [("shared", shared), ("owned", owned)] {
                    let got: Vec<f32> = got.into_data().to_vec().unwrap();
                    let differ = got
                        .iter()
                        .zip(&want)
                        .filter(|(g, w)| g.to_bits() != w.to_bits());
                    assert_eq!(
                        differ.count(),
                        0,
                        "{name} of a {case}, left operand {which}"
                    );
                }
                assert_eq!(
                    x.into_data().to_vec::<f32>().unwrap(),
                    lhs,
                    "{name}: the shared left operand kept"
                );
            }
        }
    }

    /// burn Flex's matmul writes its output into memory it does not zero
    /// first (vendor/burn-flex): every element must come from the product,
    /// none from what the memory held. Before each product a NaN-filled
    /// buffer of the output's size is freed, so the allocator hands the
    /// product that memory back; integer-valued inputs make every sum exact,
    /// so the product must equal a plain triple loop whatever gemm's order.
    /// The shapes reach gemm's paths (k = 0 and k ≤ 2, matrix × vector both
    /// ways, small tiles, the packed kernel on one thread and on rayon's)
    /// and Flex's three for batches (one matrix after another, with a
    /// broadcast operand; one per rayon thread; each on all of them);
    /// transposed operands too.
    #[test]
    fn matmul_outputs_come_from_the_product_alone() {
        use burn::tensor::{Tensor, TensorData};
        let device = Default::default();
        let operand = |batch: usize, rows: usize, cols: usize, salt: usize| {
            let values: Vec<f32> = (0..batch * rows * cols)
                .map(|i| ((i * 7 + salt) % 11) as f32 - 5.0)
                .collect();
            Tensor::<CpuBackend, 3>::from_data(
                TensorData::new(values, [batch, rows, cols]),
                &device,
            )
        };
        // (lhs batch, rhs batch, m, k, n, transposed operands)
        let cases = [
            (1, 1, 3, 0, 4, false),
            (1, 1, 4, 2, 3, false),
            (1, 1, 1, 7, 5, false),
            (1, 1, 5, 7, 1, false),
            (1, 1, 6, 9, 7, false),
            (1, 1, 40, 96, 50, false),
            (1, 1, 40, 96, 50, true),
            (1, 1, 200, 96, 384, false),
            (6, 1, 17, 32, 40, true),
            (8, 8, 64, 64, 80, false),
            (2, 2, 200, 96, 384, false),
        ];
        for (lb, rb, m, k, n, transposed) in cases {
            let case = format!("[{lb}, {m}, {k}] x [{rb}, {k}, {n}], transposed {transposed}");
            let (lhs, rhs) = if transposed {
                (
                    operand(lb, k, m, 1).swap_dims(1, 2),
                    operand(rb, n, k, 2).swap_dims(1, 2),
                )
            } else {
                (operand(lb, m, k, 1), operand(rb, k, n, 2))
            };
            let (a, b) = (
                lhs.to_data().to_vec::<f32>().unwrap(),
                rhs.to_data().to_vec::<f32>().unwrap(),
            );
            let batch = lb.max(rb);
            let mut expected = vec![0.0f32; batch * m * n];
            for (bi, out) in expected.chunks_mut(m * n).enumerate() {
                let (a, b) = (&a[(bi % lb) * m * k..], &b[(bi % rb) * k * n..]);
                for i in 0..m {
                    for j in 0..n {
                        out[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
                    }
                }
            }
            drop(Tensor::<CpuBackend, 1>::full(
                [batch * m * n],
                f32::NAN,
                &device,
            ));
            let got = if lb == 1 && rb == 1 {
                // Rank 2: Flex's own 2D path.
                let (lhs, rhs) = (lhs.squeeze_dim::<2>(0), rhs.squeeze_dim::<2>(0));
                lhs.matmul(rhs).into_data()
            } else {
                lhs.matmul(rhs).into_data()
            };
            let got = got.to_vec::<f32>().unwrap();
            assert_eq!(got, expected, "{case}");
        }
    }

    /// A product sums each output's k terms as the patched gemm-common
    /// (`vendor/`) orders them on every CPU: in blocks of at most 1,024
    /// (k cut into ⌈k / 1024⌉ equal blocks), one FMA chain per block from
    /// zero, the blocks added in turn. Unpatched, the blocks' depth came
    /// from the machine's L1 cache, and k = 544 (a fine-tuning part's
    /// tokens, in a weight's gradient) was summed as two blocks on a CPU
    /// with a 32 KiB, 8-way L1 and as one on a 48 KiB, 12-way one.
    /// m and n above 64: smaller products take gemm's small-size path,
    /// whose blocks are the same on every CPU. (burn's ndarray backend
    /// multiplies on other code.)
    #[cfg(not(feature = "ndarray"))]
    #[test]
    fn products_sum_in_the_same_blocks_on_every_cpu() {
        use burn::tensor::{Tensor, TensorData};
        let device = Default::default();
        // Values whose sums round differently in another order.
        let operand = |rows: usize, cols: usize, salt: u64| -> Vec<f32> {
            (0..(rows * cols) as u64)
                .map(|i| {
                    let h = (i ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                    h as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
                })
                .collect()
        };
        let (m, n) = (72, 80);
        for k in [544, 1000, 1500] {
            let (a, b) = (operand(m, k, 1), operand(k, n, 2));
            let blocks = k.div_ceil(1024);
            let depth = k.div_ceil(blocks);
            let mut expected = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut out = 0.0f32;
                    for (block, start) in (0..k).step_by(depth).enumerate() {
                        let chain = (start..(start + depth).min(k))
                            .fold(0.0f32, |acc, l| a[i * k + l].mul_add(b[l * n + j], acc));
                        out = if block == 0 { chain } else { out + chain };
                    }
                    expected[i * n + j] = out;
                }
            }
            let tensor = |values: Vec<f32>, shape: [usize; 2]| {
                Tensor::<CpuBackend, 2>::from_data(TensorData::new(values, shape), &device)
            };
            let got = tensor(a, [m, k])
                .matmul(tensor(b, [k, n]))
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let differ = got
                .iter()
                .zip(&expected)
                .filter(|(g, e)| g.to_bits() != e.to_bits())
                .count();
            assert_eq!(differ, 0, "k = {k}: {differ} of {} outputs differ", m * n);
        }
    }

    /// Values of many magnitudes, whose sums round differently in any other
    /// order.
    #[cfg(not(feature = "ndarray"))]
    fn summands(n: usize, salt: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let h = (i ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
                let unit = (h >> 8) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                unit * 2f32.powi((h % 24) as i32 - 12)
            })
            .collect()
    }

    /// AVX-512's `_mm512_reduce_add_ps`: the upper half added to the lower,
    /// lane by lane, until one lane is left.
    #[cfg(not(feature = "ndarray"))]
    fn halving_sum(mut lanes: [f32; 16]) -> f32 {
        let mut n = 16;
        while n > 1 {
            n /= 2;
            for j in 0..n {
                lanes[j] += lanes[j + n];
            }
        }
        lanes[0]
    }

    /// burn Flex's `sum` as it adds with AVX-512 (16 lanes, lane j taking
    /// the elements at j mod 16): eight accumulators over blocks of 128,
    /// combined as ((0+1)+(2+3))+((4+5)+(6+7)); whole groups of 16 left
    /// added to that; the 16 lanes halved; the rest added in turn.
    #[cfg(not(feature = "ndarray"))]
    fn sum_reference(xs: &[f32]) -> f32 {
        let blocks = xs.len() / 128;
        let mut acc = [[0.0f32; 16]; 8];
        for block in xs[..blocks * 128].chunks(128) {
            for (k, group) in block.chunks(16).enumerate() {
                for (lane, &x) in group.iter().enumerate() {
                    acc[k][lane] += x;
                }
            }
        }
        let mut lanes: [f32; 16] = std::array::from_fn(|j| {
            ((acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]))
                + ((acc[4][j] + acc[5][j]) + (acc[6][j] + acc[7][j]))
        });
        let whole = xs.len() / 16 * 16;
        for group in xs[blocks * 128..whole].chunks(16) {
            for (lane, &x) in group.iter().enumerate() {
                lanes[lane] += x;
            }
        }
        halving_sum(lanes) + xs[whole..].iter().sum::<f32>()
    }

    /// Layer norm's Σx and Σx² as burn Flex adds them with AVX-512: one
    /// accumulator of 16 lanes each (x² fused into its sum) over the whole
    /// groups of 16, halved, the rest added in turn; rows shorter than 16
    /// added in turn from zero.
    #[cfg(not(feature = "ndarray"))]
    fn sum_and_sum_sq_reference(xs: &[f32]) -> (f32, f32) {
        let whole = xs.len() / 16 * 16;
        let in_turn = |(s, sq): (f32, f32), &x: &f32| (s + x, sq + x * x);
        if whole == 0 {
            return xs.iter().fold((0.0, 0.0), in_turn);
        }
        let (mut sum, mut sum_sq) = ([0.0f32; 16], [0.0f32; 16]);
        for (i, &x) in xs[..whole].iter().enumerate() {
            sum[i % 16] += x;
            sum_sq[i % 16] = x.mul_add(x, sum_sq[i % 16]);
        }
        let halved = (halving_sum(sum), halving_sum(sum_sq));
        xs[whole..].iter().fold(halved, in_turn)
    }

    /// burn Flex's float sums (`sum`, `mean`, layer norm's Σx and Σx²)
    /// add in AVX-512's lane order on every SIMD level (vendor/burn-flex's
    /// `simd::fixed_order`), so that a CPU without AVX-512 trains the same
    /// models. Each level this CPU runs against the scalar references
    /// above; Σx² only where the level fuses x² into the sum (AVX2+FMA and
    /// up: SSE and the scalar fallback multiply, then add). On a CPU with
    /// AVX-512, `Arch::new()` is AVX-512's own code: there the references
    /// are checked against the hardware's order too.
    #[cfg(all(not(feature = "ndarray"), target_arch = "x86_64"))]
    #[test]
    fn float_sums_add_in_avx512s_lane_order_on_every_simd_level() {
        use burn_flex::simd::fixed_order::{sum_and_sum_sq_f32_on, sum_f32_on};
        use macerator::Arch;
        // The features macerator's levels are compiled for (its `V2`, `V3`).
        let sse4 = is_x86_feature_detected!("sse4.2") && is_x86_feature_detected!("popcnt");
        let avx2 = sse4
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("lzcnt")
            && is_x86_feature_detected!("f16c");
        // (name, level, whether it fuses x² into Σx²)
        let mut levels = vec![
            ("native", Arch::new(), avx2),
            ("scalar", Arch::Scalar, false),
        ];
        if sse4 {
            levels.push(("SSE4", Arch::V2, false));
        }
        if avx2 {
            levels.push(("AVX2", Arch::V3, true));
        }
        let lengths = (0..=300).chain([1_000, 4_099, 65_537]);
        for n in lengths {
            let xs = summands(n, n as u64);
            let want = sum_reference(&xs);
            for &(name, arch, _) in &levels {
                let got = sum_f32_on(arch, &xs);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "sum of {n} on {name}: {got:e}, want {want:e}"
                );
            }
            let want = sum_and_sum_sq_reference(&xs);
            for &(name, arch, _) in levels.iter().filter(|level| level.2) {
                let got = sum_and_sum_sq_f32_on(arch, &xs);
                assert_eq!(
                    (got.0.to_bits(), got.1.to_bits()),
                    (want.0.to_bits(), want.1.to_bits()),
                    "Σx, Σx² of {n} on {name}: {got:?}, want {want:?}"
                );
            }
        }
    }

    /// The ops go through those sums: a row `sum` is `sum_reference`, and a
    /// layer norm's output is made from `sum_and_sum_sq_reference` as
    /// burn Flex writes it, the elements of whole groups of 16 as
    /// `(x - mean) * (inv_std * gamma) + beta`, the rest as
    /// `(x - mean) * inv_std * gamma + beta` (rows of 8, 96, 104 and 300).
    #[cfg(not(feature = "ndarray"))]
    #[test]
    fn the_sum_and_layer_norm_ops_add_in_avx512s_lane_order() {
        use burn::nn::LayerNormConfig;
        use burn::tensor::{Tensor, TensorData};
        let device = Default::default();
        let rows = 3;
        for len in [8, 96, 104, 300] {
            let xs = summands(rows * len, len as u64);
            let input = Tensor::<CpuBackend, 2>::from_data(
                TensorData::new(xs.clone(), [rows, len]),
                &device,
            );
            let sums = input
                .clone()
                .sum_dim(1)
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let mut norm = LayerNormConfig::new(len).init::<CpuBackend>(&device);
            let (gamma, beta) = (summands(len, 7), summands(len, 8));
            norm.gamma = norm
                .gamma
                .map(|_| Tensor::from_data(TensorData::new(gamma.clone(), [len]), &device));
            norm.beta = norm.beta.map(|b| {
                b.map(|_| Tensor::from_data(TensorData::new(beta.clone(), [len]), &device))
            });
            let normed = norm.forward(input).into_data().to_vec::<f32>().unwrap();
            let epsilon = LayerNormConfig::new(len).epsilon as f32;
            for (r, row) in xs.chunks(len).enumerate() {
                let want = sum_reference(row);
                assert_eq!(sums[r].to_bits(), want.to_bits(), "sum of a row of {len}");
                let (s, sq) = sum_and_sum_sq_reference(row);
                let mean = s / len as f32;
                let inv_std = 1.0 / ((sq / len as f32 - mean * mean) + epsilon).sqrt();
                for (j, &x) in row.iter().enumerate() {
                    let want = if j < len / 16 * 16 {
                        (x - mean) * (inv_std * gamma[j]) + beta[j]
                    } else {
                        (x - mean) * inv_std * gamma[j] + beta[j]
                    };
                    let got = normed[r * len + j];
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "layer norm of a row of {len}, element {j}"
                    );
                }
            }
        }
    }

    /// A sum of 4 Mi elements or more, which burn Flex spreads over rayon's
    /// threads, adds the sums of its 64 Ki-element chunks (each in
    /// AVX-512's lane order) from the first chunk to the last, the same on
    /// any number of threads and in every repeat (rayon's own reduction
    /// pairs the chunks as its work-stealing splits them).
    #[cfg(not(feature = "ndarray"))]
    #[test]
    fn a_sum_of_millions_adds_its_chunks_in_order_on_any_thread_count() {
        use burn::tensor::{Tensor, TensorData};
        const CHUNK: usize = 64 * 1024;
        let n = 4 * 1024 * 1024 + 12_345;
        let xs = summands(n, 9);
        let want = xs
            .chunks(CHUNK)
            .map(sum_reference)
            .fold(0.0f32, |total, chunk| total + chunk);
        let tensor =
            Tensor::<CpuBackend, 1>::from_data(TensorData::new(xs, [n]), &Default::default());
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for repeat in 0..5 {
                let got: f32 = pool.install(|| tensor.clone().sum().into_scalar());
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{threads} threads, repeat {repeat}: {got} vs {want}"
                );
            }
        }
    }

    /// Inputs for the GELU checks: one bit pattern in every 4,099 of all
    /// 2^32 (every exponent, both signs, NaNs, infinities, subnormals),
    /// libm's branch points one ulp either side, and activations' usual range.
    #[cfg(not(feature = "ndarray"))]
    fn erf_inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..=u32::MAX).step_by(4_099).map(f32::from_bits).collect();
        // 2^-28, 0.84375, 1.25, 1/0.35 and 6 as erff's |x|, GELU's x = √2 erf's x.
        for edge in [
            0x3180_0000u32,
            0x3f58_0000,
            0x3fa0_0000,
            0x4036_db6d,
            0x40c0_0000,
        ] {
            for bits in edge - 1..=edge + 1 {
                let x = f32::from_bits(bits);
                xs.extend([
                    x,
                    -x,
                    x * std::f32::consts::SQRT_2,
                    -x * std::f32::consts::SQRT_2,
                ]);
            }
        }
        xs.extend((0..200_000).map(|i| (i as f32 - 100_000.0) * 1e-4));
        xs
    }

    /// GELU as burn Flex computed it before vendor/burn-flex made its erf
    /// vectorise: libm's `erff` in its formula.
    #[cfg(not(feature = "ndarray"))]
    fn gelu_reference(x: f32) -> f32 {
        0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2))
    }

    /// GELU's backward, likewise: `g (Φ(x) + x φ(x))`.
    #[cfg(not(feature = "ndarray"))]
    fn gelu_backward_reference(x: f32, g: f32) -> f32 {
        let cdf = 0.5 * (1.0 + libm::erff(x / std::f32::consts::SQRT_2));
        let pdf = (1.0 / (2.0 * std::f32::consts::PI).sqrt()) * (-0.5 * x * x).exp();
        g * (cdf + x * pdf)
    }

    /// Panics at the first element whose bits differ (NaN matches any NaN).
    #[cfg(not(feature = "ndarray"))]
    fn assert_same_bits(case: &str, inputs: &[f32], got: Vec<f32>, want: Vec<f32>) {
        assert_eq!(got.len(), want.len(), "{case}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{case}: at x = {:e} ({:#x}): {g:e} ({:#x}) against the reference's {w:e} ({:#x})",
                inputs[i],
                inputs[i].to_bits(),
                g.to_bits(),
                w.to_bits()
            );
        }
    }

    /// An upstream gradient that is not 1, so the product by it is checked.
    #[cfg(not(feature = "ndarray"))]
    fn upstream(n: usize) -> Vec<f32> {
        (0..n).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect()
    }

    /// burn Flex's GELU, forward and backward (through autodiff, as in
    /// training), and its erf, to the bit what they computed before
    /// vendor/burn-flex made their erf vectorise. On a tensor above Flex's
    /// threshold for rayon's threads, a small one, and a transposed view;
    /// into memory that held NaNs (GELU's outputs are not zeroed first).
    #[test]
    #[cfg(not(feature = "ndarray"))]
    fn gelu_and_erf_are_libms_formulas_to_the_bit() {
        use burn::backend::Autodiff;
        use burn::tensor::{Tensor, TensorData, activation::gelu};
        type B = Autodiff<CpuBackend>;
        let inputs = erf_inputs();
        let n = inputs.len();
        assert!(
            n > 256 * 1024,
            "{n} inputs: below Flex's parallel threshold"
        );
        let upstream = upstream(n);
        for len in [n, 4_099] {
            let xs = &inputs[..len];
            let gs = &upstream[..len];
            let dev = Default::default();
            let x =
                Tensor::<B, 1>::from_data(TensorData::new(xs.to_vec(), [len]), &dev).require_grad();
            let g = Tensor::<B, 1>::from_data(TensorData::new(gs.to_vec(), [len]), &dev);
            // GELU writes into unzeroed memory: hand it NaNs to overwrite.
            drop(Tensor::<CpuBackend, 1>::full([len], f32::NAN, &dev));
            let y = gelu(x.clone());
            let grads = (y.clone() * g).sum().backward();
            assert_same_bits(
                &format!("gelu forward, {len} elements"),
                xs,
                y.into_data().to_vec().unwrap(),
                xs.iter().map(|&x| gelu_reference(x)).collect(),
            );
            assert_same_bits(
                &format!("gelu backward, {len} elements"),
                xs,
                x.grad(&grads).unwrap().into_data().to_vec().unwrap(),
                xs.iter()
                    .zip(gs)
                    .map(|(&x, &g)| gelu_backward_reference(x, g))
                    .collect(),
            );
            assert_same_bits(
                &format!("erf, {len} elements"),
                xs,
                x.inner().erf().into_data().to_vec().unwrap(),
                xs.iter().map(|&x| libm::erff(x)).collect(),
            );
        }
        // A transposed view: GELU reads it through a contiguous copy.
        let square = &inputs[..1 << 18];
        let x = Tensor::<CpuBackend, 2>::from_data(
            TensorData::new(square.to_vec(), [512, 512]),
            &Default::default(),
        );
        let read_transposed: Vec<f32> = (0..1 << 18)
            .map(|i| square[(i % 512) * 512 + i / 512])
            .collect();
        assert_same_bits(
            "gelu of a transposed view",
            &read_transposed,
            gelu(x.transpose()).into_data().to_vec().unwrap(),
            read_transposed.iter().map(|&x| gelu_reference(x)).collect(),
        );
    }

    /// Whether `f32::exp` here is the reference `glibc_expf` copies:
    /// glibc's FMA build, on x86-64 Linux with a CPU that has AVX2 and FMA.
    #[cfg(not(feature = "ndarray"))]
    fn system_expf_is_glibcs_fma_build() -> bool {
        let yes = burn_flex::ops::exp_f32::is_the_systems_expf();
        if !yes {
            println!("SKIPPED: the system's expf is not glibc's FMA build on this machine");
        }
        yes
    }

    /// `glibc_expf` of each input against the system's `f32::exp`, by bits.
    #[cfg(not(feature = "ndarray"))]
    fn assert_glibc_expf_is_the_systems(xs: &[f32]) {
        let got = xs
            .iter()
            .map(|&x| burn_flex::ops::exp_f32::glibc_expf(x))
            .collect();
        let want = xs.iter().map(|x| x.exp()).collect();
        assert_same_bits("glibc's expf", xs, got, want);
    }

    /// One bit pattern in 4,099 of all 2^32, glibc's branch points one ulp
    /// either side (|x| = 88, overflow at 88.72, the two underflow limits
    /// near -103.3 and -104) and GELU's arguments `-x² / 2` for x in ±20.
    #[cfg(not(feature = "ndarray"))]
    fn expf_inputs() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..=u32::MAX).step_by(4_099).map(f32::from_bits).collect();
        for edge in [
            0x42b0_0000u32,
            0xc2b0_0000,
            0x42b1_7217,
            0xc2ce_8ecf,
            0xc2cf_f1b4,
        ] {
            xs.extend((edge - 1..=edge + 1).map(f32::from_bits));
        }
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        xs.extend((0..400_000).map(|i| {
            let x = (i as f32 - 200_000.0) * 1e-4;
            -0.5 * x * x
        }));
        xs
    }

    /// GELU's backward computes `exp` as glibc's `expf` does
    /// (`burn_flex::ops::exp_f32::glibc_expf`, so that its loop
    /// vectorises); Flex's formula called the system's `f32::exp`. The same
    /// bits on [`expf_inputs`].
    #[test]
    #[cfg(not(feature = "ndarray"))]
    fn gelu_backwards_exp_is_glibcs_expf_to_the_bit() {
        if !system_expf_is_glibcs_fma_build() {
            return;
        }
        assert_glibc_expf_is_the_systems(&expf_inputs());
    }

    /// burn Flex's `exp` of f32 tensors (softmax's), which
    /// vendor/burn-flex runs as `glibc_expf` in a loop that vectorises where
    /// that is the system's `expf`: the system's `f32::exp` to the bit on
    /// [`expf_inputs`], computed in place (a tensor that owns its memory),
    /// into new memory (a tensor whose memory another shares, after a
    /// NaN-filled buffer of its size was freed, so that an element left
    /// unwritten shows), and from a transposed view. Where `f32::exp` is
    /// not glibc's FMA build, Flex's own loop runs and this checks that.
    #[test]
    #[cfg(not(feature = "ndarray"))]
    fn exp_of_a_tensor_is_the_systems_expf_to_the_bit() {
        use burn::tensor::{Tensor, TensorData};
        let xs = expf_inputs();
        let n = xs.len();
        let want: Vec<f32> = xs.iter().map(|x| x.exp()).collect();
        let dev = Default::default();
        let tensor = || Tensor::<CpuBackend, 1>::from_data(TensorData::new(xs.clone(), [n]), &dev);
        assert_same_bits(
            "exp in place",
            &xs,
            tensor().exp().into_data().to_vec().unwrap(),
            want.clone(),
        );
        let shared = tensor();
        drop(Tensor::<CpuBackend, 1>::full([n], f32::NAN, &dev));
        assert_same_bits(
            "exp into new memory",
            &xs,
            shared.clone().exp().into_data().to_vec().unwrap(),
            want.clone(),
        );
        drop(shared);
        let square = &xs[..1 << 18];
        let read_transposed: Vec<f32> = (0..1 << 18)
            .map(|i| square[(i % 512) * 512 + i / 512])
            .collect();
        let x =
            Tensor::<CpuBackend, 2>::from_data(TensorData::new(square.to_vec(), [512, 512]), &dev);
        assert_same_bits(
            "exp of a transposed view",
            &read_transposed,
            x.transpose().exp().into_data().to_vec().unwrap(),
            read_transposed.iter().map(|x| x.exp()).collect(),
        );
    }

    /// burn Flex's fused softmax (the one a forward pass without autodiff
    /// runs: the teacher's, evaluations), whose `exp` vendor/burn-flex runs
    /// as `glibc_expf` in a loop that vectorises where that is the system's
    /// `expf`: to the bit Flex's three passes as they were (the row's
    /// maximum, `exp(x - max)` summed in order, each times 1 / sum), on rows
    /// of attention's and DINO's lengths and odd ones, more rows than one
    /// of Flex's parallel tasks takes, values over ±40 and some -∞.
    #[test]
    #[cfg(not(feature = "ndarray"))]
    fn softmax_is_flexs_three_passes_to_the_bit() {
        use burn::tensor::{Tensor, TensorData, activation::softmax};
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut draw = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 80.0 - 40.0
        };
        for (rows, len) in [(200, 17), (70, 1024), (9, 5), (3, 3001)] {
            let mut xs: Vec<f32> = (0..rows * len).map(|_| draw()).collect();
            for i in (0..xs.len()).step_by(7) {
                xs[i] = f32::NEG_INFINITY;
            }
            let mut want = Vec::with_capacity(xs.len());
            for row in xs.chunks(len) {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let e: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
                let inv = 1.0 / e.iter().fold(0.0f32, |s, &e| s + e);
                want.extend(e.iter().map(|&e| e * inv));
            }
            let x = Tensor::<CpuBackend, 2>::from_data(
                TensorData::new(xs.clone(), [rows, len]),
                &Default::default(),
            );
            assert_same_bits(
                &format!("softmax of {rows} rows of {len}"),
                &xs,
                softmax(x, 1).into_data().to_vec().unwrap(),
                want,
            );
        }
    }

    /// The same on every one of the 2^32 f32 bit patterns (seconds):
    /// `cargo test -p sim-train --lib -- --ignored glibc_expf_on_every_f32`.
    #[test]
    #[ignore = "exhaustive; run by hand after touching vendor/burn-flex's glibc_expf"]
    #[cfg(not(feature = "ndarray"))]
    fn glibc_expf_on_every_f32_is_the_systems_to_the_bit() {
        if !system_expf_is_glibcs_fma_build() {
            return;
        }
        use rayon::prelude::*;
        (0..=u32::MAX >> 16).into_par_iter().for_each(|high| {
            let xs: Vec<f32> = (0..=u16::MAX as u32)
                .map(|low| f32::from_bits(high << 16 | low))
                .collect();
            assert_glibc_expf_is_the_systems(&xs);
        });
    }

    /// The same, forward, backward and erf, on every one of the 2^32 f32 bit
    /// patterns (about 5 minutes on 2 cores in the test profile; vendor/README.md):
    /// `cargo test -p sim-train --lib -- --ignored gelu_on_every_f32`.
    #[test]
    #[ignore = "exhaustive: minutes; run by hand after touching vendor/burn-flex's GELU"]
    #[cfg(not(feature = "ndarray"))]
    fn gelu_on_every_f32_is_libms_formula_to_the_bit() {
        use burn::tensor::ops::ActivationOps;
        use burn::tensor::{Tensor, TensorData, TensorPrimitive, activation::gelu};
        const BLOCK: u64 = 1 << 24;
        let gs = upstream(BLOCK as usize);
        for block in 0..(1u64 << 32) / BLOCK {
            let xs: Vec<f32> = (block * BLOCK..(block + 1) * BLOCK)
                .map(|bits| f32::from_bits(bits as u32))
                .collect();
            let tensor = |v: &[f32]| {
                Tensor::<CpuBackend, 1>::from_data(
                    TensorData::new(v.to_vec(), [v.len()]),
                    &Default::default(),
                )
            };
            assert_same_bits(
                "gelu forward",
                &xs,
                gelu(tensor(&xs)).into_data().to_vec().unwrap(),
                xs.iter().map(|&x| gelu_reference(x)).collect(),
            );
            assert_same_bits(
                "erf",
                &xs,
                tensor(&xs).erf().into_data().to_vec().unwrap(),
                xs.iter().map(|&x| libm::erff(x)).collect(),
            );
            let backward = CpuBackend::gelu_backward(
                tensor(&xs).into_primitive().tensor(),
                tensor(&gs).into_primitive().tensor(),
            );
            assert_same_bits(
                "gelu backward",
                &xs,
                Tensor::<CpuBackend, 1>::from_primitive(TensorPrimitive::Float(backward))
                    .into_data()
                    .to_vec()
                    .unwrap(),
                xs.iter()
                    .zip(&gs)
                    .map(|(&x, &g)| gelu_backward_reference(x, g))
                    .collect(),
            );
        }
    }
}

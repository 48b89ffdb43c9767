//! OpenBLAS, loaded at run time where the machine has it: the matrix
//! products of CKA and k-NN then run on its kernels (AVX-512 where the CPU
//! has it). On this project's machine kind a single CKA pair (f32 blocks
//! there, f64 on the `gemm` crate) runs about three times as fast, k-NN
//! about as fast (BENCHMARKS.md). Without it everything runs as before, on
//! the `gemm` crate. Debian / Ubuntu: `apt install libopenblas0-pthread` (what
//! `.ci/run` installs); elsewhere any `libopenblas.so.0` the loader finds.
//!
//! `SIM_BLAS=off` turns it off; `SIM_BLAS=<file>` loads that library instead
//! (any CBLAS with `cblas_sgemm`, `cblas_dgemm`, `cblas_ssyrk`, `cblas_dsyrk`).
//! Loading at run time (rather than linking) keeps one build for every
//! machine: the binaries start without the library and the tests run both ways.

use std::ffi::c_int;
use std::sync::OnceLock;

/// CBLAS's enum values.
const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
const UPPER: c_int = 121;

type Gemm<T> = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    T,
    *const T,
    c_int,
    *const T,
    c_int,
    T,
    *mut T,
    c_int,
);
type Syrk<T> =
    unsafe extern "C" fn(c_int, c_int, c_int, c_int, c_int, T, *const T, c_int, T, *mut T, c_int);

/// The loaded library's entry points.
pub struct Blas {
    /// Kept loaded for the function pointers below.
    _library: libloading::Library,
    /// The file it was loaded from.
    pub name: String,
    sgemm: Gemm<f32>,
    dgemm: Gemm<f64>,
    ssyrk: Syrk<f32>,
    dsyrk: Syrk<f64>,
}

/// The library `SIM_BLAS` asks for, loaded on first use: `None` where it
/// is not there or turned off; an error naming the variable and the file
/// where `SIM_BLAS` names a library that does not load. The binaries call
/// it first, so that such a setting stops them before any work.
pub fn load_from_env() -> Result<Option<&'static Blas>, &'static str> {
    static BLAS: OnceLock<Result<Option<Blas>, String>> = OnceLock::new();
    let loaded = BLAS.get_or_init(|| {
        let wanted = std::env::var("SIM_BLAS").ok();
        match wanted.as_deref() {
            Some("off") => Ok(None),
            Some(file) => Blas::load(file)
                .map(Some)
                .map_err(|e| format!("SIM_BLAS={file}: {e}")),
            None => Ok(Blas::load("libopenblas.so.0").ok()),
        }
    });
    loaded.as_ref().map(Option::as_ref).map_err(String::as_str)
}

/// The library, loaded on first use (`None`: not there, or turned off).
/// Panics where `SIM_BLAS` names a library that does not load (reported
/// as an error by the binaries, [`load_from_env`]).
pub fn blas() -> Option<&'static Blas> {
    load_from_env().unwrap_or_else(|e| panic!("{e}"))
}

impl Blas {
    fn load(file: &str) -> Result<Blas, String> {
        // Safety: a CBLAS library's initialisers have no preconditions, and
        // the symbols below have the CBLAS signatures they are read as.
        unsafe {
            let library = libloading::Library::new(file).map_err(|e| e.to_string())?;
            let symbol = |name: &str| -> Result<*const (), String> {
                library
                    .get::<*const ()>(name.as_bytes())
                    .map(|s| *s)
                    .map_err(|e| format!("no {name}: {e}"))
            };
            let (s, d, ss, ds) = (
                symbol("cblas_sgemm")?,
                symbol("cblas_dgemm")?,
                symbol("cblas_ssyrk")?,
                symbol("cblas_dsyrk")?,
            );
            // OpenBLAS's own threads: as many as rayon's, so RAYON_NUM_THREADS
            // (a sweep's share of the cores) bounds both.
            if let Ok(set) = library.get::<unsafe extern "C" fn(c_int)>(b"openblas_set_num_threads")
            {
                set(rayon::current_num_threads() as c_int);
            }
            Ok(Blas {
                sgemm: std::mem::transmute::<*const (), Gemm<f32>>(s),
                dgemm: std::mem::transmute::<*const (), Gemm<f64>>(d),
                ssyrk: std::mem::transmute::<*const (), Syrk<f32>>(ss),
                dsyrk: std::mem::transmute::<*const (), Syrk<f64>>(ds),
                _library: library,
                name: file.to_owned(),
            })
        }
    }
}

/// The element types the library multiplies.
pub trait BlasFloat: Copy {
    /// `c (m × n, row-major) = a · b + beta·c` where `a` is m × k (`a_t`:
    /// stored k × m) and `b` is k × n (`b_t`: stored n × k), all row-major
    /// and contiguous.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        blas: &Blas,
        a_t: bool,
        b_t: bool,
        m: usize,
        n: usize,
        k: usize,
        a: &[Self],
        b: &[Self],
        beta: Self,
        c: &mut [Self],
    );
    /// The upper triangle of `c (n × n) = aᵀa + beta·c`, `a` row-major k × n.
    fn syrk_t(blas: &Blas, n: usize, k: usize, a: &[Self], beta: Self, c: &mut [Self]);
}

fn int(v: usize) -> c_int {
    c_int::try_from(v).expect("a matrix dimension beyond CBLAS's 32-bit integers")
}

macro_rules! blas_float {
    ($t:ty, $gemm:ident, $syrk:ident) => {
        impl BlasFloat for $t {
            fn gemm(
                blas: &Blas,
                a_t: bool,
                b_t: bool,
                m: usize,
                n: usize,
                k: usize,
                a: &[$t],
                b: &[$t],
                beta: $t,
                c: &mut [$t],
            ) {
                assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
                if m == 0 || n == 0 {
                    return;
                }
                let (lda, ldb) = (if a_t { m } else { k }, if b_t { k } else { n });
                let trans = |t: bool| if t { TRANS } else { NO_TRANS };
                // Safety: the asserts above keep every access inside the slices.
                unsafe {
                    (blas.$gemm)(
                        ROW_MAJOR,
                        trans(a_t),
                        trans(b_t),
                        int(m),
                        int(n),
                        int(k),
                        1.0,
                        a.as_ptr(),
                        int(lda.max(1)),
                        b.as_ptr(),
                        int(ldb.max(1)),
                        beta,
                        c.as_mut_ptr(),
                        int(n),
                    );
                }
            }

            fn syrk_t(blas: &Blas, n: usize, k: usize, a: &[$t], beta: $t, c: &mut [$t]) {
                assert!(a.len() >= n * k && c.len() >= n * n);
                if n == 0 {
                    return;
                }
                // Safety: as above.
                unsafe {
                    (blas.$syrk)(
                        ROW_MAJOR,
                        UPPER,
                        TRANS,
                        int(n),
                        int(k),
                        1.0,
                        a.as_ptr(),
                        int(n),
                        beta,
                        c.as_mut_ptr(),
                        int(n),
                    );
                }
            }
        }
    };
}

blas_float!(f32, sgemm, ssyrk);
blas_float!(f64, dgemm, dsyrk);

//! Names the sources this build was made from: `SIM_TRAIN_SOURCES`, a hash
//! (FNV-1a, 64 bits, stable across compilers) of every file under `src/`,
//! of the workspace's patched dependencies (`vendor/`) and of its
//! `Cargo.lock` (the versions of the others), paths and contents in path
//! order. A pre-training records it, so a pre-trained backbone reused by a
//! later build says whether other code made it (`sim_train::pretrain`):
//! a dependency sums differently too (the patch to gemm-common changed
//! `vit-sup`'s pre-training on some CPUs without a line of `src/` changing).

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let unreadable = |e: std::io::Error| -> ! { panic!("{}: cannot be read: {e}", dir.display()) };
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| unreadable(e)) {
        let path = entry.unwrap_or_else(|e| unreadable(e)).path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let inputs = ["src", "../../vendor", "../../Cargo.lock"];
    let mut all = Vec::new();
    for input in inputs {
        println!("cargo:rerun-if-changed={input}");
        let path = Path::new(input);
        if path.is_dir() {
            files(path, &mut all);
        } else {
            all.push(path.to_path_buf());
        }
    }
    all.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in &all {
        let name = path.to_string_lossy().replace('\\', "/");
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{}: cannot be read: {e}", path.display()));
        for b in name.bytes().chain([0]).chain(bytes) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=SIM_TRAIN_SOURCES={hash:016x}");
}

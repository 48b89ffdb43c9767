//! Names the sources this build was made from: `SIM_TRAIN_SOURCES`, a hash
//! (FNV-1a, 64 bits, stable across compilers) of every file under `src/`,
//! paths and contents in path order. A pre-training records it, so a
//! pre-trained backbone reused by a later build says whether other code
//! made it (`sim_train::pretrain`).

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("src/ is readable").path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=src");
    let mut all = Vec::new();
    files(Path::new("src"), &mut all);
    all.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in &all {
        let name = path.to_string_lossy().replace('\\', "/");
        let bytes = std::fs::read(path).expect("a source file is readable");
        for b in name.bytes().chain([0]).chain(bytes) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=SIM_TRAIN_SOURCES={hash:016x}");
}

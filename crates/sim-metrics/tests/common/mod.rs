//! Helpers shared by the integration tests.

use std::path::Path;

/// Writes a C-ordered `.npy` (format 1.0) by hand: `descr` as NumPy names
/// the dtype (`<f8`, `<i8`), `shape` as its header says it (`(500, 7)`),
/// `data` the bytes after the header (fewer than the shape asks for, to
/// stand for a truncated file).
pub fn write_npy_bytes(path: &Path, descr: &str, shape: &str, data: &[u8]) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

//! Reading tensors out of safetensors files: checkpoints (sim-train) and
//! evaluation dumps or users' arrays (sim-metrics) share this decoder.

use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// A tensor's values: floats widened to f64, integers to i64.
pub enum Values {
    Float(Vec<f64>),
    Int(Vec<i64>),
}

/// The values of a tensor (little-endian, as the format stores them).
pub fn decode(view: &TensorView<'_>) -> Result<(Vec<usize>, Values), String> {
    let raw = view.data();
    let shape = view.shape().to_vec();
    let chunks = |w: usize| raw.chunks_exact(w);
    let values = match view.dtype() {
        Dtype::F64 => Values::Float(chunks(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()),
        Dtype::F32 => Values::Float(chunks(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64).collect()),
        Dtype::F16 => Values::Float(chunks(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64()).collect()),
        Dtype::BF16 => Values::Float(chunks(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64()).collect()),
        Dtype::I64 => Values::Int(chunks(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()),
        Dtype::I32 => Values::Int(chunks(4).map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64).collect()),
        other => return Err(format!("dtype {other:?} is not a float or integer type this tool reads")),
    };
    Ok((shape, values))
}

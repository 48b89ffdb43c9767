//! Tensors in safetensors files: checkpoints (sim-train), evaluation files
//! (written by sim-train, read by sim-metrics) and users' arrays share this
//! decoder and this writer.

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
        Dtype::F64 => Values::Float(
            chunks(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        Dtype::F32 => Values::Float(
            chunks(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64)
                .collect(),
        ),
        Dtype::F16 => Values::Float(
            chunks(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
                .collect(),
        ),
        Dtype::BF16 => Values::Float(
            chunks(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64())
                .collect(),
        ),
        Dtype::I64 => Values::Int(
            chunks(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        Dtype::I32 => Values::Int(
            chunks(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64)
                .collect(),
        ),
        Dtype::U8 => Values::Int(raw.iter().map(|&b| b as i64).collect()),
        other => {
            return Err(format!(
                "dtype {other:?} is not a float or integer type this tool reads"
            ));
        }
    };
    Ok((shape, values))
}

/// A tensor ready to be written: name, dtype, shape, little-endian bytes.
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl RawTensor {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> RawTensor {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        RawTensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            bytes,
        }
    }

    /// Stored as f16 (features: half the disk, ample precision for CKA).
    pub fn f16(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> RawTensor {
        let bytes = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        RawTensor {
            name: name.into(),
            dtype: Dtype::F16,
            shape,
            bytes,
        }
    }

    pub fn i64(name: impl Into<String>, values: &[i64]) -> RawTensor {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        RawTensor {
            name: name.into(),
            dtype: Dtype::I64,
            shape: vec![values.len()],
            bytes,
        }
    }

    pub fn u8(name: impl Into<String>, shape: Vec<usize>, values: Vec<u8>) -> RawTensor {
        RawTensor {
            name: name.into(),
            dtype: Dtype::U8,
            shape,
            bytes: values,
        }
    }
}

/// Writes tensors (and string metadata) as a safetensors file, atomically.
pub fn write_safetensors(
    path: &std::path::Path,
    tensors: Vec<RawTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> std::io::Result<()> {
    let invalid = |e: safetensors::SafeTensorError| {
        std::io::Error::other(format!("writing {}: {e}", path.display()))
    };
    let views = tensors
        .iter()
        .map(|t| TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map(|v| (t.name.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let bytes = safetensors::serialize(views, metadata).map_err(invalid)?;
    crate::write_atomic(path, &bytes)
}

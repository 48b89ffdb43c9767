//! Arrays from other frameworks: `.npy` files (f16, f32, f64 features; integer
//! labels) and tensors inside `.safetensors` files, named `FILE:tensor_name`.

use crate::MetricError;
pub(crate) use sim_study::tensors::Values;
use std::path::Path;

/// A 2-D float array as f64, row-major, with the name it was loaded under.
#[derive(Debug, Clone)]
pub struct FloatArray {
    pub name: String,
    pub data: Vec<f64>,
    pub rows: usize,
    pub cols: usize,
}

impl FloatArray {
    pub fn view(&self) -> crate::MatRef<'_, f64> {
        crate::MatRef {
            data: &self.data,
            rows: self.rows,
            cols: self.cols,
            name: &self.name,
        }
    }
}

/// Loads a matrix (samples × features); a 1-D array is one feature per sample.
pub fn load_matrix(spec: &str) -> Result<FloatArray, MetricError> {
    let (shape, values) = load(spec)?;
    to_matrix(spec, shape, values)
}

pub(crate) fn to_matrix(
    spec: &str,
    shape: Vec<usize>,
    values: Values,
) -> Result<FloatArray, MetricError> {
    let data = match values {
        Values::Float(v) => v,
        Values::Int(_) => {
            return Err(MetricError::input(
                spec,
                "holds integers; features must be floating point",
            ));
        }
    };
    let (rows, cols) = matrix_shape(spec, &shape)?;
    Ok(FloatArray {
        name: spec.to_owned(),
        data,
        rows,
        cols,
    })
}

/// Samples × features of an array's shape; a 1-D array is one feature per sample.
pub(crate) fn matrix_shape(spec: &str, shape: &[usize]) -> Result<(usize, usize), MetricError> {
    match *shape {
        [n] => Ok((n, 1)),
        [n, d] => Ok((n, d)),
        _ => Err(MetricError::input(
            spec,
            format!("shape {shape:?}: expected samples × features"),
        )),
    }
}

/// Loads integer class labels (a 1-D array, or N × 1).
pub fn load_labels(spec: &str) -> Result<Vec<i64>, MetricError> {
    let (shape, values) = load(spec)?;
    to_labels(spec, shape, values)
}

pub(crate) fn to_labels(
    spec: &str,
    shape: Vec<usize>,
    values: Values,
) -> Result<Vec<i64>, MetricError> {
    if !(shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)) {
        return Err(MetricError::input(
            spec,
            format!("shape {shape:?}: labels must be 1-D"),
        ));
    }
    match values {
        Values::Int(v) => Ok(v),
        Values::Float(_) => Err(MetricError::input(
            spec,
            "holds floats; labels must be integers",
        )),
    }
}

fn load(spec: &str) -> Result<(Vec<usize>, Values), MetricError> {
    match spec.rsplit_once(':') {
        Some((file, tensor)) if file.ends_with(".safetensors") => {
            load_safetensors(spec, Path::new(file), tensor)
        }
        _ => load_npy(spec, Path::new(spec)),
    }
}

fn load_npy(spec: &str, path: &Path) -> Result<(Vec<usize>, Values), MetricError> {
    let bytes = std::fs::read(path).map_err(|e| MetricError::input(spec, e.to_string()))?;
    let mut cursor = std::io::Cursor::new(&bytes[..]);
    let header = npyz::NpyHeader::from_reader(&mut cursor)
        .map_err(|e| MetricError::input(spec, format!("not a .npy file: {e}")))?;
    // The header's shape against the bytes after it, before any is read.
    if let Some(size) = header.dtype().num_bytes() {
        let (held, claimed) = (
            (bytes.len() as u64 - cursor.position()) / size.max(1) as u64,
            header.len(),
        );
        if held < claimed {
            return Err(MetricError::input(
                spec,
                format!(
                    "truncated: its header says {:?} ({claimed} values), the file holds {held}",
                    header.shape()
                ),
            ));
        }
    }
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| MetricError::input(spec, format!("not a .npy file: {e}")))?;
    if npy.order() == npyz::Order::Fortran {
        return Err(MetricError::input(
            spec,
            "Fortran-ordered array; save it C-contiguous (np.ascontiguousarray)",
        ));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let dtype = npy.dtype().descr();
    let bad = |e: std::io::Error| MetricError::input(spec, e.to_string());
    macro_rules! try_as {
        ($npy:expr, $t:ty, $wrap:expr) => {
            match $npy.try_data::<$t>() {
                Ok(d) => {
                    return Ok((
                        shape,
                        $wrap(d.collect::<Result<Vec<$t>, _>>().map_err(bad)?),
                    ))
                }
                Err(npy) => npy,
            }
        };
    }
    let npy = try_as!(npy, f64, Values::Float);
    let npy = try_as!(npy, f32, |v: Vec<f32>| Values::Float(
        v.into_iter().map(f64::from).collect()
    ));
    let npy = try_as!(npy, half::f16, |v: Vec<half::f16>| Values::Float(
        v.into_iter().map(f64::from).collect()
    ));
    let npy = try_as!(npy, i64, Values::Int);
    let npy = try_as!(npy, i32, |v: Vec<i32>| Values::Int(
        v.into_iter().map(i64::from).collect()
    ));
    let npy = try_as!(npy, u8, |v: Vec<u8>| Values::Int(
        v.into_iter().map(i64::from).collect()
    ));
    let _ = npy;
    Err(MetricError::input(
        spec,
        format!("dtype {dtype} is not one of f16, f32, f64, i64, i32, u8"),
    ))
}

fn load_safetensors(
    spec: &str,
    path: &Path,
    tensor: &str,
) -> Result<(Vec<usize>, Values), MetricError> {
    let bytes = std::fs::read(path).map_err(|e| MetricError::input(spec, e.to_string()))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| MetricError::input(spec, format!("not a safetensors file: {e}")))?;
    let view = file.tensor(tensor).map_err(|_| {
        let mut names: Vec<_> = file.names().into_iter().map(String::from).collect();
        names.sort();
        MetricError::input(
            spec,
            format!("no tensor `{tensor}` (tensors: {})", names.join(", ")),
        )
    })?;
    sim_study::tensors::decode(&view).map_err(|m| MetricError::input(spec, m))
}

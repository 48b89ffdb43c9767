//! How a study table's rows become a Parquet file and come back. Each table
//! is one row type ([`super::rows`]) declared with `table!`: its fields are
//! the table's columns in order, each named by a [`super::col`] constant and
//! typed by its field's type ([`Cell`]), or a field that spreads over
//! several columns ([`Spread`]): a group of columns two tables share
//! (declared with `columns!`) or columns the data decides. The writer (`sim-metrics study`)
//! makes rows and [`write`]s them; the figures [`read`] them and the
//! figures' test fixture writes its rows through the same code, so a column
//! is one field plus its computation.
//!
//! Reading checks every column: a null in a column of a non-`Option` type,
//! or a NaN or infinite value in a non-`Option` number, is an error naming
//! the file, the column and the row; in an `Option<f64>` such a value reads
//! as `None`, so that no figure or sentence shows `NaN`. A missing column is
//! an error that says the tables were made by an earlier version.

use polars::prelude::*;
use std::path::{Path, PathBuf};

/// A table: its file in `tables/` and how its rows are its columns.
pub trait Table: Sized {
    /// Its file name ([`super::file`]).
    const FILE: &'static str;
    /// Its columns in order, from `rows` (the `knn_top1_k<k>` columns from `shape`).
    fn frame(rows: &[Self], shape: &Shape) -> PolarsResult<DataFrame>;
    /// Its rows, from a frame of its columns.
    fn rows(frame: &DataFrame) -> Result<Vec<Self>, String>;
}

/// What decides a table's wide columns: the k of each `knn_top1_k<k>`
/// (`evaluation.knn_k`), in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    pub knn_k: Vec<usize>,
}

/// A table file that could not be read, or rows that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct TableFileError {
    pub path: PathBuf,
    pub message: String,
}

/// Writes `rows` as the Parquet table `path`, atomically.
pub fn write<T: Table>(path: &Path, rows: &[T], shape: &Shape) -> Result<(), TableFileError> {
    let fail = |message: String| TableFileError {
        path: path.to_owned(),
        message,
    };
    let mut frame = T::frame(rows, shape).map_err(|e| fail(e.to_string()))?;
    write_frame(path, &mut frame).map_err(|e| fail(e.to_string()))
}

/// Writes a frame as Parquet, atomically (the tables' one way to write).
pub fn write_frame(path: &Path, frame: &mut DataFrame) -> std::io::Result<()> {
    frame.rechunk_mut();
    crate::write_atomic_with(path, |w| {
        ParquetWriter::new(w)
            .finish(frame)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
}

/// The rows of the Parquet table `path`.
pub fn read<T: Table>(path: &Path) -> Result<Vec<T>, TableFileError> {
    let fail = |message: String| TableFileError {
        path: path.to_owned(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let frame = ParquetReader::new(file)
        .finish()
        .map_err(|e| fail(e.to_string()))?;
    T::rows(&frame).map_err(fail)
}

/// The column `name` of `frame`, or the error that says the table is older
/// than its schema.
pub fn column<'f>(frame: &'f DataFrame, name: &str) -> Result<&'f Column, String> {
    frame.column(name).map_err(|_| {
        format!(
            "no column `{name}`: the tables were made by an earlier version; make them \
                again (`sim-metrics study`)"
        )
    })
}

/// A column's value type.
pub trait Cell: Sized + Clone {
    /// The column `name` holding `values`, one per row.
    fn column(name: &str, values: Vec<Self>) -> Column;
    /// The values of `column`.
    fn read(column: &Column) -> Result<Vec<Self>, String>;
}

/// Reads a column's values, `value` giving row i's (maybe null) value and
/// `cell` turning it into the cell or the reason it cannot be one.
fn cells<V, T>(
    column: &Column,
    value: impl Fn(usize) -> Option<V>,
    cell: impl Fn(Option<V>) -> Result<T, &'static str>,
) -> Result<Vec<T>, String> {
    (0..column.len())
        .map(|i| {
            cell(value(i)).map_err(|why| format!("column `{}`: {why} at row {i}", column.name()))
        })
        .collect()
}

/// The column as polars' array of one type, or the error naming the column.
fn typed<'c, T>(
    column: &'c Column,
    as_type: impl FnOnce(&'c Series) -> PolarsResult<&'c T>,
) -> Result<&'c T, String> {
    as_type(column.as_materialized_series()).map_err(|e| format!("column `{}`: {e}", column.name()))
}

fn required<V>(v: Option<V>) -> Result<V, &'static str> {
    v.ok_or("null")
}

/// A cell type read from polars' `$as` arrays, `$get` turning row i's
/// maybe-null value into the cell (or the reason it cannot be one).
macro_rules! cell {
    ($t:ty, $as:ident, |$v:ident| $get:expr) => {
        impl Cell for $t {
            fn column(name: &str, values: Vec<Self>) -> Column {
                Column::from(Series::new(name.into(), values))
            }
            fn read(column: &Column) -> Result<Vec<Self>, String> {
                let values = typed(column, |s| s.$as())?;
                cells(column, |i| values.get(i), |$v| $get)
            }
        }
    };
}

cell!(u32, u32, |v| required(v));
cell!(Option<u32>, u32, |v| Ok(v));
cell!(u64, u64, |v| required(v));
cell!(Option<u64>, u64, |v| Ok(v));
cell!(bool, bool, |v| required(v));
cell!(Option<bool>, bool, |v| Ok(v));
cell!(f64, f64, |v| match v {
    Some(x) if x.is_finite() => Ok(x),
    Some(_) => Err("not a finite number"),
    None => Err("null"),
});
cell!(Option<f64>, f64, |v| Ok(v.filter(|v| v.is_finite())));
cell!(String, str, |v| required(v).map(str::to_owned));
cell!(Option<String>, str, |v| Ok(v.map(str::to_owned)));

impl Cell for Vec<u8> {
    /// A binary column (as `&[u8]` values: a `Vec<Vec<u8>>` would be a list).
    fn column(name: &str, values: Vec<Self>) -> Column {
        let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        Column::from(Series::new(name.into(), slices))
    }
    fn read(column: &Column) -> Result<Vec<Self>, String> {
        let values = typed(column, |s| s.binary())?;
        cells(
            column,
            |i| values.get(i),
            |v| required(v).map(<[u8]>::to_vec),
        )
    }
}

/// A field of a row: its columns, from every row's value, and back.
pub trait Field: Sized {
    /// What names its columns: a [`Cell`]'s column name, or [`Spread`].
    type Name;
    /// Its columns, from `values` (one per row).
    fn columns(name: Self::Name, values: Vec<&Self>, shape: &Shape) -> Vec<Column>;
    /// Its values, one per row, from the frame's columns.
    fn read(name: Self::Name, frame: &DataFrame) -> Result<Vec<Self>, String>;
}

/// One column, named by the field's declaration.
impl<T: Cell> Field for T {
    type Name = &'static str;
    fn columns(name: &'static str, values: Vec<&Self>, _: &Shape) -> Vec<Column> {
        vec![T::column(name, values.into_iter().cloned().collect())]
    }
    fn read(name: &'static str, frame: &DataFrame) -> Result<Vec<Self>, String> {
        T::read(column(frame, name)?)
    }
}

/// The "name" of a field over several columns that its type names itself:
/// a group of columns (`columns!`), `knn_top1_k<k>` per k, a Table 1
/// metric's mean, std and interval.
#[derive(Debug, Clone, Copy)]
pub struct Spread;

/// Declares a struct whose fields are columns in order (each `name: Type =
/// col::NAME`, or `= Spread` for a [`Field`] over several), itself a
/// [`Field`] over all of them: a group of columns tables share.
macro_rules! columns {
    (
        $(#[$meta:meta])*
        pub struct $row:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $name:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $row {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::tables::schema::Field for $row {
            type Name = $crate::tables::schema::Spread;

            fn columns(
                _: $crate::tables::schema::Spread,
                rows: Vec<&Self>,
                #[allow(unused_variables)] shape: &$crate::tables::schema::Shape,
            ) -> Vec<polars::prelude::Column> {
                #[allow(unused_mut)]
                let mut columns = Vec::new();
                $(
                    columns.extend(<$ty as $crate::tables::schema::Field>::columns(
                        $name,
                        rows.iter().map(|r| &r.$field).collect(),
                        shape,
                    ));
                )*
                columns
            }

            fn read(
                _: $crate::tables::schema::Spread,
                frame: &polars::prelude::DataFrame,
            ) -> Result<Vec<Self>, String> {
                $(
                    let mut $field =
                        <$ty as $crate::tables::schema::Field>::read($name, frame)?.into_iter();
                )*
                // Every column has the frame's height.
                Ok((0..frame.height())
                    .map_while(|_| {
                        Some($row {
                            $( $field: $field.next()?, )*
                        })
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use columns;

/// Declares a table's row type: its fields in column order, as `columns!`
/// does, and the file it is written to.
macro_rules! table {
    (
        $(#[$meta:meta])*
        pub struct $row:ident in $file:path { $($fields:tt)* }
    ) => {
        $crate::tables::schema::columns! {
            $(#[$meta])*
            pub struct $row { $($fields)* }
        }

        impl $crate::tables::schema::Table for $row {
            const FILE: &'static str = $file;

            fn frame(
                rows: &[Self],
                shape: &$crate::tables::schema::Shape,
            ) -> polars::prelude::PolarsResult<polars::prelude::DataFrame> {
                let columns = <Self as $crate::tables::schema::Field>::columns(
                    $crate::tables::schema::Spread,
                    rows.iter().collect(),
                    shape,
                );
                polars::prelude::DataFrame::new_infer_height(columns)
            }

            fn rows(frame: &polars::prelude::DataFrame) -> Result<Vec<Self>, String> {
                <Self as $crate::tables::schema::Field>::read($crate::tables::schema::Spread, frame)
            }
        }
    };
}
pub(crate) use table;

#[cfg(test)]
mod tests {
    use super::super::col;
    use super::super::rows::{EpochRow, Kept, KnnByK, SpaceRow, TestScores};
    use super::*;

    fn epoch(seed: u64, knn: Option<f64>) -> EpochRow {
        EpochRow {
            dataset: "ham10000".into(),
            method: "full".into(),
            backbone: "vit".into(),
            seed,
            epoch: 1,
            status: col::STATUS_FINISHED.into(),
            head: col::HEAD_FINE_TUNED.into(),
            scores: TestScores {
                accuracy: 0.5,
                balanced_accuracy: 0.25,
                macro_f1: 0.2,
                auroc: knn.map(|k| k + 0.1),
                ece: 0.1,
                mce: 0.3,
                adaptive_ece: 0.1,
            },
            nll: 1.2,
            brier: 0.6,
            temperature: knn.map(|_| 1.7),
            ece_scaled: knn.map(|_| 0.05),
            mce_scaled: None,
            nll_scaled: knn.map(|_| 1.1),
            brier_scaled: knn.map(|_| 0.55),
            kept: Kept {
                similarity: 0.9,
                knn_top1: knn,
                knn_top1_k: KnnByK(vec![(10, knn), (20, None)]),
            },
        }
    }

    #[test]
    fn rows_written_read_back_equal_their_columns_in_declared_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epochs.parquet");
        let rows = vec![epoch(0, Some(0.4)), epoch(1, None)];
        let shape = Shape {
            knn_k: vec![10, 20],
        };
        write(&path, &rows, &shape).unwrap();
        assert_eq!(read::<EpochRow>(&path).unwrap(), rows);
        let frame = EpochRow::frame(&rows, &shape).unwrap();
        let names: Vec<&str> = frame.columns().iter().map(|c| c.name().as_str()).collect();
        // The groups (`TestScores`, `Kept`) spread where they are declared.
        #[rustfmt::skip]
        let expected = [
            "dataset", "method", "backbone", "seed", "epoch", "status", "head",
            "accuracy", "balanced_accuracy", "macro_f1", "auroc", "ece", "mce", "adaptive_ece",
            "nll", "brier", "temperature", "ece_scaled", "mce_scaled", "nll_scaled",
            "brier_scaled", "similarity", "knn_top1", "knn_top1_k10", "knn_top1_k20",
        ];
        assert_eq!(names, expected);
        // No rows: the columns are there all the same.
        write(&path, &[] as &[EpochRow], &shape).unwrap();
        assert!(read::<EpochRow>(&path).unwrap().is_empty());
    }

    #[test]
    fn a_missing_column_or_a_nan_where_a_number_must_be_names_the_file_column_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("space.parquet");
        let row = SpaceRow {
            dataset: "d".into(),
            method: "m".into(),
            backbone: "b".into(),
            seed: 0,
            similarity: f64::NAN,
            similarity_ci_low: Some(f64::NAN),
            similarity_ci_high: None,
            accuracy: 0.5,
            divergence: 0.0,
            reference_seed: 0,
            in_space: true,
        };
        write(&path, std::slice::from_ref(&row), &Shape::default()).unwrap();
        let msg = read::<SpaceRow>(&path).unwrap_err().to_string();
        assert!(
            msg.contains("space.parquet")
                && msg.contains("`similarity`: not a finite number at row 0"),
            "{msg}"
        );
        let mut frame = SpaceRow::frame(
            &[SpaceRow {
                similarity: 0.5,
                ..row
            }],
            &Shape::default(),
        )
        .unwrap();
        let read_back = SpaceRow::rows(&frame).unwrap();
        assert_eq!(
            read_back[0].similarity_ci_low, None,
            "NaN in an Option reads as none"
        );
        let _ = frame.drop_in_place(col::IN_SPACE).unwrap();
        let msg = SpaceRow::rows(&frame).unwrap_err();
        assert!(
            msg.contains("no column `in_space`") && msg.contains("earlier version"),
            "{msg}"
        );
    }
}

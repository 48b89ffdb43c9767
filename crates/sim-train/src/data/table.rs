//! A CSV label table read by column name, with line numbers for errors.

use super::DataError;
use std::path::{Path, PathBuf};

pub struct CsvTable {
    path: PathBuf,
    headers: csv::StringRecord,
    reader: csv::Reader<std::fs::File>,
}

/// One data row and its line in the file (the header is line 1).
pub struct Row {
    pub line: usize,
    pub record: csv::StringRecord,
}

impl CsvTable {
    pub fn open(path: &Path) -> Result<CsvTable, DataError> {
        let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file);
        let headers = reader.headers().map_err(|e| DataError::file(path, e.to_string()))?.clone();
        Ok(CsvTable { path: path.to_owned(), headers, reader })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of a required column.
    pub fn column(&self, name: &str) -> Result<usize, DataError> {
        self.headers.iter().position(|h| h == name).ok_or_else(|| {
            let found: Vec<_> = self.headers.iter().collect();
            DataError::file(&self.path, format!("no column `{name}` (columns: {})", found.join(", ")))
        })
    }

    /// Data rows in file order; a malformed row is an error naming its line.
    pub fn rows(&mut self) -> impl Iterator<Item = Result<Row, DataError>> + '_ {
        let path = self.path.clone();
        self.reader.records().map(move |r| {
            r.map(|record| Row { line: record.position().map_or(0, |p| p.line() as usize), record })
                .map_err(|e| {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    DataError::row(&path, line, e.to_string())
                })
        })
    }
}

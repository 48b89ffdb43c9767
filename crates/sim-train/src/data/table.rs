//! A CSV label table read by column name, with line numbers for errors.

use super::DataError;
use std::path::{Path, PathBuf};

pub struct CsvTable {
    path: PathBuf,
    headers: csv::StringRecord,
    /// Where each line starts: the csv crate counts a CRLF file's lines one
    /// short (it records a record's start at the line break before it), so
    /// lines are counted here from byte offsets.
    line_starts: Vec<u64>,
    bytes: Vec<u8>,
    reader: csv::Reader<std::io::Cursor<Vec<u8>>>,
}

/// One data row and its line in the file (the header is line 1).
pub struct Row {
    pub line: usize,
    pub record: csv::StringRecord,
}

impl CsvTable {
    pub fn open(path: &Path) -> Result<CsvTable, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let line_starts = std::iter::once(0)
            .chain(
                bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i as u64 + 1),
            )
            .collect();
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(std::io::Cursor::new(bytes.clone()));
        let headers = reader
            .headers()
            .map_err(|e| DataError::file(path, e.to_string()))?
            .clone();
        Ok(CsvTable {
            path: path.to_owned(),
            headers,
            line_starts,
            bytes,
            reader,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of a required column.
    pub fn column(&self, name: &str) -> Result<usize, DataError> {
        self.headers.iter().position(|h| h == name).ok_or_else(|| {
            let found: Vec<_> = self.headers.iter().collect();
            DataError::file(
                &self.path,
                format!("no column `{name}` (columns: {})", found.join(", ")),
            )
        })
    }

    /// Index of a column that files written before it existed lack.
    pub fn optional_column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// Data rows in file order; a malformed row is an error naming its line.
    pub fn rows(&mut self) -> impl Iterator<Item = Result<Row, DataError>> + '_ {
        let path = self.path.clone();
        let (starts, bytes) = (&self.line_starts, &self.bytes);
        // A record's position can point at the line breaks before it (CRLF
        // files, empty lines): its line is that of its first other byte.
        let line_of = move |p: Option<&csv::Position>| {
            p.map_or(0, |p| {
                let first = bytes[p.byte() as usize..]
                    .iter()
                    .position(|b| !matches!(b, b'\r' | b'\n'))
                    .unwrap_or(0);
                starts.partition_point(|&s| s <= p.byte() + first as u64)
            })
        };
        self.reader.records().map(move |r| {
            r.map(|record| Row {
                line: line_of(record.position()),
                record,
            })
            .map_err(|e| {
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("{len} fields, where the rows before have {expected_len}")
                    }
                    _ => e.to_string(),
                };
                DataError::row(&path, line_of(e.position()), message)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &str) -> (Vec<usize>, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv");
        std::fs::write(&path, text).unwrap();
        let mut table = CsvTable::open(&path).unwrap();
        let mut lines = Vec::new();
        let mut error = String::new();
        for row in table.rows() {
            match row {
                Ok(r) => lines.push(r.line),
                Err(e) => error = e.to_string(),
            }
        }
        (lines, error)
    }

    #[test]
    fn line_numbers_are_the_same_with_lf_and_crlf_line_endings() {
        for eol in ["\n", "\r\n"] {
            let text = ["id,dx", "a,nv", "b,mel", "", "c,bcc", "d", ""].join(eol);
            let (lines, error) = lines_of(&text);
            assert_eq!(lines, [2, 3, 5], "{eol:?}");
            assert!(
                error.contains("row 6") && error.contains("1 fields"),
                "{eol:?}: {error}"
            );
        }
    }
}

//! The split file, `splits/<data set>.csv`: one row per image of a data
//! set, in the data set's order, saying which split it is in. `sim-train`
//! writes it once (`data/split.rs`) and every run reads it back; the tables
//! stage reads the class names from it.

/// The image's id in its data set.
pub const ID: &str = "id";
/// Its label, 0-based.
pub const LABEL: &str = "label";
/// The label's class name (`mel`, `pneumonia`, …).
pub const CLASS: &str = "class";
/// What no two splits share (a lesion, a patient; the id where unknown).
pub const GROUP: &str = "group";
/// `train`, `test` (and the data set's own, where it has them).
pub const SPLIT: &str = "split";
/// The image as it was read (hex); empty in files made before it was kept.
pub const SHA256: &str = "sha256";
/// The columns, in the file's order.
pub const HEADER: [&str; 6] = [ID, LABEL, CLASS, GROUP, SPLIT, SHA256];

/// One image's row.
#[derive(Debug, Clone, Copy)]
pub struct SplitRow<'a> {
    pub id: &'a str,
    pub label: usize,
    pub class: &'a str,
    pub group: &'a str,
    pub split: &'a str,
    pub sha256: &'a str,
}

/// Writes a split file atomically (temporary file, then rename).
pub fn write<'a>(
    path: &std::path::Path,
    rows: impl IntoIterator<Item = SplitRow<'a>>,
) -> std::io::Result<()> {
    crate::write_atomic_with(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(HEADER)?;
        for r in rows {
            let label = r.label.to_string();
            csv.write_record([r.id, &label, r.class, r.group, r.split, r.sha256])?;
        }
        csv.flush()
    })
}

/// Each label's class name (index = label), read from a split file; errors
/// name the file and line.
pub fn class_names(path: &std::path::Path) -> Result<Vec<String>, String> {
    let at = |m: String| format!("{}: {m}", path.display());
    let mut reader = csv::Reader::from_path(path).map_err(|e| at(e.to_string()))?;
    let headers = reader.headers().map_err(|e| at(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| at(format!("no `{name}` column")))
    };
    let (label, class) = (column(LABEL)?, column(CLASS)?);
    let mut names: Vec<Option<String>> = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| at(e.to_string()))?;
        let text = record.get(label).unwrap_or("");
        let l: usize = text
            .parse()
            .map_err(|_| at(format!("line {line}: label `{text}` is not a number")))?;
        let name = record.get(class).unwrap_or("").to_string();
        if names.len() <= l {
            names.resize(l + 1, None);
        }
        match &names[l] {
            Some(known) if *known != name => {
                return Err(at(format!(
                    "line {line}: label {l} is `{name}` here and `{known}` above"
                )));
            }
            _ => names[l] = Some(name),
        }
    }
    names
        .into_iter()
        .enumerate()
        .map(|(l, n)| n.ok_or_else(|| at(format!("no image of label {l}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn a_written_split_file_gives_its_class_names_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("splits/x.csv");
        let row = |id, label, class| SplitRow {
            id,
            label,
            class,
            group: id,
            split: "test",
            sha256: "",
        };
        write(&path, [row("a", 1, "mel"), row("b", 0, "nv, benign")]).unwrap();
        assert_eq!(class_names(&path).unwrap(), ["nv, benign", "mel"]);
    }

    #[test]
    fn class_names_are_read_by_label() {
        let f = file_with("id,label,class,group,split,sha256\na,1,mel,g,train,\nb,0,nv,g,test,\n");
        assert_eq!(class_names(f.path()).unwrap(), ["nv", "mel"]);
    }

    #[test]
    fn a_label_with_two_names_or_none_is_an_error_naming_the_line() {
        let f = file_with("id,label,class,group,split,sha256\na,0,mel,g,train,\nb,0,nv,g,test,\n");
        let e = class_names(f.path()).unwrap_err();
        assert!(e.contains("line 3") && e.contains("`nv`"), "{e}");
        let f = file_with("id,label,class,group,split,sha256\na,1,mel,g,train,\n");
        let e = class_names(f.path()).unwrap_err();
        assert!(e.contains("no image of label 0"), "{e}");
    }
}

//! How a command's answer reaches stdout: exactly one JSON object with `--json`, otherwise
//! aligned key-value lines and tables meant for people. Writes go through `?` so a closed
//! pipe is an error, not a panic.

use std::io::Write;

use serde::Serialize;

/// An answer that can also be shown to a person.
pub trait Human {
    fn human(&self) -> String;
}

/// Prints `value` as one pretty JSON object, or in its human form.
pub fn emit<T: Serialize + Human>(json: bool, value: &T) -> anyhow::Result<()> {
    let text = if json {
        serde_json::to_string_pretty(value)?
    } else {
        value.human()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text.trim_end())?;
    out.flush()?;
    Ok(())
}

/// `key: value` lines with the values aligned in one column.
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut text = String::new();
    for (key, value) in pairs {
        let label = format!("{key}:");
        text.push_str(&format!("{label:<width$}  {value}\n"));
    }
    text
}

/// A plain text table: a header row and left-aligned columns separated by two spaces.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: Vec<&str>| {
            let mut text = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  "));
                }
            }
            text.truncate(text.trim_end().len());
            text.push('\n');
            text
        };
        let mut text = line(self.headers.clone());
        for row in &self.rows {
            text.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        text
    }
}

/// `-` for an absent value, so columns never collapse.
pub fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["ID", "FEATURE"]);
        t.row(vec!["lic_1".into(), "tts".into()]);
        t.row(vec!["x".into(), "asr.en-US".into()]);
        assert_eq!(t.render(), "ID     FEATURE\nlic_1  tts\nx      asr.en-US\n");
    }

    #[test]
    fn key_values_align() {
        let text = key_values(&[("a", "1".into()), ("long key", "2".into())]);
        assert_eq!(text, "a:         1\nlong key:  2\n");
    }
}

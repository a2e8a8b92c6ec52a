//! Output as the DC/OS CLI prints it: tables with upper-case headers and columns padded
//! with two spaces, or (`--json`) the API objects as indented JSON. Tables go to stdout;
//! progress and confirmations go to stderr so that stdout stays parseable.

use crate::error::{CliError, Result};
use serde::Serialize;
use serde_json::Value;

/// Prints `v` as indented JSON.
pub fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| CliError::Json {
        what: "output".into(),
        detail: e.to_string(),
    })?;
    println!("{text}");
    Ok(())
}

/// A text table.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty, extra cells dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text (one line per row, trailing spaces trimmed).
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                s.push_str(c);
                s.extend(std::iter::repeat_n(' ', w - c.chars().count()));
            }
            s.trim_end().to_owned()
        };
        let mut out = line(&self.headers);
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// A JSON string field, or `""`.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A number as the DC/OS CLI shows resources: integers without decimals, others with
/// at most three.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let t = format!("{v:.3}");
        t.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A JSON number field formatted with [`num`], or `---` when absent.
pub fn num_field(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .map_or_else(|| "---".to_owned(), num)
}

/// `---` for an empty cell (the DC/OS CLI's placeholder).
pub fn or_dashes(s: impl Into<String>) -> String {
    let s = s.into();
    if s.is_empty() { "---".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_and_trims() {
        let mut t = Table::new(&["ID", "MEM", "CMD"]);
        t.row(vec!["/web".into(), "32".into(), "sleep 10".into()]);
        t.row(vec!["/a".into(), "1024".into()]);
        assert_eq!(
            t.render(),
            "ID    MEM   CMD\n/web  32    sleep 10\n/a    1024\n"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn numbers() {
        assert_eq!(num(32.0), "32");
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(0.125), "0.125");
        assert_eq!(num(1.5000001), "1.5");
        assert_eq!(or_dashes(""), "---");
    }
}

//! Output shared by the commands: which format a command prints in, JSON, tables, times, and
//! the usage errors that exit 2.

use anyhow::Result;
use thiserror::Error;

use super::Format;
use crate::adapters::store::Store as _;
use crate::engine::Ctx;

/// A command line weft refuses before doing anything: printed as `error: …`, exit code 2
/// (as clap's own usage errors).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// How a command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Aligned columns with a header.
    Table,
    /// Lines for people (names, ids, a description).
    Text,
    /// One JSON document.
    Json,
}

/// What a command can print besides JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A table (default) or JSON.
    Table,
    /// Text (default) or JSON: `--format table` is refused.
    Text,
    /// JSON only (`inspect`, as `docker inspect`).
    Json,
    /// Text only (probes, the demo): any `--format` is refused.
    TextOnly,
}

/// The style `weft COMMAND` prints in for `--format` (None: not given), or the usage error
/// naming the formats it supports.
pub fn style(format: Option<Format>, command: &str, kind: Kind) -> Result<Style> {
    let refuse = |supports: &str| {
        Err(anyhow::Error::new(UsageError(format!(
            "`weft {command}` {supports}: --format {} is not supported{}",
            match format {
                Some(Format::Json) => "json",
                _ => "table",
            },
            match kind {
                Kind::TextOnly => "; leave --format out",
                _ => "; use --format json, or leave --format out",
            }
        ))))
    };
    match (kind, format) {
        (Kind::Table, None | Some(Format::Table)) => Ok(Style::Table),
        (Kind::Text, None) | (Kind::TextOnly, None) => Ok(Style::Text),
        (Kind::Json, None) => Ok(Style::Json),
        (Kind::TextOnly, Some(_)) => refuse("prints text only"),
        (_, Some(Format::Json)) => Ok(Style::Json),
        (Kind::Text, Some(Format::Table)) => refuse("prints text or JSON, not a table"),
        (Kind::Json, Some(Format::Table)) => refuse("prints JSON only"),
    }
}

/// What `rm`, `network rm` and `network prune` print: the names removed (one per line, or
/// this document with `--format json`) and the failures.
#[derive(Debug, serde::Serialize)]
pub struct Removed {
    /// Names of what was removed.
    pub removed: Vec<String>,
    /// One message per name that could not be removed.
    pub errors: Vec<String>,
}

impl Removed {
    /// Prints the result in `style` (errors on stderr either way); returns the exit code.
    pub fn print(&self, style: Style) -> Result<i32> {
        if style == Style::Json {
            print_json(self)?;
        } else {
            for n in &self.removed {
                println!("{n}");
            }
        }
        for e in &self.errors {
            eprintln!("error: {e}");
        }
        Ok(if self.errors.is_empty() { 0 } else { 1 })
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Renders rows as left-aligned columns under a header, three spaces apart. Widths count
/// characters, not bytes, so labels in any script line up.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(width(c));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(width(c));
                out.push_str(&" ".repeat(pad + 3));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(|s| s.as_str()).collect()));
        out.push('\n');
    }
    out
}

/// Names, on stderr, the records of `table` a listing skips because they cannot be read.
pub fn warn_unreadable(ctx: &Ctx, table: &str) -> Result<()> {
    let tx = ctx.store.begin(crate::adapters::store::Mode::Read)?;
    for r in tx.corrupt_records()?.iter().filter(|r| r.table == table) {
        let rm = if table == "networks" {
            "weft network rm"
        } else {
            "weft rm"
        };
        eprintln!(
            "warning: skipping unreadable {r}; `{rm} {}` or `weft gc` removes it",
            r.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_by_characters() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A     BB\nxyz   1\n");
        let t = table(&["K", "V"], &[vec!["é".into(), "1".into()]]);
        assert_eq!(t, "K   V\né   1\n");
    }

    #[test]
    fn formats_a_command_cannot_print_are_refused() {
        assert_eq!(style(None, "ps", Kind::Table).unwrap(), Style::Table);
        assert_eq!(
            style(Some(Format::Json), "ps", Kind::Table).unwrap(),
            Style::Json
        );
        assert_eq!(style(None, "inspect", Kind::Json).unwrap(), Style::Json);
        let e = style(Some(Format::Table), "network rm", Kind::Text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`weft network rm` prints text or JSON, not a table: --format table is not supported; use --format json, or leave --format out"
        );
        assert!(e.is::<UsageError>());
        assert!(style(Some(Format::Json), "demo", Kind::TextOnly).is_err());
        assert!(style(Some(Format::Table), "inspect", Kind::Json).is_err());
    }
}

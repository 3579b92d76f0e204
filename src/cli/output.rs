//! Output helpers shared by the commands: JSON printing, placeholders, listing warnings.

use anyhow::Result;

use crate::adapters::store::Store as _;
use crate::engine::Ctx;

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A value, or `-` when there is none.
pub fn opt(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".into())
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

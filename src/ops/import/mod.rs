//! Seat inventories for `seatgate admin create-event`: a CSV file or a row pattern,
//! parsed and validated whole before anything is written. Pure: no I/O.
//!
//! CSV (RFC 4180, read with the `csv` crate, strict about quotes): a header row names
//! the columns; `seat` (or `seat_id`) is required, `ordinal` (an integer, the
//! best-available order) is optional, any other column is ignored. Header names are
//! matched without regard to case. Unquoted fields lose surrounding spaces and tabs;
//! quoted fields are kept exactly, and their quotes stand right at the field's ends. A
//! line ends at `\n`, `\r\n` or a lone `\r`; blank lines are skipped. Without
//! `ordinal`, the file order is the order. Seat ids follow [`crate::domain::event`].
//!
//! Errors carry a 1-based line and column (in characters), like a compiler's, and up
//! to [`MAX_REPORTED`] are collected so one run shows most of what is wrong.
//!
//! - `records`: CSV text into records whose fields know their place, quoting checked.
//! - `seats`: the header and rows of those records into seat ids, in order.
//! - `pattern`: a row pattern (`A-T` × 30) into seat ids.

mod pattern;
mod records;
mod seats;

pub use pattern::pattern_seats;
pub use seats::{parse_seats_csv, parse_seats_csv_str};

use std::fmt;

/// Errors listed before the rest are only counted.
pub const MAX_REPORTED: usize = 20;

/// One problem in the input, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Every problem found in one input (the first [`MAX_REPORTED`] of them, and how many
/// more there were). Displayed one per line as `source:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportErrors {
    /// The file's name as the user gave it.
    pub source: String,
    pub errors: Vec<ImportError>,
    /// Errors found beyond the reported ones.
    pub more: usize,
}

impl ImportErrors {
    /// How many errors were found in all.
    pub fn total(&self) -> usize {
        self.errors.len() + self.more
    }

    /// One line per error, `source:line:column: message`, plus a line counting any
    /// errors left out.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}:{e}", self.source))
            .collect();
        if self.more > 0 {
            out.push(format!(
                "{}: … and {} more error{}",
                self.source,
                self.more,
                plural(self.more)
            ));
        }
        out
    }
}

impl fmt::Display for ImportErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl std::error::Error for ImportErrors {}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Collects errors, keeping the first [`MAX_REPORTED`].
#[derive(Default)]
struct Errors {
    list: Vec<ImportError>,
    more: usize,
}

impl Errors {
    fn push(&mut self, line: usize, column: usize, message: impl Into<String>) {
        if self.list.len() < MAX_REPORTED {
            self.list.push(ImportError {
                line,
                column,
                message: message.into(),
            });
        } else {
            self.more += 1;
        }
    }

    fn into_result<T>(mut self, source: &str, ok: T) -> Result<T, ImportErrors> {
        // In file order (quoting errors are found in a first pass).
        self.list.sort_by_key(|e| (e.line, e.column));
        if self.list.is_empty() {
            Ok(ok)
        } else {
            Err(ImportErrors {
                source: source.to_owned(),
                errors: self.list,
                more: self.more,
            })
        }
    }
}

/// A seat id as shown in a message: quoted and escaped, long ones shortened.
fn shown(id: &str) -> String {
    const SHOWN_MAX: usize = 40;
    if id.chars().count() > SHOWN_MAX {
        let head: String = id.chars().take(SHOWN_MAX).collect();
        format!("{:?}…", head)
    } else {
        format!("{id:?}")
    }
}

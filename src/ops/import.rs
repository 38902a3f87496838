//! Seat inventories for `seatgate admin create-event`: a CSV file or a row pattern,
//! parsed and validated whole before anything is written. Pure: no I/O.
//!
//! CSV (RFC 4180, strict about quotes): a header row names the columns; `seat` (or
//! `seat_id`) is required, `ordinal` (an integer, the best-available order) is
//! optional, any other column is ignored. Header names are matched without regard to
//! case. Unquoted fields lose surrounding spaces and tabs; quoted fields are kept
//! exactly. Blank lines are skipped. Without `ordinal`, the file order is the order.
//!
//! Errors carry a 1-based line and column (in characters), like a compiler's, and up
//! to [`MAX_REPORTED`] are collected so one run shows most of what is wrong.

use std::collections::HashMap;
use std::fmt;
use std::iter::Peekable;
use std::str::Chars;

use crate::domain::event::{self, EventError};
use crate::domain::{SEATS_MAX, SEAT_ID_MAX};

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

/// What the import says of a seat id that breaks [`event::check_seat`]: the rule, and
/// the id shown shortened (a CSV cell may be long).
fn seat_message(err: &EventError) -> String {
    match err {
        EventError::SeatIdLength(id) if id.is_empty() => "seat id is empty".to_owned(),
        EventError::SeatIdLength(id) => format!(
            "seat id {} is longer than {SEAT_ID_MAX} characters ({})",
            shown(id),
            id.chars().count()
        ),
        EventError::SeatIdTrailingSpace(id) => format!(
            "seat id {} ends with a space; MySQL ignores trailing spaces when it compares ids",
            shown(id)
        ),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------
// CSV

/// One field with the place it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    value: String,
    line: usize,
    column: usize,
}

/// One record (a logical row; a quoted field may span lines).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    fields: Vec<Field>,
    /// Where the record ends (the line break, or the end of the file).
    end_line: usize,
    end_column: usize,
    /// Its quoting is broken (already reported).
    bad: bool,
}

/// Splits CSV text into records, strictly: a quote inside an unquoted field, text after
/// a closing quote, and a quote never closed are errors. Blank lines are skipped.
fn records(text: &str, errors: &mut Errors) -> Vec<Record> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut column) = (1usize, 1usize);
    'records: loop {
        if chars.peek().is_none() {
            break;
        }
        let mut fields = Vec::new();
        let mut bad_record = false;
        loop {
            // One field.
            let (start_line, start_column) = (line, column);
            let mut value = String::new();
            // Skip leading blanks of an unquoted field (or before an opening quote).
            while let Some(&c) = chars.peek() {
                if c == ' ' || c == '\t' {
                    value.push(c);
                    chars.next();
                    column += 1;
                } else {
                    break;
                }
            }
            let (field_line, field_column);
            if chars.peek() == Some(&'"') {
                // Quoted: the field is what lies between the quotes, `""` being one `"`.
                field_line = line;
                field_column = column;
                value.clear();
                chars.next();
                column += 1;
                loop {
                    match chars.next() {
                        None => {
                            errors.push(
                                field_line,
                                field_column,
                                "bad quoting: this quoted field is never closed",
                            );
                            break 'records;
                        }
                        Some('"') => {
                            column += 1;
                            if chars.peek() == Some(&'"') {
                                chars.next();
                                column += 1;
                                value.push('"');
                            } else {
                                break;
                            }
                        }
                        Some('\n') => {
                            value.push('\n');
                            line += 1;
                            column = 1;
                        }
                        Some(c) => {
                            value.push(c);
                            column += 1;
                        }
                    }
                }
                // After the closing quote: blanks, then a separator or the end of the line.
                while let Some(&c) = chars.peek() {
                    if c == ' ' || c == '\t' {
                        chars.next();
                        column += 1;
                    } else {
                        break;
                    }
                }
                let next = chars.peek().copied();
                match next {
                    Some(',') => {}
                    _ if at_line_end(&chars) => {}
                    _ => {
                        errors.push(
                            line,
                            column,
                            "bad quoting: text after the closing quote (a quote inside a quoted field is written \"\")",
                        );
                        bad_record = true;
                        // Skip the rest of the field.
                        while let Some(&c) = chars.peek() {
                            if c == ',' || c == '\n' {
                                break;
                            }
                            chars.next();
                            column += 1;
                        }
                    }
                }
            } else {
                // Unquoted: up to the next separator or line end; surrounding blanks go.
                field_line = start_line;
                let leading = value.chars().count();
                field_column = start_column + leading;
                value.clear();
                while let Some(&c) = chars.peek() {
                    match c {
                        ',' => break,
                        _ if at_line_end(&chars) => break,
                        '"' => {
                            if !bad_record {
                                errors.push(
                                    line,
                                    column,
                                    "bad quoting: a quote inside an unquoted field (quote the whole field and write the quote as \"\")",
                                );
                            }
                            bad_record = true;
                            chars.next();
                            column += 1;
                        }
                        _ => {
                            value.push(c);
                            chars.next();
                            column += 1;
                        }
                    }
                }
                let trimmed = value.trim_end_matches([' ', '\t']).len();
                value.truncate(trimmed);
            }
            fields.push(Field {
                value,
                line: field_line,
                column: field_column,
            });
            // The separator, or the end of the record.
            match chars.next() {
                Some(',') => {
                    column += 1;
                }
                other => {
                    let (end_line, end_column) = (line, column);
                    if other == Some('\r') {
                        chars.next(); // the '\n', if any
                    }
                    if other.is_some() {
                        line += 1;
                        column = 1;
                    }
                    let blank = fields.len() == 1 && fields[0].value.is_empty();
                    if !blank {
                        out.push(Record {
                            fields,
                            end_line,
                            end_column,
                            bad: bad_record,
                        });
                    }
                    break;
                }
            }
        }
    }
    out
}

/// True at the end of the text or of a line (`\n` or `\r\n`; a lone `\r` is text).
fn at_line_end(chars: &Peekable<Chars<'_>>) -> bool {
    let mut ahead = chars.clone();
    match ahead.next() {
        None | Some('\n') => true,
        Some('\r') => matches!(ahead.next(), None | Some('\n')),
        _ => false,
    }
}

/// Where the bytes stop being UTF-8, as (line, column).
fn position_of(text: &str) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// Parses a seat CSV from raw bytes (UTF-8, an optional byte-order mark is skipped):
/// the seat ids in best-available order, or every problem found. `source` names the
/// file in the errors.
pub fn parse_seats_csv(source: &str, bytes: &[u8]) -> Result<Vec<String>, ImportErrors> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_seats_csv_str(source, text),
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let (line, column) = position_of(valid);
            let mut errors = Errors::default();
            errors.push(line, column, "the file is not valid UTF-8");
            errors.into_result(source, Vec::new())
        }
    }
}

/// [`parse_seats_csv`] of text.
pub fn parse_seats_csv_str(source: &str, text: &str) -> Result<Vec<String>, ImportErrors> {
    let mut errors = Errors::default();
    let recs = records(text, &mut errors);
    let Some((header, rows)) = recs.split_first() else {
        if errors.list.is_empty() {
            errors.push(
                1,
                1,
                "the file is empty: expected a header row naming a `seat` column",
            );
        }
        return errors.into_result(source, Vec::new());
    };
    if header.bad {
        // Its columns cannot be trusted; the quoting error is reported.
        return errors.into_result(source, Vec::new());
    }

    // The header.
    let mut seat_col: Option<(usize, &Field)> = None;
    let mut ordinal_col: Option<(usize, &Field)> = None;
    for (i, f) in header.fields.iter().enumerate() {
        let name = f.value.trim().to_ascii_lowercase();
        let slot = match name.as_str() {
            "seat" | "seat_id" => &mut seat_col,
            "ordinal" => &mut ordinal_col,
            _ => continue,
        };
        if let Some((_, first)) = slot {
            errors.push(
                f.line,
                f.column,
                format!(
                    "a second {} column (the first is at column {})",
                    if name == "ordinal" {
                        "`ordinal`"
                    } else {
                        "`seat`"
                    },
                    first.column
                ),
            );
        } else {
            *slot = Some((i, f));
        }
    }
    let Some((seat_col, _)) = seat_col else {
        errors.push(
            header.fields[0].line,
            header.fields[0].column,
            "the header has no `seat` column (or `seat_id`); the first row must name the columns",
        );
        return errors.into_result(source, Vec::new());
    };
    let ordinal_col = ordinal_col.map(|(i, _)| i);
    let width = header.fields.len();

    if rows.is_empty() {
        errors.push(
            header.end_line + 1,
            1,
            "no seats: the file has a header row but no seat rows",
        );
    }

    // The rows.
    let mut seats: Vec<(i64, String)> = Vec::with_capacity(rows.len().min(SEATS_MAX));
    let mut first_line: HashMap<&str, usize> = HashMap::with_capacity(rows.len().min(SEATS_MAX));
    let mut ordinal_line: HashMap<i64, usize> = HashMap::new();
    let mut count = 0usize;
    for row in rows {
        count += 1;
        if count == SEATS_MAX + 1 {
            errors.push(
                row.fields[0].line,
                1,
                format!("more than {SEATS_MAX} seats: an event holds at most {SEATS_MAX}"),
            );
        }
        if row.bad {
            continue;
        }
        if row.fields.len() != width {
            let (line, column) = match row.fields.get(width) {
                Some(extra) => (extra.line, extra.column),
                None => (row.end_line, row.end_column),
            };
            errors.push(
                line,
                column,
                format!(
                    "this row has {} field{}, the header has {}",
                    row.fields.len(),
                    plural(row.fields.len()),
                    width
                ),
            );
            continue;
        }
        let seat = &row.fields[seat_col];
        let mut ok = match event::check_seat(&seat.value) {
            Ok(()) => true,
            Err(err) => {
                errors.push(seat.line, seat.column, seat_message(&err));
                false
            }
        };
        if ok {
            if let Some(first) = first_line.get(seat.value.as_str()) {
                errors.push(
                    seat.line,
                    seat.column,
                    format!(
                        "duplicate seat {} (first on line {first})",
                        shown(&seat.value)
                    ),
                );
                ok = false;
            } else {
                first_line.insert(&seat.value, seat.line);
            }
        }
        let ordinal = match ordinal_col {
            None => seats.len() as i64,
            Some(i) => {
                let f = &row.fields[i];
                match f.value.trim().parse::<i64>() {
                    Ok(n) => {
                        if let Some(first) = ordinal_line.get(&n) {
                            errors.push(
                                f.line,
                                f.column,
                                format!("duplicate ordinal {n} (first on line {first}): the best-available order must be total"),
                            );
                            ok = false;
                        } else {
                            ordinal_line.insert(n, f.line);
                        }
                        n
                    }
                    Err(_) => {
                        let what = if f.value.is_empty() {
                            "ordinal is empty".to_owned()
                        } else {
                            format!("ordinal {} is not an integer", shown(&f.value))
                        };
                        errors.push(f.line, f.column, what);
                        ok = false;
                        0
                    }
                }
            }
        };
        if ok {
            seats.push((ordinal, seat.value.clone()));
        }
    }
    if !errors.list.is_empty() {
        return errors.into_result(source, Vec::new());
    }
    if ordinal_col.is_some() {
        seats.sort_by_key(|(ordinal, _)| *ordinal);
    }
    Ok(seats.into_iter().map(|(_, seat)| seat).collect())
}

// ---------------------------------------------------------------------------------
// Row pattern

/// Longest row label of a comma list.
const ROW_LABEL_MAX: usize = 8;

/// Seat ids of a row pattern in row-major order: `rows` is a comma list whose items are
/// row labels of letters (`A`, `AA`) or ranges of single letters (`A-T`, `a-f`), and
/// every row has seats `1..=seats_per_row`: `A-B` × 3 gives `A1 A2 A3 B1 B2 B3`.
pub fn pattern_seats(rows: &str, seats_per_row: u32) -> Result<Vec<String>, String> {
    let mut labels: Vec<String> = Vec::new();
    for item in rows.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "--rows {rows:?}: an empty item; write rows as a range like A-T or a list like A,B,C"
            ));
        }
        if let Some((from, to)) = item.split_once('-') {
            let (from, to) = (from.trim(), to.trim());
            let single = |s: &str| {
                let mut cs = s.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
                    _ => None,
                }
            };
            let (Some(a), Some(b)) = (single(from), single(to)) else {
                return Err(format!(
                    "--rows: {item:?} is not a range of single letters like A-T"
                ));
            };
            if a.is_ascii_uppercase() != b.is_ascii_uppercase() || a > b {
                return Err(format!(
                    "--rows: {item:?} is not an ascending range of one case (like A-T or a-t)"
                ));
            }
            labels.extend((a..=b).map(String::from));
        } else {
            if !item.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(format!(
                    "--rows: row label {item:?} must be letters only (seat numbers are added to it)"
                ));
            }
            if item.len() > ROW_LABEL_MAX {
                return Err(format!(
                    "--rows: row label {item:?} is longer than {ROW_LABEL_MAX} letters"
                ));
            }
            labels.push(item.to_owned());
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(format!("--rows: row {dup} is named twice"));
    }
    if seats_per_row == 0 {
        return Err("--seats-per-row must be at least 1".to_owned());
    }
    let total = labels.len() as u64 * u64::from(seats_per_row);
    if total > SEATS_MAX as u64 {
        return Err(format!(
            "{} rows × {seats_per_row} seats is {total} seats; an event holds at most {SEATS_MAX}",
            labels.len()
        ));
    }
    let mut seats = Vec::with_capacity(total as usize);
    for label in &labels {
        for n in 1..=seats_per_row {
            seats.push(format!("{label}{n}"));
        }
    }
    Ok(seats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<String>, ImportErrors> {
        parse_seats_csv("seats.csv", text.as_bytes())
    }

    fn errs(text: &str) -> Vec<String> {
        parse(text).unwrap_err().lines()
    }

    #[test]
    fn file_order_is_the_order_without_an_ordinal_column() {
        let seats = parse("seat,section\nB2,floor\nA1,floor\nC3,balcony\n").unwrap();
        assert_eq!(seats, ["B2", "A1", "C3"]);
    }

    #[test]
    fn seat_id_header_crlf_bom_blank_lines_and_no_final_newline() {
        let seats = parse("\u{feff}Seat_ID\r\nA1\r\n\r\nA2\r\n\nA3").unwrap();
        assert_eq!(seats, ["A1", "A2", "A3"]);
    }

    #[test]
    fn the_ordinal_column_orders_the_seats() {
        let seats = parse("ordinal,seat\n3,C\n-1,Z\n10,A\n2,B\n").unwrap();
        assert_eq!(seats, ["Z", "B", "C", "A"]);
    }

    #[test]
    fn quoted_fields_keep_commas_quotes_and_newlines() {
        let seats = parse("name,seat\n\"Box, left\",\"B\"\"1\"\n\"two\nlines\", X 9 \n").unwrap();
        assert_eq!(seats, ["B\"1", "X 9"]);
    }

    #[test]
    fn lengths_count_characters() {
        let ok = "é".repeat(32);
        assert_eq!(parse(&format!("seat\n{ok}\n")).unwrap(), [ok]);
        let long = "é".repeat(33);
        let e = errs(&format!("seat\nA1\n{long}\n"));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("seats.csv:3:1: seat id \"ééé"), "{e:?}");
        assert!(e[0].ends_with("is longer than 32 characters (33)"), "{e:?}");
    }

    #[test]
    fn duplicates_name_the_first_line() {
        let e = errs("seat\nA1\nA7\nA2\nA7\n");
        assert_eq!(
            e,
            ["seats.csv:5:1: duplicate seat \"A7\" (first on line 3)"]
        );
        // Exact comparison: a1 is not A1.
        assert_eq!(parse("seat\nA1\na1\n").unwrap(), ["A1", "a1"]);
    }

    #[test]
    fn trailing_spaces_are_trimmed_unless_quoted_and_then_refused() {
        assert_eq!(parse("seat\n  A1  \n\t\"B 2\"\n").unwrap(), ["A1", "B 2"]);
        assert_eq!(
            errs("seat\nA1\n\"A1 \"\n"),
            ["seats.csv:3:1: seat id \"A1 \" ends with a space; MySQL ignores trailing spaces when it compares ids"]
        );
    }

    #[test]
    fn columns_point_at_the_field() {
        let e = errs("row,seat\n1,A1\n22,\n");
        assert_eq!(e, ["seats.csv:3:4: seat id is empty"]);
    }

    #[test]
    fn missing_seat_header() {
        let e = errs("row,number\nA,1\n");
        assert_eq!(
            e,
            ["seats.csv:1:1: the header has no `seat` column (or `seat_id`); the first row must name the columns"]
        );
        let e = errs("seat,seat_id\nA,1\n");
        assert_eq!(
            e,
            ["seats.csv:1:6: a second `seat` column (the first is at column 1)"]
        );
    }

    #[test]
    fn empty_files_and_header_only() {
        assert_eq!(
            errs(""),
            ["seats.csv:1:1: the file is empty: expected a header row naming a `seat` column"]
        );
        assert_eq!(errs("\n\n").len(), 1);
        assert_eq!(
            errs("seat\n"),
            ["seats.csv:2:1: no seats: the file has a header row but no seat rows"]
        );
    }

    #[test]
    fn bad_quoting() {
        assert_eq!(
            errs("seat\nA\"1\n"),
            ["seats.csv:2:2: bad quoting: a quote inside an unquoted field (quote the whole field and write the quote as \"\")"]
        );
        assert_eq!(
            errs("seat,x\n\"A1\"x,1\n"),
            ["seats.csv:2:5: bad quoting: text after the closing quote (a quote inside a quoted field is written \"\")"]
        );
        assert_eq!(
            errs("seat\nA1\n\"A2\nA3\n"),
            ["seats.csv:3:1: bad quoting: this quoted field is never closed"]
        );
    }

    #[test]
    fn bad_ordinals() {
        let e = errs("seat,ordinal\nA,1\nB,x2\nC,\nD,1\nE,99999999999999999999\n");
        assert_eq!(
            e,
            [
                "seats.csv:3:3: ordinal \"x2\" is not an integer",
                "seats.csv:4:3: ordinal is empty",
                "seats.csv:5:3: duplicate ordinal 1 (first on line 2): the best-available order must be total",
                "seats.csv:6:3: ordinal \"99999999999999999999\" is not an integer",
            ]
        );
    }

    #[test]
    fn ragged_rows() {
        let e = errs("seat,ordinal\nA,1,extra\nB\n");
        assert_eq!(
            e,
            [
                "seats.csv:2:5: this row has 3 fields, the header has 2",
                "seats.csv:3:2: this row has 1 field, the header has 2",
            ]
        );
    }

    #[test]
    fn several_errors_are_reported_up_to_the_cap() {
        let mut text = String::from("seat\n");
        for _ in 0..30 {
            text.push_str("A1\n");
        }
        let err = parse(&text).unwrap_err();
        assert_eq!(err.errors.len(), MAX_REPORTED);
        assert_eq!(err.total(), 29);
        let lines = err.lines();
        assert_eq!(lines.len(), MAX_REPORTED + 1);
        assert_eq!(
            lines[0],
            "seats.csv:3:1: duplicate seat \"A1\" (first on line 2)"
        );
        assert_eq!(lines[MAX_REPORTED], "seats.csv: … and 9 more errors");
    }

    #[test]
    fn not_utf8() {
        let err = parse_seats_csv("seats.csv", b"seat\nA1\nB\xff2\n").unwrap_err();
        assert_eq!(err.lines(), ["seats.csv:3:2: the file is not valid UTF-8"]);
    }

    #[test]
    fn at_most_100000_seats() {
        let mut text = String::from("seat\n");
        for i in 0..SEATS_MAX {
            text.push_str(&format!("S{i}\n"));
        }
        assert_eq!(parse(&text).unwrap().len(), SEATS_MAX);
        text.push_str("one-too-many\n");
        assert_eq!(
            errs(&text),
            ["seats.csv:100002:1: more than 100000 seats: an event holds at most 100000"]
        );
    }

    #[test]
    fn patterns_are_row_major() {
        assert_eq!(
            pattern_seats("A-B", 3).unwrap(),
            ["A1", "A2", "A3", "B1", "B2", "B3"]
        );
        assert_eq!(pattern_seats("C, A ,AA", 1).unwrap(), ["C1", "A1", "AA1"]);
        let s = pattern_seats("A-T", 30).unwrap();
        assert_eq!(s.len(), 600);
        assert_eq!(
            (s[0].as_str(), s[29].as_str(), s[30].as_str()),
            ("A1", "A30", "B1")
        );
        assert_eq!(s[599], "T30");
        assert_eq!(pattern_seats("a-c,X", 2).unwrap().len(), 8);
    }

    #[test]
    fn bad_patterns() {
        for (rows, per_row) in [
            ("", 3),
            ("A,,B", 3),
            ("T-A", 3),
            ("a-Z", 3),
            ("AA-AD", 3),
            ("A1", 3),
            ("A-C,B", 3),
            ("A", 0),
            ("ABCDEFGHI", 1),
        ] {
            assert!(
                pattern_seats(rows, per_row).is_err(),
                "{rows:?} × {per_row}"
            );
        }
        let e = pattern_seats("A-Z,a-z", 2000).unwrap_err();
        assert!(e.contains("at most 100000"), "{e}");
        assert_eq!(pattern_seats("A-Z,a-z", 1923).unwrap().len(), 99_996);
    }
}

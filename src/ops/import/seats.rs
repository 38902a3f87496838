//! A seat CSV's header and rows into seat ids in best-available order, every row
//! checked (the seat id by [`event::check_seat`], uniqueness, the ordinal) and every
//! problem collected with its place.

use std::collections::HashMap;

use super::records::{records, Field, Places};
use super::{plural, shown, Errors, ImportErrors};
use crate::domain::event::{self, EventError};
use crate::domain::{SEATS_MAX, SEAT_ID_MAX};

/// Parses a seat CSV from raw bytes (UTF-8, an optional byte-order mark is skipped):
/// the seat ids in best-available order, or every problem found. `source` names the
/// file in the errors.
pub fn parse_seats_csv(source: &str, bytes: &[u8]) -> Result<Vec<String>, ImportErrors> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_seats_csv_str(source, text),
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let (line, column) = Places::new(valid).place(valid.len());
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
                row.line,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::import::MAX_REPORTED;

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
        assert_eq!(parse("seat\n  A1  \n\"B 2\"\n").unwrap(), ["A1", "B 2"]);
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
    fn a_lone_carriage_return_ends_a_row() {
        assert_eq!(parse("seat\rA1\rA2\r").unwrap(), ["A1", "A2"]);
        assert_eq!(
            errs("seat\rA1\rA1"),
            ["seats.csv:3:1: duplicate seat \"A1\" (first on line 2)"]
        );
    }

    #[test]
    fn blanks_around_quotes_are_bad_quoting() {
        let e = errs("seat\n \"A1\"\n\"A2\" \n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("seats.csv:2:2: bad quoting: blanks before the opening quote"));
        assert!(e[1].starts_with("seats.csv:3:5: bad quoting: blanks after the closing quote"));
    }

    #[test]
    fn a_badly_quoted_row_is_not_also_a_missing_one() {
        assert_eq!(
            errs("seat\n\"A1\n"),
            ["seats.csv:2:1: bad quoting: this quoted field is never closed"]
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
}

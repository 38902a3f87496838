//! CSV text into records whose fields know where they start, read with the `csv` crate.
//!
//! The `csv` crate splits the text into records and fields and undoes the quoting
//! (RFC 4180: `""` is a quote inside a quoted field; a record ends at `\n`, `\r\n` or a
//! lone `\r`; empty lines are skipped). It reads malformed quoting leniently and knows
//! no columns, so each record's own text is then walked field by field beside the values
//! it gave. The walk finds where each field starts (for messages that point at it),
//! whether it was quoted (only unquoted fields lose their surrounding blanks), and the
//! quoting the strict grammar refuses: a quote inside an unquoted field, anything between
//! a closing quote and the next comma or line end, a quote never closed.

use csv::{ReaderBuilder, StringRecord};

use super::Errors;

/// Spaces and tabs: what unquoted fields lose at both ends.
const BLANKS: [char; 2] = [' ', '\t'];

/// One field: its value and where it starts (1-based line, column in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Field {
    pub(super) value: String,
    pub(super) line: usize,
    pub(super) column: usize,
}

/// One record (a logical row; a quoted field may span lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// The line it starts on.
    pub(super) line: usize,
    /// Its fields; none when its quoting is broken.
    pub(super) fields: Vec<Field>,
    /// Where it ends (its line break, or the end of the text).
    pub(super) end_line: usize,
    pub(super) end_column: usize,
    /// Its quoting is broken (already reported).
    pub(super) bad: bool,
}

/// Splits CSV text into records, strictly about quotes (each quoting error is reported
/// and marks its record bad). Records that are one empty field (a line of blanks, or
/// `""`) are skipped like empty lines.
pub(super) fn records(text: &str, errors: &mut Errors) -> Vec<Record> {
    let mut places = Places::new(text);
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for result in reader.records() {
        let record = match result {
            Ok(record) => record,
            Err(err) => {
                // Not expected of UTF-8 text read from memory; said rather than hidden.
                let offset = err.position().map_or(0, |p| p.byte() as usize);
                let (line, column) = places.place(offset.min(text.len()));
                errors.push(line, column, format!("cannot read the CSV: {err}"));
                break;
            }
        };
        // The position the reader gives is where it started reading: empty lines and the
        // rest of the previous line break may come before the record itself.
        let start = record.position().map_or(0, |p| p.byte() as usize);
        // The `csv` crate also skips a byte-order mark at the start of its input.
        let start = if start == 0 && text.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            start
        };
        let start = start
            + text[start..]
                .bytes()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
        if let Some(record) = locate(text, start, &record, &mut places, errors) {
            out.push(record);
        }
    }
    out
}

/// Walks the text of one record from `start` beside the values the `csv` crate read
/// from it: the fields with their places, or a bad record once its quoting is broken.
fn locate(
    text: &str,
    start: usize,
    values: &StringRecord,
    places: &mut Places<'_>,
    errors: &mut Errors,
) -> Option<Record> {
    let (line, _) = places.place(start);
    let mut fields = Vec::with_capacity(values.len());
    let mut at = start;
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            at += 1; // the comma
        }
        // Off the text (or between a character's bytes) only if the walk and the reader
        // disagree.
        let spelled = text.get(at..).map_or(
            Err(QuoteError {
                offset: 0,
                message: DISAGREE,
            }),
            |rest| spelling(rest, value),
        );
        match spelled {
            Ok(Spelling::Quoted(len)) => {
                let (line, column) = places.place(at);
                fields.push(Field {
                    value: value.to_owned(),
                    line,
                    column,
                });
                at += len;
            }
            Ok(Spelling::Plain) => {
                let unled = value.trim_start_matches(BLANKS);
                let (line, column) = places.place(at + (value.len() - unled.len()));
                fields.push(Field {
                    value: unled.trim_end_matches(BLANKS).to_owned(),
                    line,
                    column,
                });
                at += value.len();
            }
            Err(QuoteError { offset, message }) => {
                let at = Some(at + offset)
                    .filter(|&at| text.is_char_boundary(at))
                    .unwrap_or(text.len());
                let (end_line, end_column) = places.place(at);
                errors.push(end_line, end_column, message);
                return Some(Record {
                    line,
                    fields: Vec::new(),
                    end_line,
                    end_column,
                    bad: true,
                });
            }
        }
    }
    if fields.len() == 1 && fields[0].value.is_empty() {
        return None;
    }
    let (end_line, end_column) = places.place(at);
    Some(Record {
        line,
        fields,
        end_line,
        end_column,
        bad: false,
    })
}

/// How a field is written in the text.
enum Spelling {
    /// Between quotes, spanning this many bytes with them.
    Quoted(usize),
    /// As its value, blanks and all.
    Plain,
}

/// A quoting error, `offset` bytes into the field's text.
struct QuoteError {
    offset: usize,
    message: &'static str,
}

/// Not expected: the `csv` crate read an unquoted field other than as it stands.
const DISAGREE: &str = "cannot read this row: the CSV reader and the quoting check disagree";
const NEVER_CLOSED: &str = "bad quoting: this quoted field is never closed";
const TEXT_AFTER_CLOSE: &str =
    "bad quoting: text after the closing quote (a quote inside a quoted field is written \"\")";
const BLANKS_AFTER_CLOSE: &str =
    "bad quoting: blanks after the closing quote (a quoted field ends right at the comma or the line end)";
const BLANKS_BEFORE_OPEN: &str =
    "bad quoting: blanks before the opening quote (a quoted field starts right after the comma or the line start)";
const QUOTE_INSIDE: &str =
    "bad quoting: a quote inside an unquoted field (quote the whole field and write the quote as \"\")";

/// How the field that `rest` starts with is written, given `value`, the `csv` crate's
/// reading of it. A quoted field closes at its first quote not doubled, as the `csv`
/// crate reads it; an unquoted field is its value as it stands in the text.
fn spelling(rest: &str, value: &str) -> Result<Spelling, QuoteError> {
    let error = |offset, message| Err(QuoteError { offset, message });
    if let Some(inner) = rest.strip_prefix('"') {
        let Some(close) = closing_quote(inner) else {
            return error(0, NEVER_CLOSED);
        };
        let after = 1 + close + 1;
        let tail = &rest[after..];
        let unblanked = tail.trim_start_matches(BLANKS);
        let at_end = |s: &str| matches!(s.bytes().next(), None | Some(b',' | b'\r' | b'\n'));
        return if at_end(tail) {
            Ok(Spelling::Quoted(after))
        } else if at_end(unblanked) {
            error(after, BLANKS_AFTER_CLOSE)
        } else {
            error(after + (tail.len() - unblanked.len()), TEXT_AFTER_CLOSE)
        };
    }
    if !rest.starts_with(value) {
        return error(0, DISAGREE);
    }
    match value.find('"') {
        None => Ok(Spelling::Plain),
        Some(i) if value[..i].trim_start_matches(BLANKS).is_empty() => error(i, BLANKS_BEFORE_OPEN),
        Some(i) => error(i, QUOTE_INSIDE),
    }
}

/// Where the quote closing a quoted field is, in the text after its opening quote: the
/// first quote that is not one of a `""` pair.
fn closing_quote(inner: &str) -> Option<usize> {
    let bytes = inner.as_bytes();
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(|&b| b == b'"') {
        let quote = from + i;
        if bytes.get(quote + 1) == Some(&b'"') {
            from = quote + 2;
        } else {
            return Some(quote);
        }
    }
    None
}

/// Turns byte offsets into 1-based (line, column in characters). A line ends at `\n`,
/// `\r\n` or a lone `\r`, as a record does. Offsets asked in increasing order (as a
/// walk through the text asks them) cost only the characters between them.
pub(super) struct Places<'a> {
    text: &'a str,
    /// Where each line starts.
    starts: Vec<usize>,
    /// The last place asked: (offset, line, column).
    last: (usize, usize, usize),
}

impl<'a> Places<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                starts.push(i + 1);
            }
        }
        Self {
            text,
            starts,
            last: (0, 1, 1),
        }
    }

    /// The place of `offset` (at most the text's length, on a character boundary).
    pub(super) fn place(&mut self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset);
        let line_start = self.starts[line - 1];
        let (last_offset, last_line, last_column) = self.last;
        let column = if last_line == line && last_offset <= offset {
            last_column + self.text[last_offset..offset].chars().count()
        } else {
            1 + self.text[line_start..offset].chars().count()
        };
        self.last = (offset, line, column);
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field as (value, line, column).
    type Placed = (String, usize, usize);

    /// The records' fields, or the errors as `line:column: message`.
    fn read(text: &str) -> Result<Vec<Vec<Placed>>, Vec<String>> {
        let mut errors = Errors::default();
        let recs = records(text, &mut errors);
        if !errors.list.is_empty() {
            return Err(errors.list.iter().map(ToString::to_string).collect());
        }
        Ok(recs
            .into_iter()
            .map(|r| {
                r.fields
                    .into_iter()
                    .map(|f| (f.value, f.line, f.column))
                    .collect()
            })
            .collect())
    }

    fn f(value: &str, line: usize, column: usize) -> Placed {
        (value.to_owned(), line, column)
    }

    #[test]
    fn fields_know_where_they_start() {
        assert_eq!(
            read("a, b ,\"c,\"\"d\"\"\"\n\"x\ny\",é,z").unwrap(),
            [
                vec![f("a", 1, 1), f("b", 1, 4), f("c,\"d\"", 1, 7)],
                vec![f("x\ny", 2, 1), f("é", 3, 4), f("z", 3, 6)],
            ]
        );
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line() {
        assert_eq!(
            read("a\rb\r\nc\n\r\nd").unwrap(),
            [
                vec![f("a", 1, 1)],
                vec![f("b", 2, 1)],
                vec![f("c", 3, 1)],
                vec![f("d", 5, 1)],
            ]
        );
    }

    #[test]
    fn blank_records_are_skipped() {
        assert_eq!(read("\n  \n\"\"\na\n\t\n").unwrap(), [vec![f("a", 4, 1)]]);
    }

    #[test]
    fn blanks_around_quotes_are_errors() {
        assert_eq!(
            read("x\n  \"a\",b\n").unwrap_err(),
            [format!("2:3: {BLANKS_BEFORE_OPEN}")]
        );
        assert_eq!(
            read("x\n\"a\"  ,b\n").unwrap_err(),
            [format!("2:4: {BLANKS_AFTER_CLOSE}")]
        );
        assert_eq!(
            read("\"a\" x,b\n").unwrap_err(),
            [format!("1:5: {TEXT_AFTER_CLOSE}")]
        );
    }

    #[test]
    fn a_bad_record_keeps_the_records_around_it() {
        let mut errors = Errors::default();
        let recs = records("a\nb\"c\nd\n", &mut errors);
        assert_eq!(errors.list.len(), 1);
        assert_eq!(
            recs.iter().map(|r| (r.line, r.bad)).collect::<Vec<_>>(),
            [(1, false), (2, true), (3, false)]
        );
    }

    #[test]
    fn a_second_byte_order_mark_is_skipped_like_the_first() {
        assert_eq!(
            read("\u{feff}a,b").unwrap(),
            [vec![f("a", 1, 2), f("b", 1, 4)]]
        );
    }

    #[test]
    fn places_count_characters_in_any_order() {
        let mut places = Places::new("éé\nab");
        assert_eq!(places.place(4), (1, 3));
        assert_eq!(places.place(7), (2, 3));
        assert_eq!(places.place(2), (1, 2));
        assert_eq!(places.place(0), (1, 1));
    }
}

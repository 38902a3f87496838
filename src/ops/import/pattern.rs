//! A row pattern (`--rows A-T --seats-per-row 30`) into seat ids in row-major order.

use crate::domain::SEATS_MAX;

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

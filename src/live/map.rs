//! One watched event's map as the watcher last read it: seats in best-available order
//! and one status character each, and the messages built from it.

use serde_json::json;
use std::collections::HashMap;

use super::source::Counters;
use super::Message;
use crate::domain::SeatStatus;

pub(super) struct MapState {
    event_id: String,
    name: String,
    seats: Vec<String>,
    index: HashMap<String, usize>,
    pub(super) status: Vec<u8>,
    pub(super) counters: Counters,
    pub(super) claims_per_sec: Option<f64>,
}

fn status_char(s: SeatStatus) -> u8 {
    match s {
        SeatStatus::Available => b'a',
        SeatStatus::Pending => b'p',
        SeatStatus::Held => b'h',
        SeatStatus::Booked => b'b',
    }
}

impl MapState {
    pub(super) fn new(
        event_id: &str,
        name: String,
        seats: Vec<(String, SeatStatus)>,
        c: Counters,
    ) -> Self {
        let mut ids = Vec::with_capacity(seats.len());
        let mut status = Vec::with_capacity(seats.len());
        let mut index = HashMap::with_capacity(seats.len());
        for (i, (seat, s)) in seats.into_iter().enumerate() {
            index.insert(seat.clone(), i);
            ids.push(seat);
            status.push(status_char(s));
        }
        Self {
            event_id: event_id.to_owned(),
            name,
            seats: ids,
            index,
            status,
            counters: c,
            claims_per_sec: c.claims_total.map(|_| 0.0),
        }
    }

    pub(super) fn counters_json(&self) -> serde_json::Value {
        let c = &self.counters;
        json!({
            "seats_total": c.seats_total,
            "available": c.available,
            "pending": c.pending,
            "held": c.held,
            "booked": c.booked,
            "claims_total": c.claims_total,
            "claims_per_sec": self.claims_per_sec.map(|r| (r * 10.0).round() / 10.0),
            "outbox_length": c.outbox_length,
            "reconciler_lag_ms": c.reconciler_lag_ms,
        })
    }

    pub(super) fn snapshot(&self) -> Message {
        let body = json!({
            "event_id": self.event_id,
            "name": self.name,
            "seats": self.seats,
            // Only ASCII letters: the bytes are valid UTF-8.
            "status": String::from_utf8_lossy(&self.status),
            "counters": self.counters_json(),
        });
        Message::Snapshot(body.to_string().into())
    }

    /// Applies fresh statuses; the changed seats as `(index, status)`.
    pub(super) fn apply(&mut self, statuses: &HashMap<String, SeatStatus>) -> Vec<(usize, u8)> {
        let mut changes = Vec::new();
        for (seat, s) in statuses {
            if let Some(&i) = self.index.get(seat) {
                let c = status_char(*s);
                if self.status[i] != c {
                    self.status[i] = c;
                    changes.push((i, c));
                }
            }
        }
        changes.sort_unstable();
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applying_statuses_reports_only_what_changed_in_seat_order() {
        let c = Counters::default();
        let seats = vec![
            ("A1".to_owned(), SeatStatus::Available),
            ("A2".to_owned(), SeatStatus::Available),
            ("A3".to_owned(), SeatStatus::Booked),
        ];
        let mut map = MapState::new("e", "E".into(), seats, c);
        let fresh: HashMap<String, SeatStatus> = [
            ("A3".to_owned(), SeatStatus::Booked),
            ("A2".to_owned(), SeatStatus::Pending),
            ("A1".to_owned(), SeatStatus::Pending),
            ("ZZ".to_owned(), SeatStatus::Pending), // not in the map: ignored
        ]
        .into();
        assert_eq!(map.apply(&fresh), vec![(0, b'p'), (1, b'p')]);
        assert_eq!(map.status, b"ppb");
        assert!(
            map.apply(&fresh).is_empty(),
            "nothing changed the second time"
        );
    }

    #[test]
    fn the_snapshot_lists_seats_in_order_with_one_status_character_each() {
        let seats = vec![
            ("B1".to_owned(), SeatStatus::Pending),
            ("A1".to_owned(), SeatStatus::Available),
        ];
        let map = MapState::new("e", "E".into(), seats, Counters::default());
        let Message::Snapshot(body) = map.snapshot() else {
            panic!("a snapshot")
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["seats"], json!(["B1", "A1"]));
        assert_eq!(v["status"], "pa");
        assert_eq!(v["counters"]["claims_total"], serde_json::Value::Null);
    }

    #[test]
    fn held_seats_have_their_own_character_and_counter() {
        let seats = vec![
            ("A1".to_owned(), SeatStatus::Held),
            ("A2".to_owned(), SeatStatus::Pending),
        ];
        let counters = Counters {
            held: 1,
            pending: 1,
            ..Counters::default()
        };
        let mut map = MapState::new("e", "E".into(), seats, counters);
        let Message::Snapshot(body) = map.snapshot() else {
            panic!("a snapshot")
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "hp");
        assert_eq!(v["counters"]["held"], 1);
        let fresh: HashMap<String, SeatStatus> = [("A2".to_owned(), SeatStatus::Held)].into();
        assert_eq!(map.apply(&fresh), vec![(1, b'h')]);
    }
}

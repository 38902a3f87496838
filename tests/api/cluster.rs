//! seatgate on a private Redis Cluster of its own (three primaries, three replicas), for
//! what only a cluster can do: move an event's slot to another primary during a drop.
//! The tests whose bodies hold on any topology run on a cluster too, unchanged, through
//! `scripts/test_cluster.sh` (`SEATGATE_TEST_REDIS_URL`).

use reqwest::StatusCode;
use seatgate_sandbox::{slot_of, PrivateCluster};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::helpers::*;

async fn cluster() -> PrivateCluster {
    PrivateCluster::start(3, 1)
        .await
        .expect("a private Redis Cluster starts")
}

/// The slot of an event's keys (they all carry the hash tag `{e:<id>}`).
fn slot_of_event(event: &str) -> u16 {
    slot_of(&format!("{{e:{event}}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_goes_on_while_its_events_slot_moves_to_another_primary() {
    let mut cluster = cluster().await;
    let app = spawn_app_with(|s| s.redis_url = cluster.seeds_url()).await;
    let seats = 150;
    let event = app.event_with(&seat_names(seats), 1).await;
    let slot = slot_of_event(&event);
    let from = cluster.primary_for_slot(slot).await.unwrap();
    let to = *cluster
        .primaries()
        .await
        .unwrap()
        .iter()
        .find(|&&p| p != from)
        .unwrap();

    // Eight claims per seat, each from its own user, while the slot moves key by key
    // (ASK for keys already moved, TRYAGAIN for a script whose keys are split).
    let claims = (0..seats * 8)
        .map(|i| (format!("fan-{i}"), best_of(1)))
        .collect();
    let drop = async {
        let answers = app.claim_storm(&event, claims, 32).await;
        (answers, Instant::now())
    };
    let migrate = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cluster
            .migrate_slot_paced(slot, to, Some(Duration::from_millis(2)))
            .await
            .unwrap();
        Instant::now()
    };
    let ((answers, drop_ended), moved) = tokio::join!(drop, migrate);
    assert_eq!(cluster.primary_for_slot(slot).await.unwrap(), to);
    assert!(
        moved < drop_ended,
        "the slot moved during the drop, and claims went on after it had"
    );

    // Every claim was answered (the storm retries 503s, which carry Retry-After); no
    // seat went to two bookings.
    let mut winners = Vec::new();
    let mut seats_taken = HashSet::new();
    for (status, body) in &answers {
        match *status {
            StatusCode::ACCEPTED => {
                for seat in body["seats"].as_array().unwrap() {
                    assert!(seats_taken.insert(seat.clone()), "{seat} sold twice");
                }
                winners.push(body["booking_id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => assert_eq!(body["error"], "sold_out", "{body}"),
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), seats, "every seat sold once");
    // Every 202 is confirmed in MySQL, and the stores agree.
    let summary = app.settled(&event).await;
    assert_eq!(summary["booked"], seats);
    assert_eq!(app.mysql_confirmed(&event).await, seats as i64);
    for booking in &winners {
        assert_eq!(
            app.mysql_booking(booking).await.as_deref(),
            Some("confirmed")
        );
    }
    let audit = app.audit(&event, false).await;
    assert_eq!(audit["consistent"], true, "{audit}");
}

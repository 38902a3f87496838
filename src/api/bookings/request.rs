//! What a claim asks for, parsed before any store is touched: the body (exactly one of
//! `seats` and `quantity`, with its fingerprint when an `Idempotency-Key` needs one),
//! the `Idempotency-Key` and the `Prefer: wait` headers. Everything the contract can
//! refuse with a 400 is refused here (these are also the `fuzz/` targets' entry points).

use axum::http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::time::Duration;
use utoipa::ToSchema;

use crate::api::error::ApiError;
use crate::api::extract::json_body;
use crate::domain::*;

/// Largest claim body accepted: what a valid claim can need (100 seat ids of 32
/// characters, most of them multi-byte, fit in about 13 KiB), so that nobody can make
/// the gateway buffer more.
pub const CLAIM_BODY_LIMIT: usize = 16 * 1024;

/// Most seats one claim may name: no user may hold more in any event.
pub const CLAIM_SEATS_MAX: usize = PER_USER_LIMIT_MAX as usize;

/// The claim body: exactly one of `seats` and `quantity`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ClaimBody {
    /// Specific seats, unique, all or nothing.
    #[schema(schema_with = crate::api::openapi::claim_seats)]
    seats: Option<Vec<String>>,
    /// Best available: this many of the lowest-ordinal free seats.
    #[schema(minimum = 1)]
    quantity: Option<u64>,
}

/// A validated claim body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Seats(Vec<SeatId>),
    Quantity(u32),
}

/// A claim body that passed validation, with the fingerprint of what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedClaim {
    pub wanted: Wanted,
    /// Identifies the body's JSON value for idempotency (see [`fingerprint`]).
    pub fingerprint: String,
}

impl ParsedClaim {
    /// Parses and validates a claim body (see [`Wanted::parse`]) and fingerprints it:
    /// the path of a claim with an `Idempotency-Key`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        let value: serde_json::Value = json_body(bytes)?;
        let fingerprint = fingerprint(&value);
        let body: ClaimBody = serde_json::from_value(value)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid claim: {e}")))?;
        Ok(Self {
            wanted: Wanted::validate(body)?,
            fingerprint,
        })
    }
}

impl Wanted {
    /// Parses and validates a claim body without fingerprinting it: a claim without an
    /// `Idempotency-Key` needs no fingerprint, and the hot path does not pay for one.
    /// Everything the contract can refuse with a 400 is refused here, before any Redis
    /// call, so no malformed claim (a megabyte seat id, thousands of seats) ever
    /// reaches Redis or its idempotency records.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        Self::validate(json_body(bytes)?)
    }

    fn validate(body: ClaimBody) -> Result<Self, ApiError> {
        let wanted = match (body.seats, body.quantity) {
            (Some(seats), None) => {
                if seats.is_empty() {
                    return Err(ApiError::InvalidRequest("seats must not be empty".into()));
                }
                if seats.len() > CLAIM_SEATS_MAX {
                    return Err(ApiError::InvalidRequest(format!(
                        "a claim names at most {CLAIM_SEATS_MAX} seats"
                    )));
                }
                let seats: Vec<SeatId> = seats
                    .into_iter()
                    .map(SeatId::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|bad| {
                        let shown: String = bad.shown.chars().take(SEAT_ID_MAX + 1).collect();
                        ApiError::InvalidRequest(format!(
                            "seat ids are 1 to {SEAT_ID_MAX} characters: {shown:?}"
                        ))
                    })?;
                let mut seen = HashSet::with_capacity(seats.len());
                if let Some(dup) = seats.iter().find(|s| !seen.insert(s.as_str())) {
                    return Err(ApiError::InvalidRequest(format!(
                        "duplicate seat {:?}",
                        dup.as_str()
                    )));
                }
                Wanted::Seats(seats)
            }
            (None, Some(0)) => {
                return Err(ApiError::InvalidRequest(
                    "quantity must be at least 1".into(),
                ))
            }
            // No claim can take more than the highest per-user limit; anything above
            // it is answered by the limit check, so the figure passed on is capped
            // (the fingerprint keeps what was sent).
            (None, Some(n)) => Wanted::Quantity(n.min(u64::from(PER_USER_LIMIT_MAX) + 1) as u32),
            (Some(_), Some(_)) => {
                return Err(ApiError::InvalidRequest(
                    "give either seats or quantity, not both".into(),
                ))
            }
            (None, None) => {
                return Err(ApiError::InvalidRequest(
                    "give seats (a list of seat ids) or quantity (a number)".into(),
                ))
            }
        };
        Ok(wanted)
    }
}

/// A fingerprint of a request body for idempotency: two bodies with the same JSON
/// value (whitespace and key order aside) have the same fingerprint, and any other
/// two differ (`{"seats": null, "quantity": 2}` is not `{"quantity": 2}`). The value
/// is hashed in serde_json's canonical form: objects serialise with sorted keys (its
/// `Map` is a `BTreeMap`, the `preserve_order` feature being off).
fn fingerprint(value: &serde_json::Value) -> String {
    let canonical = value.to_string();
    hex::encode(&Sha256::digest(canonical.as_bytes())[..16])
}

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    if !is_valid_idempotency_key(value.as_bytes()) {
        return Err(ApiError::InvalidRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    // Visible ASCII is valid UTF-8.
    Ok(value.to_str().ok())
}

/// Longest `Prefer: wait` honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The `wait=N` preference (RFC 7240), capped at [`MAX_WAIT`]. Preferences that are
/// malformed or unknown are ignored, as the RFC asks.
pub fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|pref| {
            let pref = pref.split(';').next()?.trim();
            let (name, value) = pref.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            let secs: u64 = value.trim().trim_matches('"').parse().ok()?;
            Some(Duration::from_secs(secs).min(MAX_WAIT))
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(id: &str) -> SeatId {
        SeatId::parse(id).unwrap()
    }

    /// Both parse paths (with and without a fingerprint) must agree.
    fn parse(body: &str) -> Result<Wanted, u16> {
        let keyed = ParsedClaim::parse(body.as_bytes())
            .map(|c| c.wanted)
            .map_err(|e| e.status().as_u16());
        let unkeyed = Wanted::parse(body.as_bytes()).map_err(|e| e.status().as_u16());
        assert_eq!(keyed, unkeyed, "{body}");
        keyed
    }

    fn fp(body: &str) -> String {
        ParsedClaim::parse(body.as_bytes()).unwrap().fingerprint
    }

    #[test]
    fn claim_bodies_are_exactly_one_of_seats_or_quantity() {
        assert_eq!(
            parse(r#"{"seats":["A1","A2"]}"#),
            Ok(Wanted::Seats(vec![seat("A1"), seat("A2")]))
        );
        assert_eq!(parse(r#"{"quantity":2}"#), Ok(Wanted::Quantity(2)));
        assert_eq!(
            parse(r#"{"seats":null,"quantity":2}"#),
            Ok(Wanted::Quantity(2))
        );
        for bad in [
            r#"{"seats":["A1"],"quantity":1}"#,
            r#"{}"#,
            r#"{"seats":[]}"#,
            r#"{"seats":["A1","A1"]}"#,
            r#"{"quantity":0}"#,
            r#"{"quantity":-1}"#,
            r#"{"quantity":1.5}"#,
            r#"{"quantity":"2"}"#,
            r#"{"seats":"A1"}"#,
            r#"{"seats":[1]}"#,
            r#"{"seat":["A1"]}"#,
            r#"["A1"]"#,
            r#"{"seats":["A1"]"#,
            "",
        ] {
            assert_eq!(parse(bad), Err(400), "{bad}");
        }
    }

    #[test]
    fn seat_ids_and_seat_counts_outside_the_contract_are_refused_before_redis() {
        let seats = |ids: Vec<String>| serde_json::json!({ "seats": ids }).to_string();
        assert_eq!(parse(&seats(vec!["".into()])), Err(400));
        assert_eq!(parse(&seats(vec!["x".repeat(33)])), Err(400));
        assert_eq!(parse(&seats(vec!["é".repeat(33)])), Err(400));
        assert!(parse(&seats(vec!["é".repeat(32)])).is_ok());
        let many = |n: usize| (0..n).map(|i| format!("S{i}")).collect::<Vec<_>>();
        assert!(parse(&seats(many(CLAIM_SEATS_MAX))).is_ok());
        assert_eq!(parse(&seats(many(CLAIM_SEATS_MAX + 1))), Err(400));
    }

    #[test]
    fn the_largest_valid_claim_fits_the_body_limit() {
        // 100 seat ids of 32 four-byte characters each.
        let ids: Vec<String> = (0..CLAIM_SEATS_MAX)
            .map(|i| format!("{i:03}{}", "😀".repeat(29)))
            .collect();
        let body = serde_json::json!({ "seats": ids }).to_string();
        assert!(body.len() <= CLAIM_BODY_LIMIT, "{} bytes", body.len());
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn the_same_json_value_has_the_same_fingerprint() {
        let a = fp(r#"{"seats":["A1","A2"]}"#);
        assert_eq!(a, fp("{ \"seats\" : [ \"A1\", \"A2\" ] }"));
        assert_ne!(a, fp(r#"{"seats":["A2","A1"]}"#));
        assert_ne!(a, fp(r#"{"seats":["A1A2"]}"#));
        // Key order does not matter.
        assert_eq!(
            fp(r#"{"quantity":2,"seats":null}"#),
            fp(r#"{"seats":null,"quantity":2}"#)
        );
    }

    #[test]
    fn the_fingerprint_is_of_what_was_sent() {
        // Both answered by the limit check alike, but not the same request.
        assert_ne!(fp(r#"{"quantity":500}"#), fp(r#"{"quantity":101}"#));
        assert_ne!(
            fp(r#"{"seats":null,"quantity":2}"#),
            fp(r#"{"quantity":2}"#)
        );
    }
}

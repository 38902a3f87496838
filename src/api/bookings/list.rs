//! `GET /v1/events/{id}/bookings`: a user's own bookings in an event, or, with the
//! admin token, every booking of the event; newest first, a page at a time.
//!
//! The admin's listing is MySQL's, the system of record. A user's is MySQL's merged
//! with the claims only Redis knows yet: a claim is acknowledged (202 `pending`) before
//! the reconciler persists it, and a user who just claimed expects to see the claim
//! among their bookings. Those claims are found through the user's Redis tally (their
//! live bookings), which the per-user limit keeps small, so no scan is needed.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

use crate::api::auth::Caller;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{parse_event_id, ApiPath};
use crate::api::openapi::{EventIdParam, EventReadErrors};
use crate::api::AppState;
use crate::db::listing::{self, PageQuery};
use crate::domain::{Booking, BookingStatus, EventId, UserId};

/// The most bookings one page lists.
pub const LIST_LIMIT_MAX: u32 = 500;
/// The bookings a page lists when the request does not say.
pub const LIST_LIMIT_DEFAULT: u32 = 100;

/// The query string, as sent. Each field is parsed by hand ([`Page::parse`]) so that
/// every bad value gets a message naming the parameter and what it takes; unknown
/// parameters are refused rather than ignored, so a misspelt filter (`?stauts=held`)
/// cannot pass for a listing of everything.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only bookings of this status. Claims MySQL does not have yet are `pending`.
    #[param(value_type = Option<BookingStatus>, nullable = false)]
    status: Option<String>,
    /// The most bookings to list: 1 to 500 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500, nullable = false)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page: lists the bookings older than it.
    #[param(format = "uuid", nullable = false)]
    cursor: Option<String>,
}

/// A page as the handler runs it: the query string, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Page {
    status: Option<BookingStatus>,
    limit: u32,
    /// The cursor in the stored ids' spelling (hyphenated, lower case), whatever
    /// spelling of the UUID the client sent, so it compares as the ids do.
    before: Option<String>,
}

impl Page {
    fn parse(query: ListQuery) -> Result<Self, ApiError> {
        let status = query
            .status
            .map(|s| {
                BookingStatus::parse(&s).ok_or_else(|| {
                    ApiError::InvalidRequest(
                        "status must be one of pending, held, confirmed, rejected, \
                         cancelled, expired"
                            .into(),
                    )
                })
            })
            .transpose()?;
        let limit = match query.limit {
            None => LIST_LIMIT_DEFAULT,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=LIST_LIMIT_MAX).contains(n))
                .ok_or_else(|| {
                    ApiError::InvalidRequest(format!(
                        "limit must be an integer from 1 to {LIST_LIMIT_MAX}"
                    ))
                })?,
        };
        let before = query
            .cursor
            .map(|raw| {
                uuid::Uuid::parse_str(&raw)
                    .map(|id| id.hyphenated().to_string())
                    .map_err(|_| {
                        ApiError::InvalidRequest(
                            "cursor must be the next_cursor of a previous page".into(),
                        )
                    })
            })
            .transpose()?;
        Ok(Self {
            status,
            limit,
            before,
        })
    }

    /// The MySQL query of this page: one row more than the page shows, whose presence
    /// says there is a next page.
    fn query<'a>(&'a self, user_id: Option<&'a str>) -> PageQuery<'a> {
        PageQuery {
            user_id,
            status: self.status,
            before: self.before.as_deref(),
            limit: self.limit + 1,
        }
    }
}

/// A page of bookings.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BookingList {
    /// Newest first.
    bookings: Vec<Booking>,
    /// Present when there may be more bookings: pass it back as `?cursor=` (with the
    /// same `status`) for the next page. Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = "uuid")]
    next_cursor: Option<String>,
}

impl BookingList {
    /// The page of `limit` from `newest_first` (which may hold one booking more, the
    /// sign of a next page).
    fn of(mut newest_first: Vec<Booking>, limit: u32) -> Self {
        let limit = limit as usize;
        let next_cursor = if newest_first.len() > limit {
            newest_first.truncate(limit);
            newest_first.last().map(|b| b.booking_id.clone())
        } else {
            None
        };
        Self {
            bookings: newest_first,
            next_cursor,
        }
    }
}

/// Bookings of an event: the caller's own (user JWT), or all of them (admin token)
///
/// Newest first, at most `limit` (default 100, at most 500) per page, with `next_cursor`
/// while there may be more. A user sees their bookings in every status, including a
/// claim just made that is still `pending` (known to Redis only until the reconciler
/// persists it, usually within milliseconds). The admin sees what MySQL, the system of
/// record, has: claims not persisted yet are not listed. Attendees are not part of a
/// listing.
#[utoipa::path(
    get,
    path = "/v1/events/{id}/bookings",
    params(EventIdParam, ListQuery),
    responses(
        (status = 200, description = "A page of bookings, newest first", body = BookingList),
        (status = 400, description = "`invalid_request`: a `status` that is not a booking status, a `limit` outside 1..500, a `cursor` that is not a UUID, or an unknown or repeated query parameter", body = ErrorBody),
        (status = 401, description = "`unauthorized`: missing, invalid or expired token", body = ErrorBody),
        EventReadErrors,
    ),
    security(("user_jwt" = []), ("admin_token" = []))
)]
pub(super) async fn list_bookings(
    State(app): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<BookingList>, ApiError> {
    // The caller, then the query string, then the event: a request wrong in several
    // ways is answered for the first of them, as the other booking operations are.
    let caller = app.auth.caller(&headers)?;
    let axum::extract::Query(query) = axum::extract::Query::<ListQuery>::try_from_uri(&uri)?;
    let page = Page::parse(query)?;
    let event_id = parse_event_id(event_id)?;
    app.ensure_on_sale(&event_id).await?;
    let list = match caller {
        Caller::Admin => {
            let rows = listing::event_bookings(&app.db, &event_id, &page.query(None)).await?;
            rows.into_iter().map(|row| row.into_booking()).collect()
        }
        Caller::User(user) => users_bookings(&app, &event_id, &user, &page).await?,
    };
    Ok(Json(BookingList::of(list, page.limit)))
}

/// The user's bookings of `page` (and one more, if there is one), newest first: MySQL's
/// rows merged with the claims of the user's Redis tally that MySQL does not have.
///
/// Redis is read first, MySQL second. A claim persisted in between is then found in
/// MySQL, and whenever MySQL has a booking its row is what is shown: MySQL is the system
/// of record for every settled state (a cancellation, a rejection, an expiry). Only a
/// claim MySQL does not have yet is shown as Redis has it, `pending`.
async fn users_bookings(
    app: &AppState,
    event_id: &EventId,
    user: &UserId,
    page: &Page,
) -> Result<Vec<Booking>, ApiError> {
    let ids = app.redis.user_booking_ids(event_id, user).await?;
    let records =
        futures::future::try_join_all(ids.iter().map(|id| app.redis.booking(event_id, id))).await?;

    let query = page.query(Some(user.as_str()));
    let rows = listing::event_bookings(&app.db, event_id, &query).await?;
    let mut merged: BTreeMap<String, Booking> = rows
        .into_iter()
        .map(|row| (row.id.clone(), row.into_booking()))
        .collect();

    // The tally's claims this page did not show: MySQL may have them outside the page
    // (another status, an older page, or persisted since Redis was read), or not yet.
    let unseen: Vec<Booking> = records
        .into_iter()
        .flatten()
        .filter(|b| !merged.contains_key(&b.booking_id))
        .collect();
    let unseen_ids: Vec<&str> = unseen.iter().map(|b| b.booking_id.as_str()).collect();
    let mut persisted = listing::bookings_by_id(&app.db, &unseen_ids).await?;
    for record in unseen {
        let booking = match persisted.remove(&record.booking_id) {
            Some(row) => row.into_booking(),
            None => record,
        };
        // `admits` checks the owner; the event is checked here (MySQL's row by id).
        if booking.event_id == event_id.as_str()
            && query.admits(&booking.booking_id, &booking.user_id, booking.status)
        {
            merged.insert(booking.booking_id.clone(), booking);
        }
    }
    // Ids ascend in the map; the page wants them descending, and no more than the rows
    // MySQL was asked for (a booking beyond them is older than every row of a full page).
    Ok(merged
        .into_values()
        .rev()
        .take(query.limit as usize)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: Option<&str>, limit: Option<&str>, cursor: Option<&str>) -> Option<Page> {
        Page::parse(ListQuery {
            status: status.map(str::to_owned),
            limit: limit.map(str::to_owned),
            cursor: cursor.map(str::to_owned),
        })
        .ok()
    }

    #[test]
    fn a_page_defaults_to_100_of_every_status() {
        assert_eq!(
            parse(None, None, None),
            Some(Page {
                status: None,
                limit: LIST_LIMIT_DEFAULT,
                before: None
            })
        );
    }

    #[test]
    fn limits_are_1_to_500_and_statuses_the_six() {
        for good in ["1", "500", "37"] {
            assert!(parse(None, Some(good), None).is_some(), "{good}");
        }
        for bad in ["0", "501", "-1", "", "1.5", "ten", "99999999999"] {
            assert!(parse(None, Some(bad), None).is_none(), "{bad}");
        }
        for good in [
            "pending",
            "held",
            "confirmed",
            "rejected",
            "cancelled",
            "expired",
        ] {
            assert!(parse(Some(good), None, None).is_some(), "{good}");
        }
        for bad in ["", "Confirmed", "booked", "all"] {
            assert!(parse(Some(bad), None, None).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_cursor_is_a_uuid_in_the_stored_spelling() {
        let page = parse(None, None, Some("01890F6E7C1A7CC28A3B3F2B1D6C9E55")).unwrap();
        assert_eq!(
            page.before.as_deref(),
            Some("01890f6e-7c1a-7cc2-8a3b-3f2b1d6c9e55")
        );
        for bad in ["", "b1", "01890f6e-7c1a-7cc2-8a3b"] {
            assert!(parse(None, None, Some(bad)).is_none(), "{bad}");
        }
    }

    fn booking(id: &str) -> Booking {
        Booking {
            booking_id: id.into(),
            event_id: "e".into(),
            user_id: "u".into(),
            seats: vec![],
            status: BookingStatus::Confirmed,
            reason: None,
            expires_at: None,
            attendees: None,
        }
    }

    #[test]
    fn a_page_with_a_row_more_than_its_limit_names_its_last_as_the_cursor() {
        let list = BookingList::of(vec![booking("c"), booking("b"), booking("a")], 2);
        let ids: Vec<_> = list
            .bookings
            .iter()
            .map(|b| b.booking_id.as_str())
            .collect();
        assert_eq!(ids, ["c", "b"]);
        assert_eq!(list.next_cursor.as_deref(), Some("b"));

        let last = BookingList::of(vec![booking("b"), booking("a")], 2);
        assert_eq!(last.bookings.len(), 2);
        assert_eq!(last.next_cursor, None);
    }
}

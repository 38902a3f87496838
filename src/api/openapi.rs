//! `GET /openapi.json`: the API's OpenAPI 3.1 document, generated from the handlers
//! (`#[utoipa::path]`) and their types (`ToSchema`).
//!
//! Every resource module declares its routes with `utoipa_axum`'s `routes!`, which
//! registers a handler with the router and its `#[utoipa::path]` with the document in
//! one step, so a route cannot be served without being described. The document served
//! is the one split off the very router that serves the API (see [`super::router`]).

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;
use utoipa::openapi::schema::{Array, ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, ErrorCode};
use super::AppState;
use crate::domain::{PER_USER_LIMIT_MAX, SEATS_MAX, SEAT_ID_MAX};

/// The 503 most operations document: `unavailable`, with `Retry-After`.
#[derive(ToResponse)]
#[response(
    description = "`unavailable`: a backend failed or the request timed out",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub(crate) struct Unavailable(#[allow(dead_code)] ErrorBody);

/// The 404 of the operations on an event that must be on sale.
#[derive(ToResponse)]
#[response(description = "`event_not_found`: unknown, or not on sale (not warmed)")]
pub struct EventNotFound(#[allow(dead_code)] ErrorBody);

/// The `{id}` of an event's path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct EventIdParam {
    /// Event id
    id: String,
}

/// The `{id}` and `{booking_id}` of a booking's path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct BookingParams {
    /// Event id
    id: String,
    /// Booking id (a UUID)
    #[param(format = "uuid")]
    booking_id: String,
}

/// The 401 of the admin operations.
#[derive(ToResponse)]
#[response(description = "`unauthorized`: missing or wrong admin token")]
pub(crate) struct AdminUnauthorized(#[allow(dead_code)] ErrorBody);

/// The failures of a public read of an event on sale: 404 and 503.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum EventReadErrors {
    #[response(status = 404)]
    NotFound(#[to_response] EventNotFound),
    #[response(status = 503)]
    Unavailable(#[to_response] Unavailable),
}

/// The failures of an admin operation on an existing event: 401, 404 and 503.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum AdminEventErrors {
    #[response(status = 401)]
    Unauthorized(#[to_response] AdminUnauthorized),
    #[response(status = 404, description = "`event_not_found`")]
    NotFound(ErrorBody),
    #[response(status = 503)]
    Unavailable(#[to_response] Unavailable),
}

/// The failures of an operation on a booking, open to its owner and the admin: 401,
/// 404 and 503.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum BookingErrors {
    #[response(
        status = 401,
        description = "`unauthorized`: missing, invalid or expired token"
    )]
    Unauthorized(ErrorBody),
    #[response(
        status = 404,
        description = "`booking_not_found` (also for anyone but its owner and the admin); `event_not_found`"
    )]
    NotFound(ErrorBody),
    #[response(status = 503)]
    Unavailable(#[to_response] Unavailable),
}

/// A list of seat ids in a request body: unique, each 1 to 32 characters (and matching
/// `pattern`, if given). Written by hand because `ToSchema` cannot constrain the items
/// of a `Vec<String>`, and a document without the constraints has fuzzers (and
/// clients) send what is always refused.
fn seat_ids(max_items: usize, pattern: Option<&str>) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(SEAT_ID_MAX))
                .pattern(pattern),
        )
        .min_items(Some(1))
        .max_items(Some(max_items))
        .unique_items(true)
}

/// `seats` of `POST /v1/admin/events`: 1 to 100,000 unique seat ids, none ending with a
/// space (MySQL's PAD SPACE comparison would make `"A1 "` and `"A1"` one row).
pub(crate) fn event_seats() -> Array {
    seat_ids(SEATS_MAX, Some("[^ ]$")).build()
}

/// `seats` of a claim: 1 to 100 unique seat ids (`null` counts as absent).
pub fn claim_seats() -> Array {
    seat_ids(PER_USER_LIMIT_MAX as usize, None)
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .build()
}

/// Tags every operation of `router` with `tag`. The API has one module per resource and
/// a resource's operations share its tag, so a module names its tag once, here, rather
/// than in each `#[utoipa::path]`.
pub(crate) fn tagged(tag: &str, mut router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            operation.tags = Some(vec![tag.to_owned()]);
        }
    }
    router
}

/// The name of the admin bearer token's security scheme.
pub(crate) const ADMIN_TOKEN: &str = "admin_token";
/// The name of the user JWT's security scheme.
pub(crate) const USER_JWT: &str = "user_jwt";

/// The document's frame: info, tags, security schemes and the shared error schemas.
/// The paths come from the resource routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "seatgate",
        description = "Redis-fronted seat reservation gateway for ticket drops. \
            Every error body is `{\"error\": \"<code>\", \"message\": \"<text>\"}` plus the \
            fields some codes carry (`seats`, `limit`, `booking_id`, `reason`); 503 and 429 \
            answers carry `Retry-After`. A path the API does not serve is answered 404 \
            `not_found`, a method it does not take 405 `method_not_allowed`."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody, ErrorCode)),
    tags(
        (name = "admin", description = "Create, warm and audit events (admin token)"),
        (name = "events", description = "Public reads of events on sale (no token)"),
        (name = "bookings", description = "Claim, read and cancel bookings (user JWT; admin token for reads and cancels)"),
        (name = "operations", description = "Health, readiness, metrics and this document (no token)"),
        (name = "live", description = "The live seat map page and its assets (no token)"),
    )
)]
pub(crate) struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <SEATGATE_ADMIN_TOKEN>`; missing or wrong: \
                         401 `unauthorized`",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            USER_JWT,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "`Authorization: Bearer <JWT>`, HS256 signed with \
                         `SEATGATE_JWT_SECRET`; `sub` (1 to 128 characters) is the user id, \
                         `exp` is required; missing, bad signature or expired: 401 \
                         `unauthorized`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The served document, serialized once.
#[derive(Clone)]
pub(crate) struct Spec(Bytes);

impl Spec {
    pub fn new(openapi: &utoipa::openapi::OpenApi) -> Self {
        let json = serde_json::to_vec(openapi).expect("an OpenAPI document serializes to JSON");
        Self(Bytes::from(json))
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    tagged(
        "operations",
        OpenApiRouter::new().routes(routes!(openapi_json)),
    )
}

/// This OpenAPI document
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object,
            content_type = "application/json"),
    ),
    security(())
)]
async fn openapi_json(Extension(spec): Extension<Spec>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], spec.0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use utoipa::openapi::path::ParameterIn;

    /// Built without a server: every operation states its security, documents each
    /// parameter of its path template, has a unique operation id, and carries one tag,
    /// one the document describes (its resource module's, see [`super::tagged`]).
    #[test]
    fn every_operation_states_security_path_parameters_a_unique_id_and_a_tag() {
        let doc = crate::api::openapi_doc();
        let declared: HashSet<_> = doc
            .tags
            .iter()
            .flatten()
            .map(|tag| tag.name.clone())
            .collect();
        let mut ids = HashSet::new();
        let mut count = 0;
        for (path, item) in &doc.paths.paths {
            let ops = [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("patch", &item.patch),
                ("delete", &item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                count += 1;
                let what = format!("{method} {path}");
                assert!(op.security.is_some(), "{what} states no security");
                match op.tags.as_deref() {
                    Some([tag]) => assert!(declared.contains(tag), "{what}: tag {tag} undeclared"),
                    other => panic!("{what}: tags {other:?}, not one"),
                }
                assert!(
                    !op.responses.responses.is_empty(),
                    "{what} has no responses"
                );
                let id = op.operation_id.clone().expect("an operation id");
                assert!(ids.insert(id.clone()), "{what}: operation id {id} twice");
                let params = op.parameters.as_deref().unwrap_or_default();
                for name in path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                {
                    assert!(
                        params
                            .iter()
                            .any(|p| p.name == name && p.parameter_in == ParameterIn::Path),
                        "{what} does not document {{{name}}}"
                    );
                }
            }
        }
        assert!(count > 0);
    }
}

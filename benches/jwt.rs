//! Who is calling: `Auth::caller` on a request's headers. Pure CPU, no services.
//!
//! - `user_jwt`: a valid HS256 user JWT (SHA-256 of the token for the admin check, then
//!   signature, `exp` and `sub` validation).
//! - `admin_token`: the admin bearer token (constant-time digest compare only).
//! - `bad_signature`: a JWT signed with another secret (the 401 path).
//!
//! Run: `cargo bench --bench jwt`

use axum::http::{header, HeaderMap, HeaderValue};
use criterion::{criterion_group, criterion_main, Criterion};
use seatgate::api::auth::{sign_user_token, Auth, Caller};
use seatgate::config::Secret;
use seatgate::domain::UserId;
use std::hint::black_box;
use std::time::Duration;

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("a valid header value"),
    );
    // A few more headers, as a real request carries.
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers
}

fn jwt(c: &mut Criterion) {
    let admin = Secret::new("bench-admin-token-0123456789abcdef");
    let secret = Secret::new("bench-jwt-secret-0123456789abcdef");
    let auth = Auth::new(&admin, &secret);

    let user = bearer(&sign_user_token(&secret, "user-0042", 3600));
    let admin_headers = bearer(admin.expose());
    let forged = bearer(&sign_user_token(
        &Secret::new("some-other-secret"),
        "user-0042",
        3600,
    ));
    assert_eq!(
        auth.caller(&user).ok(),
        Some(Caller::User(UserId::parse("user-0042").unwrap()))
    );
    assert_eq!(auth.caller(&admin_headers).ok(), Some(Caller::Admin));
    assert!(auth.caller(&forged).is_err());

    let mut group = c.benchmark_group("auth_caller");
    group.bench_function("user_jwt", |b| {
        b.iter(|| auth.caller(black_box(&user)).is_ok())
    });
    group.bench_function("admin_token", |b| {
        b.iter(|| auth.caller(black_box(&admin_headers)).is_ok())
    });
    group.bench_function("bad_signature", |b| {
        b.iter(|| auth.caller(black_box(&forged)).is_err())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = jwt
}
criterion_main!(benches);

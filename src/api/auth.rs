//! Who is calling: the admin (a static bearer token) or a user (an HS256 JWT).
//!
//! The admin token is compared in constant time over SHA-256 digests, so neither its
//! content nor its length leaks through timing. JWTs are accepted only as HS256 (the
//! algorithm list is fixed, so `none` or an RSA/HMAC confusion cannot get in), `exp` is
//! required, and the user id is the `sub` claim. The decoding key and validation rules
//! are built once at start, not per request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::config::Secret;
use crate::domain::UserId;

/// Clock skew tolerated on `exp`, in seconds (the contract allows at most 60).
pub(crate) const JWT_LEEWAY_SECS: u64 = 30;

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    /// A user, by the token's `sub`.
    User(UserId),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Verifies admin tokens and user JWTs.
pub struct Auth {
    admin_digest: [u8; 32],
    decoding: DecodingKey,
    validation: Validation,
}

impl Auth {
    pub fn new(admin_token: &Secret, jwt_secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = JWT_LEEWAY_SECS;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            admin_digest: Sha256::digest(admin_token.expose().as_bytes()).into(),
            decoding: DecodingKey::from_secret(jwt_secret.expose().as_bytes()),
            validation,
        }
    }

    /// The caller named by the `Authorization: Bearer …` header.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let token = bearer(headers)?;
        if self.is_admin_token(token) {
            return Ok(Caller::Admin);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| ApiError::Unauthorized("invalid or expired token"))?;
        let user = UserId::parse(data.claims.sub)
            .map_err(|_| ApiError::Unauthorized("the token's sub must be 1 to 128 characters"))?;
        Ok(Caller::User(user))
    }

    /// Requires the admin token.
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.is_admin_token(bearer(headers)?) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("admin token required"))
        }
    }

    fn is_admin_token(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        digest.ct_eq(&self.admin_digest).into()
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("missing Authorization header"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(ApiError::Unauthorized("expected a Bearer token"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized("expected a Bearer token"));
    }
    Ok(token.trim())
}

/// Signs a user JWT (HS256) valid for `ttl_secs` (the `token` subcommand, tests, the
/// demo).
pub fn sign_user_token(jwt_secret: &Secret, user_id: &str, ttl_secs: u64) -> String {
    sign_claims(jwt_secret, user_id, crate::clock::unix_secs() + ttl_secs)
}

/// Signs a JWT with the given `exp` (tests use it for expired tokens).
pub fn sign_claims(jwt_secret: &Secret, user_id: &str, exp: u64) -> String {
    let claims = Claims {
        sub: user_id.to_owned(),
        exp,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(jwt_secret.expose().as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

/// Proof that the request carries the admin token: an admin handler takes it as an
/// argument, after the extractors whose rejections come first (path, query), so the
/// token is checked before the handler reads a body or touches a store.
pub(crate) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        app.auth.admin(&parts.headers).map(|()| Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    fn auth() -> Auth {
        Auth::new(&Secret::new("admin-secret"), &Secret::new("jwt-secret"))
    }

    #[test]
    fn the_admin_token_makes_an_admin() {
        assert_eq!(
            auth().caller(&headers("admin-secret")).unwrap(),
            Caller::Admin
        );
        assert!(auth().admin(&headers("admin-secre")).is_err());
        assert!(auth().admin(&HeaderMap::new()).is_err());
    }

    #[test]
    fn a_signed_jwt_names_its_user() {
        let token = sign_user_token(&Secret::new("jwt-secret"), "alice", 60);
        assert_eq!(
            auth().caller(&headers(&token)).unwrap(),
            Caller::User(UserId::parse("alice").unwrap())
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let wrong_key = sign_user_token(&Secret::new("other"), "alice", 60);
        assert!(auth().caller(&headers(&wrong_key)).is_err());
        let expired = sign_claims(&Secret::new("jwt-secret"), "alice", 1_000_000);
        assert!(auth().caller(&headers(&expired)).is_err());
        let long_sub = sign_user_token(&Secret::new("jwt-secret"), &"x".repeat(129), 60);
        assert!(auth().caller(&headers(&long_sub)).is_err());
        // alg "none": header {"alg":"none","typ":"JWT"}, payload {"sub":"alice","exp":9999999999}
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(auth().caller(&headers(none)).is_err());
    }
}

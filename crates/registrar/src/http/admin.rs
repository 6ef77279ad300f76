//! The guard on operator endpoints: with `ADMIN_TOKEN` set, a matching bearer token is
//! required; without it, only loopback clients are served.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, header};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::domain::error::ErrorCode;

pub fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
) -> Result<(), ApiError> {
    match &state.config.admin_token {
        Some(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    // The scheme name is case-insensitive.
                    let (scheme, token) = v.split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("bearer")
                        .then_some(token.trim())
                });
            match presented {
                Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Ok(()),
                Some(_) => Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "The bearer token is not valid for operator endpoints",
                    json!({ "required_permission": "admin" }),
                )),
                None => Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "Operator endpoints require the header Authorization: Bearer <ADMIN_TOKEN>",
                    json!({}),
                )),
            }
        }
        None => match peer {
            Some(ConnectInfo(addr)) if addr.ip().is_loopback() => Ok(()),
            _ => Err(ApiError::new(
                ErrorCode::Forbidden,
                "Operator endpoints accept only loopback clients while ADMIN_TOKEN is unset",
                json!({ "required_permission": "admin" }),
            )),
        },
    }
}

/// Compares tokens without stopping at the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

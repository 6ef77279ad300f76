//! Request extractors that report problems in the error envelope, naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::domain::error::{ErrorCode, FieldError};

/// A JSON body whose type errors name the field: `body -> grupos -> 1`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = declared_non_json_type(&req);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "The request body is larger than the server accepts; send a smaller body",
                    json!({}),
                )
            } else {
                ApiError::new(
                    ErrorCode::ValidationError,
                    "The request body could not be read",
                    json!({}),
                )
            }
        })?;
        // The body is parsed as JSON whatever the declared type, because clients such as
        // curl -d send JSON labelled as a form; a body that is not JSON then gets 415.
        parse_json(&bytes)
            .map(JsonBody)
            .map_err(|e| match content_type {
                Some(essence) => ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("Content-Type {essence:?} is not supported; send application/json"),
                    json!({ "content_type": essence }),
                ),
                None => e,
            })
    }
}

/// Returns the declared media type when it is present and not JSON.
fn declared_non_json_type(req: &Request) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?;
    let mime = value.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = mime.split(';').next().unwrap_or("").trim().to_owned();
    let is_json = essence == "application/json" || essence.ends_with("+json");
    (!is_json).then_some(essence)
}

/// Parses `bytes` as `T`, turning serde's error into a field error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(vec![FieldError {
            field: "body".into(),
            message: "a JSON body is required".into(),
            kind: "missing",
            input: Value::Null,
        }]));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        let mut field = path_to_field(&e.path().to_string());
        let message = inner.to_string();
        let kind = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "json_invalid"
            }
            serde_json::error::Category::Data => "type_error",
            serde_json::error::Category::Io => "io_error",
        };
        let kind = if let Some(name) = missing_field(&message) {
            field = format!("{field} -> {name}");
            "missing"
        } else {
            kind
        };
        // A syntax error's position is the fix; a data error's field already locates it.
        let message = if kind == "json_invalid" {
            message
        } else {
            strip_position(&message)
        };
        ApiError::validation(vec![FieldError {
            field,
            message,
            kind,
            input: Value::Null,
        }])
    })
}

/// `grupos[1]` becomes `body -> grupos -> 1`; the root `.`, and the `?` that marks an
/// unknown position in malformed JSON, become `body`.
fn path_to_field(path: &str) -> String {
    let mut field = String::from("body");
    for part in path
        .split(['.', '[', ']'])
        .filter(|p| !p.is_empty() && *p != "?")
    {
        field.push_str(" -> ");
        field.push_str(part);
    }
    field
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Drops serde_json's " at line 1 column 5" suffix for data errors, keeping it for syntax.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) if !message.starts_with("expected") && !message.starts_with("EOF") => {
            message[..i].to_owned()
        }
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::InscripcionCreate;

    #[test]
    fn wrong_type_names_the_element() {
        let err = parse_json::<InscripcionCreate>(
            br#"{"registro_academico":"E","codigo_periodo":"P","grupos":["A",5]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.details["validation_errors"][0]["field"],
            "body -> grupos -> 1"
        );
    }

    #[test]
    fn missing_field_is_named() {
        let err =
            parse_json::<InscripcionCreate>(br#"{"registro_academico":"E","codigo_periodo":"P"}"#)
                .unwrap_err();
        assert_eq!(
            err.details["validation_errors"][0]["field"],
            "body -> grupos"
        );
        assert_eq!(err.details["validation_errors"][0]["type"], "missing");
    }

    #[test]
    fn malformed_json_is_a_validation_error() {
        let err = parse_json::<InscripcionCreate>(b"{not json").unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationError);
        assert_eq!(err.details["validation_errors"][0]["type"], "json_invalid");
    }
}

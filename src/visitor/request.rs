//! What both visitor calls read from a request: headers, client IP, content type and body,
//! and the JSON object in it.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use serde_json::Value;

use super::MAX_BODY_BYTES;
use super::client_ip;
use super::refusal::Refusal;
use crate::domain::{FieldError, TrustedProxies};

/// All values of a header joined with ", ", as proxies treat repeated headers.
pub fn joined_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

pub fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The visitor's address (see [`client_ip::resolve`]).
pub fn client_ip(req: &HttpRequest, trusted_proxies: &TrustedProxies) -> IpAddr {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    if trusted_proxies.is_empty() {
        return peer.to_canonical();
    }
    // A value that is not visible ASCII still counts: as a hop nobody can read, so that sending
    // one cannot make the request look as if it had no X-Forwarded-For (and X-Real-IP count).
    let values: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| v.to_str().unwrap_or("unreadable"))
        .collect();
    let forwarded_for = (!values.is_empty()).then(|| values.join(", "));
    client_ip::resolve(
        peer,
        forwarded_for.as_deref(),
        header_str(req, "x-real-ip"),
        trusted_proxies,
    )
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    UnsupportedMediaType,
    TooLarge,
    Unreadable,
    /// The client did not finish sending the body within [`BODY_TIMEOUT`].
    TooSlow,
}

/// How long a client may take to send a (at most 64 KiB) body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `application/json`, with no parameter or `charset=utf-8`, in any letter case.
pub fn is_json_content_type(req: &HttpRequest) -> bool {
    let Some(value) = header_str(req, header::CONTENT_TYPE.as_str()) else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    let essence_ok = parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json"));
    essence_ok
        && parts.filter(|p| !p.is_empty()).all(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("charset")
                    && v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            })
        })
}

/// Reads a JSON body as [`read_json_body`] does; what stops it is the refusal to answer with.
pub async fn read_body(req: &HttpRequest, payload: web::Payload) -> Result<web::BytesMut, Refusal> {
    read_json_body(req, payload).await.map_err(|e| match e {
        BodyError::UnsupportedMediaType => Refusal::UnsupportedMediaType,
        BodyError::TooLarge => Refusal::TooLarge,
        BodyError::TooSlow => Refusal::TooSlow,
        BodyError::Unreadable => Refusal::BadParams("request body could not be read".to_owned()),
    })
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`], refusing early on Content-Length.
pub async fn read_json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<web::BytesMut, BodyError> {
    if !is_json_content_type(req) {
        return Err(BodyError::UnsupportedMediaType);
    }
    let declared =
        header_str(req, header::CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or(Err(BodyError::TooSlow))
}

/// Deepest nesting of arrays and objects a visitor body may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`], including inside ignored fields
/// (which the parser skips without a depth limit).
pub fn check_nesting(body: &[u8]) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(format!(
                        "request body is nested more than {MAX_JSON_DEPTH} levels deep"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Present JSON values, `null` included (a plain `Option<Value>` turns `null` into `None`).
pub fn present<'de, D>(deserializer: D) -> Result<Option<Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// Parses a visitor's JSON body into `T`: valid UTF-8, an object, not nested too deeply.
/// The error is the `resultDesc` to answer with.
pub fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if std::str::from_utf8(body).is_err() {
        return Err("request body is not valid UTF-8".to_owned());
    }
    check_nesting(body)?;
    let parsed = serde_json::from_slice::<T>(body);
    // Checked after parsing so that malformed JSON is reported as such; serde would also
    // accept an array for a struct.
    match parsed {
        Ok(_) | Err(_) if body.trim_ascii_start().first() == Some(&b'[') => {
            Err("request body must be a JSON object".to_owned())
        }
        Ok(value) => Ok(value),
        Err(e) => Err(describe_json_error(body, &e)),
    }
}

fn describe_json_error(body: &[u8], e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data if body.trim_ascii_start().first() != Some(&b'{') => {
            "request body must be a JSON object".to_owned()
        }
        Category::Data => format!("request body is not acceptable: {e}"),
        Category::Syntax | Category::Eof | Category::Io => {
            format!("request body is not valid JSON: {e}")
        }
    }
}

/// A JSON string field, or an error naming the field and what it was instead.
pub fn string_field<'a>(name: &str, value: Option<&'a Value>) -> Result<&'a str, FieldError> {
    match value {
        None => Err(FieldError::new(name, "is missing")),
        Some(Value::Null) => Err(FieldError::new(name, "must not be null")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::new(name, "must be a string")),
    }
}

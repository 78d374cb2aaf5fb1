//! Browsers on other sites (CONTRACT §2.1a): which origins may call a channel, the CORS
//! allowance an accepted request's answer carries, and the preflight.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};

use super::VisitorState;
use super::refusal::Refusal;
use super::request::header_str;
use crate::domain::WebOrigin;

/// The CORS headers an answer carries: none, or those that let a page on one origin read it
/// and send cookies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    allowed_origin: Option<String>,
}

impl Cors {
    /// The allowance for a request on a channel with `allowed` origins: none for a request
    /// without an `Origin`, the origin's own for an allowed one, and a refusal otherwise.
    pub fn for_channel(req: &HttpRequest, allowed: &[String]) -> Result<Cors, Refusal> {
        let origin = origin(req);
        if !origin_allowed(req, origin, allowed) {
            return Err(Refusal::ForbiddenOrigin);
        }
        Ok(Cors {
            allowed_origin: origin.map(str::to_owned),
        })
    }

    /// Adds the headers to an answer being built (the last step of rendering it).
    pub fn insert_into(self, builder: &mut HttpResponseBuilder) {
        if let Some(origin) = self.allowed_origin {
            builder
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
                .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
                .insert_header((header::VARY, "Origin"));
        }
    }
}

/// The request's `Origin`, if a browser sent one.
fn origin(req: &HttpRequest) -> Option<&str> {
    header_str(req, header::ORIGIN.as_str()).filter(|o| !o.is_empty())
}

/// Whether a request from `origin` may act on a channel with `allowed` origins. Requests with
/// no Origin (not from a browser page, or same-origin GET) are allowed; so are the service's
/// own pages, whose origin's host is the request's Host.
fn origin_allowed(req: &HttpRequest, origin: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if normalized_origin(origin).is_some_and(|o| allowed.iter().any(|a| a == o.as_str())) {
        return true;
    }
    let host = header_str(req, header::HOST.as_str()).unwrap_or_default();
    let lowered = origin.trim_end_matches('/').to_ascii_lowercase();
    let origin_host = lowered
        .strip_prefix("https://")
        .or_else(|| lowered.strip_prefix("http://"));
    !host.is_empty() && origin_host.is_some_and(|h| h.eq_ignore_ascii_case(host))
}

/// An `Origin` header in the form channels store their origins in (see [`WebOrigin`]);
/// `None` for anything that is not a web origin, such as `null`.
fn normalized_origin(origin: &str) -> Option<WebOrigin> {
    WebOrigin::parse(origin).ok()
}

/// `OPTIONS` preflight: answered for origins that some enabled channel lists. The preflight
/// carries no token or body, so which channel is meant is not known yet; the real request is
/// checked against its own channel.
pub async fn preflight(req: HttpRequest, state: web::Data<VisitorState>) -> HttpResponse {
    let Some(origin) = origin(&req) else {
        return HttpResponse::NoContent().finish();
    };
    let Some(normalized) = normalized_origin(origin) else {
        return forbidden();
    };
    match state.store.origin_is_registered(normalized).await {
        Ok(true) => {
            let mut builder = HttpResponse::NoContent();
            let allowance = Cors {
                allowed_origin: Some(origin.to_owned()),
            };
            allowance.insert_into(&mut builder);
            builder
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"))
                .insert_header((
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "content-type, ccmessaging-token",
                ))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
                .finish()
        }
        Ok(false) => forbidden(),
        Err(e) => {
            tracing::error!(error = ?e, "preflight origin lookup failed");
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}

fn forbidden() -> HttpResponse {
    HttpResponse::Forbidden()
        .insert_header((header::VARY, "Origin"))
        .finish()
}

//! Browsers on other sites (CONTRACT §2.1a): which origins may call a channel, the CORS
//! allowance an answer carries, and the preflight.
//!
//! Which origins a channel lists is read from the database whenever it decides something: the
//! preflight asks it, applyToken reads the channel, and doLeaveMessage reads a cross-origin
//! caller's token and channel afresh (see `authenticate`). A channel updated through any
//! instance or the command line is followed at once.
//!
//! Every answer to an allowed origin carries the CORS headers, refusals included, so that a
//! page on another site can read why (an expired token, a rate limit, the database down) and
//! act on it. When the refusal comes before the channel is known (no valid token yet, the
//! per-IP limit, the database unreachable), the database is asked whether an enabled channel
//! lists the origin, as a preflight does; except for a rate limit or an unreachable database,
//! where a query would add load or wait in vain: then [`KnownOrigins`] answers, the origins
//! enabled channels listed when last read (at most a minute ago).

use std::collections::HashSet;
use std::sync::RwLock;

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
    pub fn for_channel(
        req: &HttpRequest,
        allowed: &[String],
        own: Option<&WebOrigin>,
    ) -> Result<Cors, Refusal> {
        let origin = origin(req);
        if !origin_allowed(req, origin, allowed, own) {
            return Err(Refusal::ForbiddenOrigin);
        }
        Ok(Cors {
            allowed_origin: origin.map(str::to_owned),
        })
    }

    /// The allowance for `refusal`, sent before the request's channel is known: for the
    /// service's own pages, or an origin that some enabled channel lists.
    pub async fn for_refusal(req: &HttpRequest, state: &VisitorState, refusal: &Refusal) -> Cors {
        let Some(origin) = origin(req) else {
            return Cors::default();
        };
        let allowed = Cors {
            allowed_origin: Some(origin.to_owned()),
        };
        if origin_allowed(req, Some(origin), &[], state.own_origin.as_ref()) {
            return allowed;
        }
        let Some(normalized) = normalized_origin(origin) else {
            return Cors::default();
        };
        let known = &state.known_origins;
        let listed = match refusal {
            Refusal::RateLimited { .. } | Refusal::Unavailable => {
                known.contains(normalized.as_str())
            }
            _ => match state.store.origin_is_registered(normalized.clone()).await {
                Ok(listed) => {
                    known.learn(normalized.as_str(), listed);
                    listed
                }
                Err(e) => {
                    tracing::warn!(error = ?e, "origin lookup for a refusal failed");
                    known.contains(normalized.as_str())
                }
            },
        };
        if listed { allowed } else { Cors::default() }
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

/// Origins that enabled channels list, as this instance last read them: refreshed by the
/// visitor interface's housekeeping, and corrected whenever a channel is read or the database
/// is asked about an origin. Used only where asking the database is unwise (see the module).
#[derive(Default)]
pub struct KnownOrigins {
    origins: RwLock<HashSet<String>>,
}

/// Beyond this many origins the memory starts afresh (it is refilled as channels are read).
const MAX_KNOWN_ORIGINS: usize = 10_000;

impl KnownOrigins {
    pub fn contains(&self, origin: &str) -> bool {
        self.origins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(origin)
    }

    /// Remembers the origins of a channel just read.
    pub fn add(&self, origins: &[String]) {
        if origins.iter().all(|o| self.contains(o)) {
            return;
        }
        let mut known = self
            .origins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() + origins.len() > MAX_KNOWN_ORIGINS {
            known.clear();
        }
        known.extend(origins.iter().cloned());
    }

    /// Records what the database just said about one origin.
    pub fn learn(&self, origin: &str, listed: bool) {
        if listed {
            self.add(&[origin.to_owned()]);
        } else if self.contains(origin) {
            self.origins
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(origin);
        }
    }

    /// Replaces what is known with every origin enabled channels list now.
    pub fn replace(&self, origins: Vec<String>) {
        let fresh: HashSet<String> = origins.into_iter().take(MAX_KNOWN_ORIGINS).collect();
        *self
            .origins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
    }
}

/// Whether the request comes from a page on another site: it has an `Origin` that is not the
/// service's own. Only such a request depends on which origins its channel lists.
pub fn from_another_site(req: &HttpRequest, own: Option<&WebOrigin>) -> bool {
    origin(req).is_some_and(|o| !origin_allowed(req, Some(o), &[], own))
}

/// The request's `Origin`, if a browser sent one.
fn origin(req: &HttpRequest) -> Option<&str> {
    header_str(req, header::ORIGIN.as_str()).filter(|o| !o.is_empty())
}

/// Whether a request from `origin` may act on a channel with `allowed` origins. Requests with
/// no Origin (not from a browser page, or same-origin GET) are allowed; so are the service's
/// own pages: those on the origin of `LEAVEMSG_PUBLIC_URL` (`own`, when set), and those whose
/// origin's host is the request's Host (which a reverse proxy may have rewritten).
fn origin_allowed(
    req: &HttpRequest,
    origin: Option<&str>,
    allowed: &[String],
    own: Option<&WebOrigin>,
) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if normalized_origin(origin)
        .is_some_and(|o| allowed.iter().any(|a| a == o.as_str()) || own == Some(&o))
    {
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
    let registered = state.store.origin_is_registered(normalized.clone()).await;
    if let Ok(listed) = registered {
        state.known_origins.learn(normalized.as_str(), listed);
    }
    match registered {
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

//! doLeaveMessage's first stage: who is calling. Tokens come from the Cookie header(s) and the
//! `ccmessaging-token` header; their signature and expiry are checked without the database;
//! then the per-IP limit (before any database work); then the holder of the first that is
//! current, remembered by this instance or asked of the store.
//!
//! A holder remembered from memory may be stale (the token replaced or revoked through another
//! instance, or the channel disabled). The write re-checks the token in its own statement; and
//! [`confirm_before_refusal`] makes any other refusal wait for the database's word, so a token
//! that is no longer current always gets its 401 first, as the contract requires.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header;
use chrono::Utc;

use super::refusal::Refusal;
use super::{TOKEN_NAME, VisitorState, cors, request};
use crate::counters::{self, DbOperation};
use crate::credentials::{TokenError, VerifiedToken};
use crate::store::StoreError;
use crate::store::tokens::TokenHolder;

/// Tokens looked at in one request.
const MAX_CANDIDATES: usize = 4;

pub const NO_LONGER_VALID: &str =
    "the ccmessaging-token was replaced or revoked, or its channel is disabled";

/// A caller whose token checked out.
pub struct Authenticated {
    pub token: VerifiedToken,
    pub holder: TokenHolder,
    pub client_ip: IpAddr,
    /// The holder came from this instance's memory rather than the database.
    remembered: bool,
}

/// Token, per-IP limit, holder: the caller, or why not. A request may carry several tokens
/// (cookies of other paths, the header): the first that is its visitor's current token wins,
/// so a replaced token in a cookie does not hide a current one in the header. Among several,
/// only the database can say which is current (this instance's memory may still hold one that
/// was replaced), so memory is used only for a lone token. Nor is it used for a page on another
/// site: whether its origin may call is decided by the channel's origins as they are now (a
/// `channel update` through any instance or the command line), which memory may not hold.
pub async fn authenticate(
    req: &HttpRequest,
    state: &VisitorState,
) -> Result<Authenticated, Refusal> {
    let tokens = verified_tokens(req, state)?;
    let client_ip = request::client_ip(req, &state.trusted_proxies);
    state.limit_ip(client_ip)?;
    let memory = tokens.len() == 1 && !cors::from_another_site(req, state.own_origin.as_ref());
    for token in tokens {
        if let Some((holder, remembered)) = holder(state, &token, memory).await? {
            return Ok(Authenticated {
                token,
                holder,
                client_ip,
                remembered,
            });
        }
    }
    Err(Refusal::Unauthorized(NO_LONGER_VALID))
}

/// The token's holder, and whether it came from this instance's memory (looked in first when
/// `memory`); `None` when the token is no longer its visitor's current one.
async fn holder(
    state: &VisitorState,
    token: &VerifiedToken,
    memory: bool,
) -> Result<Option<(TokenHolder, bool)>, Refusal> {
    if let Some(holder) = memory
        .then(|| state.tokens.get(&token.hash.0, Utc::now()))
        .flatten()
    {
        return Ok(Some((holder, true)));
    }
    match holder_in_database(state, token).await {
        Ok(Some(holder)) => {
            let expires_at = token.claims.expires_at;
            state
                .tokens
                .insert(token.hash.0, holder.clone(), expires_at);
            Ok(Some((holder, false)))
        }
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::error!(error = ?e, "token lookup failed");
            counters::database_failure(DbOperation::TokenLookup);
            Err(Refusal::Unavailable)
        }
    }
}

/// A refusal about the request rather than the token is only sent once the database confirms
/// that a token known valid from memory is still current; otherwise the answer is 401.
pub async fn confirm_before_refusal<T>(
    state: &VisitorState,
    caller: &Authenticated,
    outcome: Result<T, Refusal>,
) -> Result<T, Refusal> {
    match outcome {
        Err(refusal) if caller.remembered && refusal.is_about_the_request() => {
            match holder_in_database(state, &caller.token).await {
                Ok(Some(_)) => Err(refusal),
                Ok(None) => Err(state.forget_token(&caller.token)),
                // Unknown: the database is unreachable; the token was valid when last seen.
                Err(e) => {
                    tracing::warn!(error = ?e, "could not confirm a remembered token");
                    Err(refusal)
                }
            }
        }
        other => other,
    }
}

/// The tokens from the Cookie header(s), then the `ccmessaging-token` header, whose signature
/// and expiry check out, in that order; a refusal naming the problem when there is none.
fn verified_tokens(req: &HttpRequest, state: &VisitorState) -> Result<Vec<VerifiedToken>, Refusal> {
    let now = Utc::now();
    let mut error = TokenError::Malformed;
    let mut seen = false;
    let mut verified: Vec<VerifiedToken> = Vec::new();
    // A handful at most: more would only be someone making each request cost lookups.
    for candidate in token_candidates(req).take(MAX_CANDIDATES) {
        seen = true;
        match state.signing_key.verify(candidate, now) {
            Ok(token) if !verified.iter().any(|t| t.hash == token.hash) => verified.push(token),
            Ok(_) => {}
            Err(e) => error = e,
        }
    }
    if !verified.is_empty() {
        return Ok(verified);
    }
    Err(Refusal::Unauthorized(if !seen {
        "the ccmessaging-token is missing"
    } else {
        match error {
            TokenError::Expired => "the ccmessaging-token has expired",
            TokenError::Malformed | TokenError::BadSignature => {
                "the ccmessaging-token is not valid"
            }
        }
    }))
}

fn token_candidates(req: &HttpRequest) -> impl Iterator<Item = &str> {
    let from_cookies = req
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.trim() == TOKEN_NAME)
        .map(|(_, value)| value.trim().trim_matches('"'));
    let from_header = req
        .headers()
        .get_all(TOKEN_NAME)
        .filter_map(|v| v.to_str().ok())
        .map(str::trim);
    from_cookies.chain(from_header).filter(|t| !t.is_empty())
}

/// The token's holder if it is its visitor's current token on an enabled channel, asking the
/// database (not this instance's memory).
async fn holder_in_database(
    state: &VisitorState,
    token: &VerifiedToken,
) -> Result<Option<TokenHolder>, StoreError> {
    state
        .store
        .token_holder(&token.claims, &token.hash, Utc::now())
        .await
}

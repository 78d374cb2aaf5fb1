//! `Authorization: Bearer <agent API key>` on every agent call.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::Utc;

use super::brake::AuthBrake;
use super::error::ApiError;
use crate::credentials::AgentKey;
use crate::domain::AgentName;
use crate::limits::RetryAfter;
use crate::store::Store;
use crate::store::agents::LAST_SEEN_PRECISION;
use crate::store::queue::Actor;

/// The agent making the call.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: AgentName,
    pub is_admin: bool,
    /// The public id of the key it called with: work that outlives the call (a live stream,
    /// an export) checks that this is still the agent's key.
    pub key_id: String,
}

impl Agent {
    /// The agent as the store's state changes know it.
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.name.clone(),
            is_admin: self.is_admin,
        }
    }
}

impl FromRequest for Agent {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Agent, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .and_then(AgentKey::parse);
        let store = req.app_data::<web::Data<Store>>().cloned();
        let brake = req.app_data::<web::Data<AuthBrake>>().cloned();
        // The connection's peer: see `brake` for why not a forwarded address.
        let client = req.peer_addr().map(|a| a.ip().to_canonical());
        Box::pin(async move {
            let (Some(brake), Some(client)) = (brake, client) else {
                return authenticate(presented, store, None).await;
            };
            brake.check(client).map_err(too_many_failures)?;
            match authenticate(presented, store, Some(&brake)).await {
                // Only failures count: an agent's own calls never brake its address.
                Err(ApiError::Unauthorized) => {
                    brake.failed(client).map_err(too_many_failures)?;
                    Err(ApiError::Unauthorized)
                }
                other => other,
            }
        })
    }
}

fn too_many_failures(RetryAfter(retry_after): RetryAfter) -> ApiError {
    ApiError::TooManyRequests {
        reason: "too many failed authentications from this address; try again later",
        retry_after,
    }
}

/// The agent whose key this is, or 401. The database is asked on every call (nothing about
/// valid keys is remembered), so a key disabled or replaced through any instance or the
/// command line is refused from the next call on. Only ids that no agent's key has are
/// remembered, and a new key (`agent create`, `rotate-key`, `enable`) always has a fresh
/// random id.
async fn authenticate(
    presented: Option<AgentKey>,
    store: Option<web::Data<Store>>,
    brake: Option<&AuthBrake>,
) -> Result<Agent, ApiError> {
    let (Some(key), Some(store)) = (presented, store) else {
        return Err(ApiError::Unauthorized);
    };
    if brake.is_some_and(|b| b.unknown.contains(key.id())) {
        return Err(ApiError::Unauthorized);
    }
    match store.agent_by_key_id(key.id()).await? {
        Some(agent) if agent.enabled && key.matches(&agent.key_hash) => {
            // Names were parsed when the agent was created; one that no longer
            // parses is refused rather than trusted.
            let name = AgentName::parse(&agent.name).map_err(|_| ApiError::Unauthorized)?;
            let stale = agent
                .last_seen_at
                .is_none_or(|seen| Utc::now() - seen >= LAST_SEEN_PRECISION);
            if stale {
                store.note_agent_seen(agent.id);
            }
            Ok(Agent {
                name,
                is_admin: agent.is_admin,
                key_id: key.id().to_owned(),
            })
        }
        // A disabled agent's key id exists: it is not remembered as unknown.
        Some(_) => Err(ApiError::Unauthorized),
        None => {
            if let Some(brake) = brake {
                brake.unknown.remember(key.id());
            }
            Err(ApiError::Unauthorized)
        }
    }
}

/// An admin making the call; any other agent gets 403. A handler taking it reads its path,
/// query and body only after this check (see `messages::assign`), so a non-admin gets 403
/// whatever the request holds, and learns nothing about what a valid one would be.
#[derive(Debug, Clone)]
pub struct Admin(pub Agent);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Admin, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let agent = Agent::from_request(req, payload);
        Box::pin(async move {
            let agent = agent.await?;
            if !agent.is_admin {
                return Err(ApiError::Forbidden("only admins may make this call"));
            }
            Ok(Admin(agent))
        })
    }
}

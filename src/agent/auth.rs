//! `Authorization: Bearer <agent API key>` on every agent call.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use super::error::ApiError;
use crate::agent_key::AgentKey;
use crate::state::AppState;
use crate::store;

/// The agent making the call.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub is_admin: bool,
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
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let (Some(key), Some(state)) = (presented, state) else {
                return Err(ApiError::Unauthorized);
            };
            let key_id = key.id().to_owned();
            let record = state
                .db(move |pool| async move { store::agents::find_by_key_id(&pool, &key_id).await })
                .await?;
            match record {
                Some(agent) if key.matches(&agent.key_hash) => Ok(Agent {
                    name: agent.name,
                    is_admin: agent.is_admin,
                }),
                _ => Err(ApiError::Unauthorized),
            }
        })
    }
}

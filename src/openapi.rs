//! `GET /openapi.json`: the visitor and agent interfaces, generated from the handlers'
//! annotations and the types they read and write. It stands above the faces it describes
//! (beside `startup`), so that no face imports another.

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{agent, visitor};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "leavemsg",
        description = "Leave-a-message intake compatible with the CC-Messaging web channel \
                       (applyToken, doLeaveMessage), the agents' work queue, and admins' webhook endpoints."
    ),
    paths(
        visitor::apply_token::apply_token,
        visitor::leave_message::leave_message,
        agent::messages::list,
        agent::messages::get,
        agent::messages::claim_next,
        agent::messages::claim,
        agent::messages::assign,
        agent::messages::release,
        agent::messages::attempt,
        agent::messages::process,
        agent::history::history,
        agent::queue::counts,
        agent::stream::stream,
        agent::export::export,
        agent::webhooks::list,
        agent::webhooks::add,
        agent::webhooks::remove,
        agent::webhooks::deliveries,
        agent::webhooks::redeliver,
    ),
    modifiers(&Security),
    tags(
        (name = "visitor", description = "Vendor-compatible visitor interface"),
        (name = "agent", description = "Agents' work queue (Authorization: Bearer <API key>)"),
        (name = "webhooks", description = "Admins only: webhook endpoints and their deliveries \
                                           (Authorization: Bearer <an admin's API key>)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "ccmessaging_token_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("ccmessaging-token"))),
        );
        components.add_security_scheme(
            "ccmessaging_token_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("ccmessaging-token"))),
        );
        components.add_security_scheme(
            "agent_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json));
}

//! The two pages: the visitor's form (`/web/{channelConfigId}`) and the agents' console
//! (`/console`). Assets are compiled into the binary; nothing is loaded from elsewhere.

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder, web};

use crate::domain::ChannelId;
use crate::store::Store;

const VISITOR_HTML: &str = include_str!("assets/visitor.html");
const UNAVAILABLE_HTML: &str = include_str!("assets/unavailable.html");
const CONSOLE_HTML: &str = include_str!("assets/console.html");
const VISITOR_JS: &str = include_str!("assets/visitor.js");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Shown above the form when the channel has no prompt of its own.
const DEFAULT_PROMPT: &str =
    "No one can chat right now. Leave your number and a message, and we will call you back.";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/web/{channel}").get(visitor_form))
        .service(web::resource("/console").get(console))
        .service(web::resource("/assets/{file}").get(asset));
}

/// Security headers for a page: only our own scripts, styles and API; `frame_ancestors` says
/// who may embed it.
fn page(mut builder: HttpResponseBuilder, frame_ancestors: &str) -> HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {frame_ancestors}"
            ),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    builder
}

async fn visitor_form(path: web::Path<String>, store: web::Data<Store>) -> HttpResponse {
    let Ok(id) = ChannelId::parse(&path) else {
        return page(HttpResponse::NotFound(), "'none'").body(UNAVAILABLE_HTML);
    };
    match store.channel(id).await {
        Ok(Some(channel)) if channel.enabled => {
            // Channels with origins may be framed by those sites; others by any site (the form
            // only talks to this service).
            let ancestors = if channel.origins.is_empty() {
                "*".to_owned()
            } else {
                format!("'self' {}", channel.origins.join(" "))
            };
            let prompt = channel.prompt.as_deref().unwrap_or(DEFAULT_PROMPT);
            let html = VISITOR_HTML
                .replace("{{CHANNEL_ID}}", &channel.id.to_string())
                .replace("{{PROMPT}}", &escape_html(prompt));
            page(HttpResponse::Ok(), &ancestors).body(html)
        }
        Ok(_) => page(HttpResponse::NotFound(), "'none'").body(UNAVAILABLE_HTML),
        Err(e) => {
            tracing::error!(error = ?e, "visitor form: channel lookup failed");
            page(HttpResponse::ServiceUnavailable(), "'none'").body(UNAVAILABLE_HTML)
        }
    }
}

async fn console() -> HttpResponse {
    page(HttpResponse::Ok(), "'none'").body(CONSOLE_HTML)
}

async fn asset(path: web::Path<String>) -> HttpResponse {
    let (body, content_type) = match path.as_str() {
        "visitor.js" => (VISITOR_JS, "text/javascript; charset=utf-8"),
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => {
            return HttpResponse::NotFound()
                .content_type("text/plain")
                .body("not found\n");
        }
    };
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body)
}

/// Text for an HTML element's content.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_escaped() {
        assert_eq!(
            escape_html(r#"<img src=x onerror="alert('1')"> & co"#),
            "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt; &amp; co"
        );
    }
}

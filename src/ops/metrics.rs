//! `GET /metrics`: the Prometheus text of [`crate::counters`], with the gauges read at scrape
//! time (pool connections, stream clients, whether the instance listens for new messages).

use actix_web::{HttpResponse, web};

use crate::counters;
use crate::live::Live;
use crate::store::Store;

pub async fn render(store: web::Data<Store>, live: web::Data<Live>) -> HttpResponse {
    let pool = store.pool();
    let size = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
    metrics::gauge!("leavemsg_db_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!("leavemsg_db_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("leavemsg_stream_clients").set(live.clients() as f64);
    metrics::gauge!("leavemsg_stream_listening").set(f64::from(u8::from(live.is_listening())));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(counters::handle().render())
}

//! Building and running the HTTP server.

use std::convert::Infallible;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::body::{BodySize, BodyStream, BoxBody, MessageBody};
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::agent::brake::AuthBrake;
use crate::agent::export::ExportSlots;
use crate::domain::PublicUrl;
use crate::limits::Limits;
use crate::live::{self, Live};
use crate::settings::{EmailSettings, Settings, WebhookSettings};
use crate::store::writer::{WriteQueue, Writer};
use crate::store::{self, Database, Store};
use crate::visitor::VisitorState;
use crate::{agent, counters, openapi, ops, outbox, pages, telemetry, visitor};

/// How long a client may take to send its request head.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after SIGTERM.
const SHUTDOWN_GRACE_SECS: u64 = 30;
/// How often idle rate-limit entries and expired tokens are cleared away.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

pub struct Application {
    port: u16,
    server: Server,
    database: Database,
    store: web::Data<Store>,
    visitor: web::Data<VisitorState>,
    live: web::Data<Live>,
    brake: web::Data<AuthBrake>,
    webhooks: WebhookSettings,
    email: EmailSettings,
    public_url: PublicUrl,
}

impl Application {
    /// Connects (starting the embedded cluster if needed), migrates, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        counters::handle();
        let database = Database::open(&settings.database).await?;
        store::migrate(&database.pool).await?;
        let store = Store::new(database.pool.clone());
        if settings.email.smtp.is_none() {
            warn_if_email_is_wanted(&store).await;
        }
        let visitor = web::Data::new(VisitorState {
            signing_key: store.signing_key().await?,
            store: store.clone(),
            token_ttl: settings.token_ttl,
            cookie_secure: settings.cookie_secure,
            trusted_proxies: settings.trusted_proxies.clone(),
            limits: Limits::new(settings.rate_per_token, settings.rate_per_ip),
            tokens: Default::default(),
            known_origins: Default::default(),
            own_origin: settings.public_url.own_origin().cloned(),
        });
        let store = web::Data::new(store);
        let live = web::Data::new(Live::default());
        // One for all workers: failures count per address whichever worker answers.
        let brake = web::Data::new(AuthBrake::default());
        let export_slots = web::Data::new(ExportSlots::default());
        // One for all workers: /metrics reads the queue levels at most once a second.
        let queue_gauges = web::Data::new(ops::metrics::QueueGauges::default());

        let listener = TcpListener::bind(settings.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let batch_window = settings.batch_window;
        let (app_store, app_visitor, app_live) = (store.clone(), visitor.clone(), live.clone());
        let app_brake = brake.clone();
        // One queue for all workers' group-commit writers (see store::writer).
        let write_queue = WriteQueue::default();
        let server = HttpServer::new(move || {
            // Runs on each HTTP worker: its own group-commit writer, on its own thread.
            let writer = web::Data::new(Writer::joining(&write_queue, &app_store, batch_window));
            App::new()
                // Inside the request span, which therefore logs and counts HEAD as HEAD.
                .wrap(from_fn(head_as_get))
                .wrap(from_fn(telemetry::request_span))
                .app_data(app_store.clone())
                .app_data(app_visitor.clone())
                .app_data(app_live.clone())
                .app_data(app_brake.clone())
                .app_data(export_slots.clone())
                .app_data(queue_gauges.clone())
                .app_data(writer)
                .configure(visitor::routes)
                .configure(agent::routes)
                .configure(ops::routes)
                .configure(openapi::routes)
                .configure(pages::routes)
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        // SIGTERM and SIGINT are handled in run_until_stopped, which ends live streams first.
        .disable_signals()
        .client_request_timeout(REQUEST_HEAD_TIMEOUT)
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .run();
        Ok(Application {
            port,
            server,
            database,
            store,
            visitor,
            live,
            brake,
            webhooks: settings.webhooks,
            email: settings.email,
            public_url: settings.public_url,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// For stopping the server from elsewhere (tests); SIGTERM and SIGINT also stop it.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Stops gracefully: live streams end, in-flight requests finish, then the server stops.
    pub async fn shutdown(handle: &ServerHandle, live: &Live) {
        live.close();
        handle.stop(true).await;
    }

    /// This instance's live-stream fan-out (tests watch its client count).
    pub fn live(&self) -> Live {
        Live::clone(&self.live)
    }

    /// Serves until stopped, then closes the pool and stops the embedded cluster.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let housekeeping = tokio::spawn(housekeeping(self.visitor.clone(), self.brake.clone()));
        let signals = tokio::spawn(stop_on_signal(self.server.handle(), self.live()));
        let listener = tokio::spawn(live::listen(Store::clone(&self.store), self.live()));
        let outbox =
            outbox::Dispatcher::start(&self.store, self.webhooks, self.email, self.public_url)?;
        let served = self.server.await;
        outbox.stop().await;
        housekeeping.abort();
        listener.abort();
        signals.abort();
        // The HTTP workers' writer connections closed as the workers stopped; their server
        // processes may take a moment to go away.
        self.database.close(Duration::from_secs(2)).await;
        served
    }
}

/// Without a mail server, one warning at start when some channel has addresses to notify:
/// their e-mails wait in the outbox until LEAVEMSG_SMTP_URL is set (and give up after the
/// webhooks' maximum age once tried).
async fn warn_if_email_is_wanted(store: &Store) {
    match store.channels_notifying_by_email().await {
        Ok(0) => {}
        Ok(channels) => tracing::warn!(
            channels,
            "LEAVEMSG_SMTP_URL is not set: no e-mail is sent for the channels with --notify-email; \
             their e-mails wait until it is"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot read which channels notify by e-mail"),
    }
}

/// SIGTERM or SIGINT: drain and stop.
async fn stop_on_signal(handle: ServerHandle, live: Live) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM: finishing in-flight requests, then stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing in-flight requests, then stopping"),
    }
    Application::shutdown(&handle, &live).await;
}

async fn housekeeping(visitor: web::Data<VisitorState>, brake: web::Data<AuthBrake>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        tick.tick().await;
        counters::handle().run_upkeep();
        visitor.housekeeping().await;
        brake.forget_idle();
    }
}

/// HEAD is answered wherever GET is, with the head GET would have: the request is routed as a
/// GET, and the HTTP layer sends no body in answer to a HEAD (it remembers the method the
/// client sent). One place for every face, so a new GET route cannot forget HEAD.
async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let head = req.method() == Method::HEAD;
    if head {
        // head_mut needs the request not yet shared: only the request span runs before this
        // middleware, and it keeps no copy of the request.
        req.head_mut().method = Method::GET;
    }
    let response = next.call(req).await?;
    if head && response.response().body().size() == BodySize::Stream {
        // A streamed body (the live stream, the export) would still be produced, only to be
        // thrown away, and the live stream never ends: end it at once instead. The head
        // still says what GET would send.
        let nothing = futures_util::stream::empty::<Result<web::Bytes, Infallible>>();
        return Ok(response.map_body(|_, _| BoxBody::new(BodyStream::new(nothing))));
    }
    Ok(response.map_into_boxed_body())
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain")
        .body("not found\n")
}

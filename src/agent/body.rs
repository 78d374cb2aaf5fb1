//! A JSON body read within [`super::BODY_TIMEOUT`].

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use super::BODY_TIMEOUT;
use super::error::ApiError;

/// Like `web::Json` (same limit and error answers, from the scope's `JsonConfig`), but a body
/// that has not fully arrived within [`BODY_TIMEOUT`] is answered 408.
pub struct TimedJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for TimedJson<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<T>::from_request(req, payload);
        Box::pin(async move {
            match tokio::time::timeout(BODY_TIMEOUT, json).await {
                Ok(json) => Ok(TimedJson(json?.into_inner())),
                Err(_) => Err(ApiError::RequestTimeout.into()),
            }
        })
    }
}

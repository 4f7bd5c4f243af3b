//! Per-request context: a request id (taken from `X-Request-Id` when it is
//! sane, else generated) on the tracing span and the response, and one log
//! line per request with its route, status and latency; and no answer
//! before what it acknowledges is on the embedded store's disk.
//!
//! Metric labels come from closed sets only: the method is one of the
//! standard ones or `other` (a request with any other method is answered
//! at once: 405 with the path's `Allow`, or 404 for no route), the route is
//! the matched pattern or `unmatched`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use super::AllowedMethods;
use crate::error::ApiError;
use crate::metrics::{HTTP_DURATION, HTTP_REQUESTS};
use crate::store::Barrier;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()))
}

/// The method as a metric label: a standard method's name, else `other`.
pub fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", |m| m.as_str())
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request_id(&req);
    let method = method_label(req.method());
    // The route pattern, never the raw path: paths carry openids.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", request_id = %id, %method, %route);
    let started = Instant::now();
    let mut response = if method == "other" {
        // No route takes an invented method: answer before anything reads
        // it, with the methods the path does take (404 for no route).
        let response = match (req.match_pattern(), req.app_data::<web::Data<AllowedMethods>>()) {
            (Some(pattern), Some(allowed)) => super::method_not_allowed(allowed.of(&pattern)),
            _ => actix_web::ResponseError::error_response(&ApiError::not_found()),
        };
        let (req, _) = req.into_parts();
        ServiceResponse::new(req, response).map_into_right_body()
    } else {
        next.call(req)
            .instrument(span.clone())
            .await?
            .map_into_left_body()
    };
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    metrics::histogram!(HTTP_DURATION, "route" => route, "method" => method).record(elapsed);
    let _entered = span.enter();
    tracing::info!(status, latency_ms = elapsed * 1000.0, "request");
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// Holds every answer until the changes queued before it are committed on
/// the embedded store's disk (a no-op on Redis and in memory), so nothing
/// is acknowledged, and nothing read is shown, that a crash could still
/// take back. One wait per request, shared by every request of the same
/// commit. The sandbox's own WeChat routes answer at once: they play
/// WeChat, which keeps nothing here.
pub async fn answer_when_durable(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let barrier = req
        .app_data::<web::Data<Barrier>>()
        .filter(|_| !req.path().starts_with("/sandbox/"))
        .cloned();
    let response = next.call(req).await?;
    let Some(barrier) = barrier else {
        return Ok(response.map_into_left_body());
    };
    match barrier.wait().await {
        Ok(()) => Ok(response.map_into_left_body()),
        Err(err) => {
            tracing::error!(error = %err, "the answer's changes are not on disk");
            let (req, _) = response.into_parts();
            let failed = actix_web::ResponseError::error_response(&ApiError::store_unavailable());
            Ok(ServiceResponse::new(req, failed).map_into_right_body())
        }
    }
}

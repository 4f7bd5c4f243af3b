//! What every connection and every request body is held to: a body that
//! stalls is cut off after its deadline (its connection then closes), the
//! open connections are a gauge, and the process may open as many sockets
//! as its hard limit allows.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::time::Sleep;

use crate::metrics::OPEN_CONNECTIONS;

/// A request body that must arrive whole before its deadline.
struct Deadline {
    body: Payload,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            let late = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body arrived too slowly",
            );
            return Poll::Ready(Some(Err(PayloadError::Io(late))));
        }
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// The limit on reading one request's body.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Middleware: the request's body is read under [`BodyTimeout`].
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let timeout = req
        .app_data::<BodyTimeout>()
        .map_or(Duration::from_secs(10), |t| t.0);
    let body = req.take_payload();
    let deadline = Deadline {
        body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        expired: false,
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(deadline),
    });
    next.call(req).await
}

/// Counts a connection open for as long as it lives (kept in the
/// connection's extensions, dropped with it).
pub struct OpenConnection;

impl OpenConnection {
    pub fn new() -> Self {
        metrics::gauge!(OPEN_CONNECTIONS).increment(1.0);
        OpenConnection
    }
}

impl Default for OpenConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_CONNECTIONS).decrement(1.0);
    }
}

/// Raises the soft limit on open files to the hard one, so a burst of
/// connections meets the operator's limit rather than a low default; the
/// limit now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(err) => {
            tracing::warn!(error = %err, "could not raise the open files limit");
            None
        }
    }
}

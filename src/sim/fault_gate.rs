//! Where injected faults ([`super::fault::Fault`]) meet HTTP: the gate
//! every `/sandbox/wechat` request passes before anything else, and the
//! per-connection socket handle that lets `drop` and `lose_answer` close a
//! connection without answering. Counting faults down is `state`'s job.

use std::any::Any;
use std::io;
use std::net::Shutdown;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};

use super::config::{OA_SEND_PATH, SEND_PATH, SUBSCRIBE_SEND_PATH};
use super::errors::wx_answer;
use super::handle::Simulator;

/// Path parts of the template management routes.
const TEMPLATE_ADMIN: [&str; 3] = ["/wxopen/template/", "/wxaapi/newtmpl/", "/cgi-bin/template/"];

/// Middleware on the WeChat scope: a fault wins over every other check,
/// token checks included, as a network or WeChat outage would.
pub async fn gate(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let is_send = [SEND_PATH, SUBSCRIBE_SEND_PATH, OA_SEND_PATH]
        .iter()
        .any(|p| req.path().ends_with(p));
    let is_template_admin = !is_send && TEMPLATE_ADMIN.iter().any(|p| req.path().contains(p));
    // Faults are the account's the call is for (by appid or access token).
    let fault = req
        .app_data::<web::Data<Simulator>>()
        .and_then(|sim| sim.of_request(req.request()).ok())
        .and_then(|account| account.lock().take_fault(is_send, is_template_admin));
    let Some(fault) = fault else {
        return next.call(req).await;
    };
    tracing::debug!(path = req.path(), ?fault, "injecting fault");
    if let Some(ms) = fault.delay_ms {
        actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
    }
    if fault.lose_answer || fault.delay_answer_ms.is_some() {
        // WeChat did the work; its answer is late, or never arrives.
        let processed = next.call(req).await?;
        if let Some(ms) = fault.delay_answer_ms {
            actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
        }
        if !fault.lose_answer {
            return Ok(processed);
        }
        let lost = drop_connection(processed.request());
        return Ok(processed.into_response(lost));
    }
    let response = if fault.drop {
        drop_connection(req.request())
    } else if let Some(errcode) = fault.errcode {
        wx_answer(errcode, "injected fault")
    } else if let Some(status) = fault.http_status.and_then(|s| StatusCode::from_u16(s).ok()) {
        HttpResponse::build(status)
            .content_type("text/plain")
            .body("injected fault")
    } else {
        return next.call(req).await;
    };
    Ok(req.into_response(response))
}

/// A second handle on a connection's socket, kept in its extensions.
struct ConnectionSocket(std::net::TcpStream);

/// Register on any `HttpServer` serving [`Simulator::scope`] (it costs one
/// duplicated file descriptor per connection), so the `drop` fault can
/// close the connection before any byte of a response is written.
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    #[cfg(unix)]
    if let Some(stream) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::fd::AsFd;
        if let Ok(fd) = stream.as_fd().try_clone_to_owned() {
            ext.insert(ConnectionSocket(std::net::TcpStream::from(fd)));
        }
    }
    #[cfg(not(unix))]
    let _ = (conn, ext);
}

fn drop_connection(req: &HttpRequest) -> HttpResponse {
    if let Some(socket) = req.conn_data::<ConnectionSocket>()
        && socket.0.shutdown(Shutdown::Both).is_ok()
    {
        // The socket is closed under actix's feet: this is never delivered.
        return HttpResponse::NoContent().finish();
    }
    // Without `on_connect` (or over TLS) the best left is a response whose
    // body fails, which makes actix abort the connection mid-answer.
    let failing =
        futures_util::stream::once(async { Err::<web::Bytes, _>(io::Error::other("injected drop")) });
    HttpResponse::Ok().streaming(failing)
}

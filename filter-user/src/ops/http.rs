//! A minimal HTTP/1.1 server for the `run` service: `GET` of a path is
//! answered by a handler, one request per connection.
use std::{future::Future, net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

/// What a handler answers.
pub struct Reply {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn text(status: &'static str, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    fn encode(&self) -> String {
        format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.status,
            self.content_type,
            self.body.len(),
            self.body
        )
    }
}

/// Binds the address (before anything is attached, so a bad address
/// changes nothing).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for metrics on {addr}"))
}

/// Answers `GET PATH` with `handler(PATH)`; other methods get 405.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F) -> Result<()>
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Reply> + Send,
{
    if let Ok(addr) = listener.local_addr() {
        eprintln!("sipwall: serving metrics on http://{addr}/metrics (probes: /healthz, /readyz)");
    }
    loop {
        let (mut conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sipwall: metrics: accept failed: {e}");
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded); the body, if any, is ignored.
            while len < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf[len..])).await
                {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => len += n,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let mut parts = head.split_whitespace();
            let reply = match (parts.next(), parts.next()) {
                (Some("GET"), Some(path)) => {
                    // The query string, if any, is not part of the route.
                    let path = path.split('?').next().unwrap_or(path).to_string();
                    handler(path).await
                }
                _ => Reply::text(
                    "405 Method Not Allowed",
                    "GET /metrics, /healthz or /readyz\n",
                ),
            };
            let _ = conn.write_all(reply.encode().as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

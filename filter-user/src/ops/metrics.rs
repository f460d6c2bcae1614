//! Prometheus text exposition (docs/metrics.md) and a minimal HTTP server
//! for it.
use std::{fmt::Write as _, future::Future, net::SocketAddr};

use anyhow::{Context as _, Result};
use filter_common::Reason;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use super::snapshot::Snapshot;

/// The exposition of every snapshot. Counters and allowlist sizes are
/// those read; a snapshot whose maps could not be read shows zeros.
pub fn render(samples: &[Snapshot]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str, rows: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        rows(&mut out);
    };
    family(
        "sipwall_packets_total",
        "Packets judged by the XDP filter, by reason.",
        "counter",
        &mut |o| {
            for s in samples {
                for r in Reason::ALL {
                    let _ = writeln!(
                        o,
                        "sipwall_packets_total{{iface=\"{}\",reason=\"{}\"}} {}",
                        s.iface,
                        r.name(),
                        s.counters.unwrap_or_default()[r as usize].packets
                    );
                }
            }
        },
    );
    family(
        "sipwall_bytes_total",
        "Bytes (frame length) judged by the XDP filter, by reason.",
        "counter",
        &mut |o| {
            for s in samples {
                for r in Reason::ALL {
                    let _ = writeln!(
                        o,
                        "sipwall_bytes_total{{iface=\"{}\",reason=\"{}\"}} {}",
                        s.iface,
                        r.name(),
                        s.counters.unwrap_or_default()[r as usize].bytes
                    );
                }
            }
        },
    );
    family(
        "sipwall_allowlist_entries",
        "Prefixes in the signalling allowlist.",
        "gauge",
        &mut |o| {
            for s in samples {
                let _ = writeln!(
                    o,
                    "sipwall_allowlist_entries{{iface=\"{}\",family=\"ipv4\"}} {}",
                    s.iface,
                    s.ruleset.as_ref().map_or(0, |r| r.v4().count())
                );
                let _ = writeln!(
                    o,
                    "sipwall_allowlist_entries{{iface=\"{}\",family=\"ipv6\"}} {}",
                    s.iface,
                    s.ruleset.as_ref().map_or(0, |r| r.v6().count())
                );
            }
        },
    );
    family(
        "sipwall_attached",
        "1 when the filter runs on the interface.",
        "gauge",
        &mut |o| {
            for s in samples {
                let _ = writeln!(
                    o,
                    "sipwall_attached{{iface=\"{}\",mode=\"{}\"}} {}",
                    s.iface,
                    s.mode,
                    u8::from(s.attached)
                );
            }
        },
    );
    out
}

/// Binds the metrics address (before anything is attached, so a bad
/// address changes nothing).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for metrics on {addr}"))
}

/// Serves `GET /metrics`, rendering with `scrape` for each request.
pub async fn serve<F, Fut>(listener: TcpListener, scrape: F) -> Result<()>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<String>> + Send,
{
    if let Ok(addr) = listener.local_addr() {
        eprintln!("sipwall: serving metrics on http://{addr}/metrics");
    }
    loop {
        let (mut conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sipwall: metrics: accept failed: {e}");
                continue;
            }
        };
        let scrape = scrape.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded); the body, if any, is ignored.
            while len < buf.len() {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    conn.read(&mut buf[len..]),
                )
                .await
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
            let response = match (parts.next(), parts.next()) {
                (Some("GET"), Some("/metrics")) => match scrape().await {
                    Ok(body) => reply("200 OK", "text/plain; version=0.0.4; charset=utf-8", &body),
                    Err(e) => reply(
                        "500 Internal Server Error",
                        "text/plain",
                        &format!("{e:#}\n"),
                    ),
                },
                (Some("GET"), Some(_)) => reply("404 Not Found", "text/plain", "try /metrics\n"),
                _ => reply("405 Method Not Allowed", "text/plain", "GET /metrics\n"),
            };
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

fn reply(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

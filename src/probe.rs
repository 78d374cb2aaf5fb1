//! `leavemsg probe`: asks a running server's `/readyz` whether it is ready, for container
//! health checks (the image has no curl). It opens no database and starts nothing: a probe
//! that started the embedded cluster would keep it running, or fight the server over it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of the answer read: the status line is all that matters.
const MAX_HEAD: usize = 1024;

/// Why the server is not (known to be) ready. Each is one line.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot probe {0}: port 0 means any free port; give the port the server listens on")]
    NoPort(SocketAddr),
    #[error("{url}: no answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    /// Not a `source`: its text is the message's end, and would otherwise be printed twice.
    #[error("{url}: {error}")]
    Io { url: String, error: std::io::Error },
    #[error("{url}: the answer is not HTTP: {line:?}")]
    NotHttp { url: String, line: String },
    #[error("{url} answered {status}: not ready")]
    NotReady { url: String, status: u16 },
}

/// The address to connect to for a server listening on `listen`: an unspecified address
/// (every interface) is reached on loopback, of the same family.
pub fn loopback_form(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GET `/readyz` on the server listening on `listen`; Ok with the URL asked when it answers
/// 200 within `timeout`.
pub async fn probe(listen: SocketAddr, timeout: Duration) -> Result<String, ProbeError> {
    if listen.port() == 0 {
        return Err(ProbeError::NoPort(listen));
    }
    let target = loopback_form(listen);
    let url = format!("http://{target}/readyz");
    let status = match tokio::time::timeout(timeout, status_of(target, "/readyz")).await {
        Err(_) => {
            return Err(ProbeError::Timeout {
                url,
                secs: timeout.as_secs(),
            });
        }
        Ok(Err(error)) => return Err(ProbeError::Io { url, error }),
        Ok(Ok(Err(line))) => return Err(ProbeError::NotHttp { url, line }),
        Ok(Ok(Ok(status))) => status,
    };
    if status == 200 {
        Ok(url)
    } else {
        Err(ProbeError::NotReady { url, status })
    }
}

/// One HTTP/1.1 GET; the status code of the answer, or (inner Err) its first line when that
/// is not an HTTP status line.
async fn status_of(target: SocketAddr, path: &str) -> std::io::Result<Result<u16, String>> {
    let mut stream = TcpStream::connect(target).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: leavemsg-probe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0; 256];
    while head.len() < MAX_HEAD && !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(parse_status_line(&head))
}

/// The status code of `HTTP/1.x NNN ...`; else the (shortened) first line.
fn parse_status_line(head: &[u8]) -> Result<u16, String> {
    let text = String::from_utf8_lossy(head);
    let line = text.split("\r\n").next().unwrap_or_default();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if version.starts_with("HTTP/1.")
        && code.len() == 3
        && let Ok(status) = code.parse::<u16>()
    {
        return Ok(status);
    }
    Err(line.chars().take(80).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_asked_on_loopback() {
        let form = |s: &str| loopback_form(s.parse().unwrap()).to_string();
        assert_eq!(form("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(form("[::]:8080"), "[::1]:8080");
        assert_eq!(form("10.1.2.3:80"), "10.1.2.3:80");
        assert_eq!(form("[::1]:9"), "[::1]:9");
    }

    #[test]
    fn status_lines_are_read_and_anything_else_is_refused() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\nx"),
            Ok(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204\r\n"), Ok(204));
        assert_eq!(parse_status_line(b""), Err(String::new()));
        assert_eq!(
            parse_status_line(b"SSH-2.0-OpenSSH_9.2\r\n"),
            Err("SSH-2.0-OpenSSH_9.2".into())
        );
        assert!(parse_status_line(b"HTTP/1.1 2000 OK\r\n").is_err());
        assert!(parse_status_line(b"HTTP/2 200\r\n").is_err());
        let long = [b'x'; 4096];
        assert_eq!(parse_status_line(&long).unwrap_err().len(), 80);
    }
}

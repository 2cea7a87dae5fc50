//! HTTP/1.x as a metrics endpoint needs it: a request head reduced to the few facts the
//! answer depends on, and the head of each answer. Pure functions over bytes, so that the
//! rules (what is malformed, when a connection stays open, when gzip is sent) are unit tested
//! apart from the sockets.

use std::fmt::Write;

/// The most bytes a request head may take, request line and headers; a longer one is
/// answered 431 and closed. A scrape's head is a few hundred bytes; 8 KiB leaves room for a
/// long bearer token and is what common servers allow.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// What follows the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    /// Content-Length bytes.
    Length(u64),
    /// A Transfer-Encoding (chunked): its end can only be found by decoding it.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The path (without its query) is the metrics endpoint.
    pub for_endpoint: bool,
    /// HTTP/1.0, which closes unless the client asks to keep the connection.
    pub http10: bool,
    /// The client lets the connection stay open after the answer.
    pub keep_alive: bool,
    /// The client accepts a gzip body.
    pub gzip: bool,
    pub body: Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeaderTooLarge,
    VersionNotSupported,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::HeaderTooLarge => "431 Request Header Fields Too Large",
            Status::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head has not ended yet, and is within the size limit.
    Incomplete,
    /// A whole head, and the number of bytes it took (the next request may follow).
    Request(Request, usize),
    /// A head answered with this status, after which the connection is closed.
    Refused(Status),
}

/// RFC 9110 token characters (methods, header names).
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The path of a request target: origin form (`/metrics?x`) or absolute form
/// (`http://host/metrics`); `None` for anything else that is not `*`.
fn target_path(target: &[u8]) -> Option<&[u8]> {
    if !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    let path = if target.starts_with(b"/") || target == b"*" {
        target
    } else {
        let scheme_end = target.windows(3).position(|w| w == b"://")?;
        if !target[..scheme_end].iter().all(u8::is_ascii_alphabetic) || scheme_end == 0 {
            return None;
        }
        let authority_and_path = &target[scheme_end + 3..];
        authority_and_path.iter().position(|&b| b == b'/').map_or(&b"/"[..], |slash| &authority_and_path[slash..])
    };
    Some(path.split(|&b| b == b'?' || b == b'#').next().unwrap_or(path))
}

/// Whether an Accept-Encoding value accepts gzip: `gzip` or `x-gzip`, else `*`, with a
/// q-value above 0 (RFC 9110 12.5.3).
fn accepts_gzip(value: &[u8]) -> bool {
    let value = String::from_utf8_lossy(value);
    let (mut gzip, mut any) = (None, None);
    for item in value.split(',') {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or("").trim();
        let q = params
            .filter_map(|p| {
                let (name, value) = p.split_once('=')?;
                if name.trim().eq_ignore_ascii_case("q") {
                    value.trim().parse::<f32>().ok()
                } else {
                    None
                }
            })
            .next()
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q);
        } else if coding == "*" {
            any = Some(q);
        }
    }
    gzip.or(any).map_or(false, |q| q > 0.0)
}

/// Reads the request head at the start of `buf`. A malformed request line or header is
/// refused as soon as its line is complete; a head that has not ended within
/// [`MAX_HEAD_BYTES`] is refused with 431.
pub fn parse(buf: &[u8], endpoint: &str) -> Parsed {
    let limited = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    let mut request: Option<Request> = None;
    let (mut close, mut keep_alive_asked) = (false, false);
    let mut content_length: Option<u64> = None;
    let mut position = 0;
    while let Some(newline) = limited[position..].iter().position(|&b| b == b'\n') {
        let mut line = &limited[position..position + newline];
        position += newline + 1;
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        let current = match request.as_mut() {
            // Empty lines before the request line are skipped (RFC 9112 2.2).
            None if line.is_empty() => continue,
            None => {
                match request_line(line, endpoint) {
                    Ok(parsed) => request = Some(parsed),
                    Err(status) => return Parsed::Refused(status),
                }
                continue;
            }
            Some(current) => current,
        };
        if line.is_empty() {
            current.keep_alive = !close && (!current.http10 || keep_alive_asked);
            if let Some(length) = content_length.filter(|&l| l > 0) {
                if current.body == Body::None {
                    current.body = Body::Length(length);
                }
            }
            return Parsed::Request(current.clone(), position);
        }
        // A header field: a token, a colon, a value. Folded lines (obsolete) and white space
        // before the colon are malformed (RFC 9112 5.1, 5.2).
        let colon = match line.iter().position(|&b| b == b':') {
            Some(colon) if is_token(&line[..colon]) => colon,
            _ => return Parsed::Refused(Status::BadRequest),
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(trim) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive_asked |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"accept-encoding") {
            current.gzip |= accepts_gzip(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let length = match std::str::from_utf8(value).ok().filter(|v| v.bytes().all(|b| b.is_ascii_digit())) {
                Some(digits) => digits.parse::<u64>().ok(),
                None => None,
            };
            match (length, content_length) {
                (Some(length), None) => content_length = Some(length),
                (Some(length), Some(earlier)) if length == earlier => {}
                _ => return Parsed::Refused(Status::BadRequest),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            current.body = Body::Unknown;
        }
    }
    if buf.len() >= MAX_HEAD_BYTES {
        Parsed::Refused(Status::HeaderTooLarge)
    } else {
        Parsed::Incomplete
    }
}

/// `METHOD SP target SP HTTP/1.x`, each part exactly one space apart.
fn request_line(line: &[u8], endpoint: &str) -> Result<Request, Status> {
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version), None) => (method, target, version),
        _ => return Err(Status::BadRequest),
    };
    if !is_token(method) {
        return Err(Status::BadRequest);
    }
    let path = target_path(target).ok_or(Status::BadRequest)?;
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            return Err(Status::VersionNotSupported)
        }
        _ => return Err(Status::BadRequest),
    };
    Ok(Request {
        method: match method {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            _ => Method::Other,
        },
        for_endpoint: path == endpoint.as_bytes(),
        http10,
        keep_alive: !http10,
        gzip: false,
        body: Body::None,
    })
}

/// What the server answers a well-formed request: the exposition for GET and HEAD of the
/// endpoint, 404 for another path, 405 for another method (whatever the path).
pub fn status_for(request: &Request) -> Status {
    match (request.method, request.for_endpoint) {
        (Method::Other, _) => Status::MethodNotAllowed,
        (_, false) => Status::NotFound,
        (_, true) => Status::Ok,
    }
}

/// How the answer speaks of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// HTTP/1.1 keeps it open without saying so.
    None,
    Close,
    /// An HTTP/1.0 client asked to keep it open.
    KeepAlive,
}

/// The status line and headers of an answer whose body has `length` bytes (a HEAD answer
/// carries the length its GET would have). Content-Length is always sent.
pub fn response_head(status: Status, length: usize, gzip: bool, connection: ConnectionHeader) -> Vec<u8> {
    let content_type = if status == Status::Ok { EXPOSITION_CONTENT_TYPE } else { "text/plain; charset=utf-8" };
    let mut head = String::with_capacity(192);
    let _ =
        write!(head, "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", status.line(), content_type, length);
    if status == Status::Ok {
        head.push_str("Vary: Accept-Encoding\r\n");
        if gzip {
            head.push_str("Content-Encoding: gzip\r\n");
        }
    }
    if status == Status::MethodNotAllowed {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    match connection {
        ConnectionHeader::None => {}
        ConnectionHeader::Close => head.push_str("Connection: close\r\n"),
        ConnectionHeader::KeepAlive => head.push_str("Connection: keep-alive\r\n"),
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The body of an answer other than 200.
pub fn error_body(status: Status, endpoint: &str) -> String {
    match status {
        Status::Ok => String::new(),
        Status::NotFound => format!("not found; metrics are at {}\n", endpoint),
        Status::MethodNotAllowed => "only GET and HEAD\n".to_string(),
        Status::BadRequest => "malformed request\n".to_string(),
        Status::HeaderTooLarge => format!("request head larger than {} bytes\n", MAX_HEAD_BYTES),
        Status::VersionNotSupported => "only HTTP/1.0 and HTTP/1.1\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &str) -> Request {
        match parse(head.as_bytes(), "/metrics") {
            Parsed::Request(request, used) => {
                assert_eq!(used, head.len(), "{:?}", head);
                request
            }
            other => panic!("{:?}: {:?}", head, other),
        }
    }

    fn refused(head: &str) -> Status {
        match parse(head.as_bytes(), "/metrics") {
            Parsed::Refused(status) => status,
            other => panic!("{:?} was not refused: {:?}", head, other),
        }
    }

    #[test]
    fn a_prometheus_scrape_keeps_the_connection_and_takes_gzip() {
        let head = "GET /metrics HTTP/1.1\r\nHost: 10.0.0.1:9000\r\nUser-Agent: Prometheus/2.42.0\r\n\
                    Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\
                    Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        let r = request(head);
        assert_eq!(
            r,
            Request {
                method: Method::Get,
                for_endpoint: true,
                http10: false,
                keep_alive: true,
                gzip: true,
                body: Body::None
            }
        );
        assert_eq!(status_for(&r), Status::Ok);
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        assert!(request("GET /metrics HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!request("GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!request("GET /metrics HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
        assert!(!request("GET /metrics HTTP/1.0\r\n\r\n").keep_alive);
        assert!(request("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!request("GET /metrics HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
    }

    #[test]
    fn gzip_only_when_accepted_with_a_weight_above_zero() {
        let gzip = |value: &str| request(&format!("GET /metrics HTTP/1.1\r\nAccept-Encoding: {}\r\n\r\n", value)).gzip;
        assert!(gzip("gzip"));
        assert!(gzip("deflate, GZIP;q=0.5"));
        assert!(gzip("x-gzip"));
        assert!(gzip("*"));
        assert!(gzip("br;q=1.0, gzip;q=0.8, *;q=0.1"));
        assert!(!gzip("gzip;q=0"));
        assert!(!gzip("gzip;q=0.0, identity"));
        assert!(!gzip("*;q=0"));
        assert!(!gzip("identity"));
        assert!(!gzip("deflate, br"));
        assert!(!request("GET /metrics HTTP/1.1\r\n\r\n").gzip);
    }

    #[test]
    fn paths_queries_and_absolute_targets() {
        assert!(request("GET /metrics?format=text HTTP/1.1\r\n\r\n").for_endpoint);
        assert!(request("GET http://10.0.0.1:9000/metrics HTTP/1.1\r\n\r\n").for_endpoint);
        assert!(!request("GET http://10.0.0.1:9000 HTTP/1.1\r\n\r\n").for_endpoint);
        assert!(!request("GET /metrics/ HTTP/1.1\r\n\r\n").for_endpoint);
        assert!(!request("GET / HTTP/1.1\r\n\r\n").for_endpoint);
        assert_eq!(status_for(&request("GET /other HTTP/1.1\r\n\r\n")), Status::NotFound);
        assert_eq!(status_for(&request("POST /metrics HTTP/1.1\r\n\r\n")), Status::MethodNotAllowed);
        assert_eq!(status_for(&request("OPTIONS * HTTP/1.1\r\n\r\n")), Status::MethodNotAllowed);
        assert_eq!(status_for(&request("HEAD /metrics HTTP/1.1\r\n\r\n")), Status::Ok);
    }

    #[test]
    fn bare_newlines_and_leading_empty_lines_are_tolerated() {
        assert!(request("GET /metrics HTTP/1.1\nHost: x\n\n").for_endpoint);
        assert!(request("\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n").for_endpoint);
    }

    #[test]
    fn an_unfinished_head_waits_and_the_next_request_is_left_over() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", "/metrics"), Parsed::Incomplete);
        assert_eq!(parse(b"GET /metr", "/metrics"), Parsed::Incomplete);
        assert_eq!(parse(b"", "/metrics"), Parsed::Incomplete);
        let two = b"GET /metrics HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        match parse(two, "/metrics") {
            Parsed::Request(r, used) => {
                assert!(r.for_endpoint);
                assert_eq!(&two[used..], b"GET / HTTP/1.1\r\n\r\n");
            }
            other => panic!("{:?}", other),
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        for head in [
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1 extra\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /met\x01rics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/x\r\n\r\n",
            "GET /metrics http/1.1\r\n\r\n",
            "\x16\x03\x01\x02\x00\x01\x00\x01\x03\x03\n",
            "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            assert_eq!(refused(head), Status::BadRequest, "{:?}", head);
        }
        // Refused as soon as the bad line is complete, before the head ends.
        assert_eq!(refused("BAD\r\n"), Status::BadRequest);
        assert_eq!(refused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Status::VersionNotSupported);
        assert_eq!(refused("GET /metrics HTTP/0.9\r\n\r\n"), Status::VersionNotSupported);
    }

    #[test]
    fn a_head_beyond_the_limit_is_431() {
        let mut head = "GET /metrics HTTP/1.1\r\n".to_string();
        while head.len() < MAX_HEAD_BYTES {
            head.push_str("X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(refused(&head), Status::HeaderTooLarge);
        // A head that ends within the limit is fine, even with the next request behind it.
        let mut fits = "GET /metrics HTTP/1.1\r\n".to_string();
        fits.push_str(&format!("X-Padding: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES - fits.len() - 15)));
        assert_eq!(fits.len(), MAX_HEAD_BYTES);
        assert!(request(&fits).for_endpoint);
        // One long line without an end.
        assert_eq!(refused(&"a".repeat(MAX_HEAD_BYTES)), Status::HeaderTooLarge);
    }

    #[test]
    fn bodies_are_recognised() {
        assert_eq!(request("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n").body, Body::Length(5));
        assert_eq!(request("GET /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").body, Body::None);
        assert_eq!(
            request("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").body,
            Body::Length(5)
        );
        assert_eq!(request("POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").body, Body::Unknown);
        assert_eq!(
            request("POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n").body,
            Body::Unknown
        );
    }

    #[test]
    fn response_heads() {
        let ok = String::from_utf8(response_head(Status::Ok, 1234, true, ConnectionHeader::None)).unwrap();
        assert_eq!(
            ok,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 1234\r\n\
             Vary: Accept-Encoding\r\nContent-Encoding: gzip\r\n\r\n"
        );
        let not_allowed =
            String::from_utf8(response_head(Status::MethodNotAllowed, 18, false, ConnectionHeader::Close)).unwrap();
        assert!(not_allowed.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(not_allowed.contains("\r\nAllow: GET, HEAD\r\n") && not_allowed.contains("\r\nConnection: close\r\n"));
        let kept = String::from_utf8(response_head(Status::NotFound, 3, false, ConnectionHeader::KeepAlive)).unwrap();
        assert!(kept.contains("\r\nConnection: keep-alive\r\n") && !kept.contains("Vary"));
    }
}

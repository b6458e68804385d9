//! Request templates: the plan's URL/header/body text parsed once into literal and
//! dynamic segments (`{seq}`, `{rand:A..B}`, `{uuid}`), and requests without any
//! dynamic segment pre-encoded to bytes once, so the hot path only copies or writes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rustls::pki_types::ServerName;

use crate::plan::{LoadPlan, RequestTemplate, Shard};
use crate::LoadError;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(Vec<u8>),
    /// The run-wide request sequence number (one value per request).
    Seq,
    /// A seeded uniform integer in `lo..=hi`.
    Rand(u64, u64),
    /// A random (v4) UUID from the worker's seeded generator.
    Uuid,
}

/// Text with `{seq}`, `{rand:A..B}` and `{uuid}` placeholders. Anything else in
/// braces (JSON bodies!) is literal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
}

/// The run-wide `{seq}` counter. A shard's values are its own counter's
/// `c × count + index`: never one another shard's, and for an unsharded run
/// (1 shard, index 0) the plain counter 0, 1, 2, … as before.
#[derive(Debug)]
pub(crate) struct Sequence {
    next: AtomicU64,
    step: u64,
    offset: u64,
}

impl Sequence {
    pub fn new(shard: Option<Shard>) -> Self {
        let shard = shard.unwrap_or(Shard { index: 0, count: 1 });
        Self {
            next: AtomicU64::new(0),
            step: shard.count as u64,
            offset: shard.index as u64,
        }
    }

    /// The next value, unique across the run's shards.
    pub fn take(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) * self.step + self.offset
    }
}

/// Per-request expansion state: the sequence number is drawn at most once per
/// request so `{seq}` in the path and body agree.
pub(crate) struct Expansion<'a> {
    pub sequence: &'a Sequence,
    pub rng: &'a mut ChaCha8Rng,
    pub seq: Option<u64>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.extend_from_slice(&rest.as_bytes()[..open]);
            let after = &rest[open..];
            let (segment, used) = match after.find('}') {
                Some(close) => (Self::placeholder(&after[1..close])?, close + 1),
                None => (None, 1),
            };
            match segment {
                Some(s) => {
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(s);
                    rest = &after[used..];
                }
                None => {
                    literal.push(b'{');
                    rest = &after[1..];
                }
            }
        }
        literal.extend_from_slice(rest.as_bytes());
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Self { segments })
    }

    /// `Ok(None)` when the braces hold something that is not ours (left literal).
    fn placeholder(inner: &str) -> Result<Option<Segment>, String> {
        if inner == "seq" {
            return Ok(Some(Segment::Seq));
        }
        if inner == "uuid" {
            return Ok(Some(Segment::Uuid));
        }
        if let Some(range) = inner.strip_prefix("rand:") {
            let (lo, hi) = range
                .split_once("..")
                .ok_or_else(|| format!("{{{inner}}}: expected {{rand:A..B}}"))?;
            let lo: u64 = lo
                .trim()
                .parse()
                .map_err(|_| format!("{{{inner}}}: {lo:?} is not a whole number"))?;
            let hi: u64 = hi
                .trim()
                .parse()
                .map_err(|_| format!("{{{inner}}}: {hi:?} is not a whole number"))?;
            if lo > hi {
                return Err(format!("{{{inner}}}: the range is empty"));
            }
            return Ok(Some(Segment::Rand(lo, hi)));
        }
        Ok(None)
    }

    pub fn is_static(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    pub fn expand(&self, out: &mut Vec<u8>, x: &mut Expansion<'_>) {
        for s in &self.segments {
            match s {
                Segment::Literal(b) => out.extend_from_slice(b),
                Segment::Seq => {
                    let seq = *x.seq.get_or_insert_with(|| x.sequence.take());
                    push_decimal(out, seq);
                }
                Segment::Rand(lo, hi) => push_decimal(out, x.rng.gen_range(*lo..=*hi)),
                Segment::Uuid => {
                    let id = uuid::Builder::from_random_bytes(x.rng.gen()).into_uuid();
                    out.extend_from_slice(id.hyphenated().encode_lower(&mut [0u8; 36]).as_bytes());
                }
            }
        }
    }

    /// Expands with placeholder values, for validating URLs at plan time.
    fn sample(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            match s {
                Segment::Literal(b) => out.push_str(&String::from_utf8_lossy(b)),
                Segment::Seq | Segment::Rand(..) => out.push('0'),
                Segment::Uuid => out.push_str("00000000-0000-0000-0000-000000000000"),
            }
        }
        out
    }
}

fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Where requests go: a scheme, an authority, and the addresses it resolved to.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// `host[:port]` exactly as written, used for the Host header and (with the
    /// scheme) to tell same-origin redirects.
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
    /// For `https`, the TLS server name (the host; IP literals included).
    pub tls: Option<ServerName<'static>>,
}

impl Origin {
    /// An origin for a parsed URL, addresses not resolved yet.
    pub fn new(url: &ParsedUrl) -> Result<Self, String> {
        Ok(Self {
            authority: url.authority.clone(),
            host: url.host.clone(),
            port: url.port,
            addrs: Vec::new(),
            tls: if url.tls {
                Some(crate::tls::server_name(&url.host)?)
            } else {
                None
            },
        })
    }

    /// Same scheme and authority: connections to one serve the other.
    pub fn same_as(&self, other: &Origin) -> bool {
        self.authority == other.authority && self.tls.is_some() == other.tls.is_some()
    }
}

/// A URL split into its origin and its (templated) path and query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedUrl {
    /// `https`: TLS, port 443 unless given.
    pub tls: bool,
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses `http[s]://host[:port][/path][?query]`.
pub(crate) fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err("expected an absolute http:// or https:// URL".into());
    };
    let default_port = if tls { 443 } else { 80 };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let mut path = rest[end..].split('#').next().unwrap_or("").to_string();
    if path.is_empty() || path.starts_with('?') {
        path.insert(0, '/');
    }
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    if authority.contains(['{', '}', '@']) {
        return Err("the host part may not contain templates or credentials".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("unterminated IPv6 address in the URL")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
            None if after.is_empty() => default_port,
            None => return Err("bad host in the URL".into()),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| format!("bad port {p:?}"))?,
            ),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    let sample = Template::parse(&path)?.sample();
    let scheme = if tls { "https" } else { "http" };
    let full = format!("{scheme}://{authority}{sample}");
    full.parse::<http::Uri>()
        .map_err(|e| format!("not a valid URL: {e}"))?;
    if tls {
        crate::tls::server_name(&host)?;
    }
    Ok(ParsedUrl {
        tls,
        authority: authority.to_string(),
        host,
        port,
        path,
    })
}

/// An HTTP proxy address (hey's `-x`): `host:port`, or `http://host:port`.
pub(crate) fn parse_proxy(proxy: &str) -> Result<(String, u16), LoadError> {
    let bad = |reason: &str| LoadError::Url {
        url: proxy.to_string(),
        reason: format!("bad proxy address (-x): {reason}; expected host:port"),
    };
    if proxy.starts_with("https://") {
        return Err(bad("a TLS proxy is not supported"));
    }
    let rest = proxy.strip_prefix("http://").unwrap_or(proxy);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if !rest.contains(':') || rest.ends_with(']') {
        return Err(bad("the port is missing"));
    }
    let u = parse_url(&format!("http://{rest}")).map_err(|e| bad(&e))?;
    if u.path != "/" {
        return Err(bad("a proxy address has no path"));
    }
    Ok((u.host, u.port))
}

/// A request ready for the hot path.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRequest {
    pub origin: usize,
    pub method: String,
    pub head_only: bool,
    /// The plan's own `Host` header (hey's `-host`), sent instead of the URL's
    /// authority; the connection still goes to the URL's host.
    host: Option<String>,
    path: Template,
    /// Header lines (`Name: value\r\n`), templated, Host and Content-Length excluded.
    headers: Template,
    body: Option<Template>,
    /// The whole request, when nothing in it is dynamic.
    pub encoded: Option<Bytes>,
}

impl CompiledRequest {
    /// Writes the request for one send into `out` (cleared first).
    pub fn encode(&self, origin: &Origin, out: &mut Vec<u8>, x: &mut Expansion<'_>) {
        out.clear();
        if let Some(b) = &self.encoded {
            out.extend_from_slice(b);
            return;
        }
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        self.path.expand(out, x);
        self.finish(self.host_for(&origin.authority), true, out, x);
    }

    /// The Host header for a request to `authority`: the plan's own, if it
    /// gave one (kept across same-origin redirects, as Go's client does).
    pub fn host_for<'a>(&'a self, authority: &'a str) -> &'a str {
        self.host.as_deref().unwrap_or(authority)
    }

    /// The request line's tail, headers and body, shared by `encode` and redirects.
    fn finish(&self, authority: &str, with_body: bool, out: &mut Vec<u8>, x: &mut Expansion<'_>) {
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(authority.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.headers.expand(out, x);
        match &self.body {
            Some(body) if with_body => {
                let mut b = Vec::new();
                body.expand(&mut b, x);
                out.extend_from_slice(b"Content-Length: ");
                push_decimal(out, b.len() as u64);
                out.extend_from_slice(b"\r\n\r\n");
                out.extend_from_slice(&b);
            }
            _ => out.extend_from_slice(b"\r\n"),
        }
    }

    /// A redirect hop: `method` to `path` on `origin`, with the same headers;
    /// the body is kept only when the method is kept (307/308).
    pub fn encode_redirect(
        &self,
        method: &str,
        keep_body: bool,
        origin_authority: &str,
        path: &str,
        out: &mut Vec<u8>,
        x: &mut Expansion<'_>,
    ) {
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(path.as_bytes());
        self.finish(origin_authority, keep_body, out, x);
    }
}

/// Compiles the plan's requests; returns them and the distinct origins (unresolved).
pub(crate) fn compile(plan: &LoadPlan) -> Result<(Vec<CompiledRequest>, Vec<Origin>), LoadError> {
    if plan.requests.is_empty() {
        return Err(LoadError::Plan("the plan has no requests".into()));
    }
    if plan.requests.iter().all(|r| r.weight == 0) {
        return Err(LoadError::Plan("every request has weight 0".into()));
    }
    let mut origins: Vec<Origin> = Vec::new();
    let mut out = Vec::new();
    for r in &plan.requests {
        out.push(compile_one(plan, r, &mut origins)?);
    }
    Ok((out, origins))
}

fn compile_one(
    plan: &LoadPlan,
    r: &RequestTemplate,
    origins: &mut Vec<Origin>,
) -> Result<CompiledRequest, LoadError> {
    let url = parse_url(&r.url).map_err(|reason| LoadError::Url {
        url: r.url.clone(),
        reason,
    })?;
    let method = r.method.trim().to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(LoadError::Plan(format!("bad HTTP method {:?}", r.method)));
    }
    let this = Origin::new(&url).map_err(|reason| LoadError::Url {
        url: r.url.clone(),
        reason,
    })?;
    let origin = match origins.iter().position(|o| o.same_as(&this)) {
        Some(i) => i,
        None => {
            origins.push(this);
            origins.len() - 1
        }
    };
    let template_err = |reason: String| LoadError::Template {
        template: r.url.clone(),
        reason,
    };
    let proxied = plan.transport.proxy.is_some();
    if proxied && url.tls {
        return Err(LoadError::Plan(format!(
            "{}: https:// through a proxy (-x) needs a CONNECT tunnel, which slolab does not \
             open; use an http:// URL, or no proxy",
            r.url
        )));
    }
    // Through a proxy the request line carries the whole URL (RFC 9112 §3.2.2).
    let path = match proxied {
        true => Template::parse(&format!("http://{}{}", url.authority, url.path)),
        false => Template::parse(&url.path),
    }
    .map_err(template_err)?;
    let has = |name: &str| r.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut header_text = String::new();
    let mut host = None;
    for (name, value) in &r.headers {
        if name.eq_ignore_ascii_case("host") {
            let v = value.trim();
            if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(LoadError::Plan(format!(
                    "bad Host header {value:?}: expected a host name, optionally with :port"
                )));
            }
            host = Some(v.to_string());
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        if name.is_empty() || name.contains([':', '\r', '\n', ' ']) || value.contains(['\r', '\n'])
        {
            return Err(LoadError::Plan(format!("bad header {name:?}: {value:?}")));
        }
        header_text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has("user-agent") {
        header_text.push_str(&format!(
            "User-Agent: slolab/{}\r\n",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let head_only = method == "HEAD";
    if plan.compression && !head_only && !has("accept-encoding") {
        header_text.push_str("Accept-Encoding: gzip\r\n");
    }
    if !plan.keepalive && !has("connection") {
        header_text.push_str("Connection: close\r\n");
    }
    let headers = Template::parse(&header_text).map_err(|reason| LoadError::Template {
        template: header_text.clone(),
        reason,
    })?;
    let body = match &r.body {
        Some(b) => Some(Template::parse(b).map_err(|reason| LoadError::Template {
            template: b.clone(),
            reason,
        })?),
        None => None,
    };
    let mut compiled = CompiledRequest {
        origin,
        method,
        head_only,
        host,
        path,
        headers,
        body,
        encoded: None,
    };
    let dynamic = !compiled.path.is_static()
        || !compiled.headers.is_static()
        || compiled.body.as_ref().is_some_and(|b| !b.is_static());
    if !dynamic {
        let mut out = Vec::new();
        let seq = Sequence::new(None);
        let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let mut x = Expansion {
            sequence: &seq,
            rng: &mut rng,
            seq: None,
        };
        compiled.encode(&origins[origin], &mut out, &mut x);
        compiled.encoded = Some(Bytes::from(out));
    }
    Ok(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn expand(t: &Template, seq: &Sequence, rng: &mut ChaCha8Rng) -> String {
        let mut out = Vec::new();
        let mut x = Expansion {
            sequence: seq,
            rng,
            seq: None,
        };
        t.expand(&mut out, &mut x);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_braces_stay_literal_and_seq_is_shared_within_a_request() {
        let t = Template::parse(r#"{"title":"t{seq}","n":"{seq}"}"#).unwrap();
        assert!(!t.is_static());
        let seq = Sequence::new(None);
        seq.next.store(7, Ordering::Relaxed);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(expand(&t, &seq, &mut rng), r#"{"title":"t7","n":"7"}"#);
        assert_eq!(expand(&t, &seq, &mut rng), r#"{"title":"t8","n":"8"}"#);
        assert!(Template::parse("{not ours} {").unwrap().is_static());
    }

    #[test]
    fn shards_draw_seq_values_no_other_shard_draws() {
        let t = Template::parse("/t/{seq}").unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for index in 0..3 {
            let seq = Sequence::new(Some(Shard { index, count: 3 }));
            for _ in 0..4 {
                assert!(seen.insert(expand(&t, &seq, &mut rng)));
            }
        }
        // Together: the twelve values a single run draws.
        let single = Sequence::new(None);
        let want: std::collections::BTreeSet<String> =
            (0..12).map(|_| expand(&t, &single, &mut rng)).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn rand_is_seeded_and_in_range() {
        let t = Template::parse("/p?page={rand:1..20}&id={uuid}").unwrap();
        let seq = Sequence::new(None);
        let a: Vec<String> = {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            (0..50).map(|_| expand(&t, &seq, &mut rng)).collect()
        };
        let b: Vec<String> = {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            (0..50).map(|_| expand(&t, &seq, &mut rng)).collect()
        };
        assert_eq!(a, b);
        for s in &a {
            let page: u64 = s["/p?page=".len()..s.find('&').unwrap()].parse().unwrap();
            assert!((1..=20).contains(&page), "{s}");
            let id = &s[s.find("id=").unwrap() + 3..];
            assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        }
        assert!(Template::parse("{rand:5..1}").is_err());
        assert!(Template::parse("{rand:x..1}").is_err());
    }

    #[test]
    fn https_origins_are_keyed_by_scheme_and_host_omits_the_default_port() {
        let request = |url: &str| RequestTemplate {
            weight: 1,
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: None,
        };
        let plan = LoadPlan {
            requests: vec![
                request("https://example.com/a"),
                request("http://example.com/b"),
                request("https://example.com/c"),
                request("https://127.0.0.1:8443/d"),
            ],
            model: crate::plan::Model::Closed {
                rate_per_worker: None,
            },
            arrivals: Default::default(),
            stop: crate::plan::Stop::Requests { count: 1 },
            connections: 1,
            timeout: std::time::Duration::from_secs(1),
            keepalive: true,
            compression: false,
            follow_redirects: false,
            interval: std::time::Duration::from_secs(1),
            threads: 1,
            seed: 0,
            track_header: None,
            bad: Default::default(),
            io: Default::default(),
            transport: Default::default(),
            shard: None,
        };
        let (requests, origins) = compile(&plan).unwrap();
        let at: Vec<usize> = requests.iter().map(|r| r.origin).collect();
        assert_eq!(at, vec![0, 1, 0, 2]);
        assert_eq!(
            origins.iter().map(|o| o.port).collect::<Vec<_>>(),
            vec![443, 80, 8443]
        );
        assert!(matches!(origins[0].tls, Some(ServerName::DnsName(_))));
        assert!(origins[1].tls.is_none());
        assert!(matches!(origins[2].tls, Some(ServerName::IpAddress(_))));
        let head = |i: usize| String::from_utf8(requests[i].encoded.clone().unwrap().to_vec());
        assert!(head(0)
            .unwrap()
            .starts_with("GET /a HTTP/1.1\r\nHost: example.com\r\n"));
        assert!(head(3)
            .unwrap()
            .starts_with("GET /d HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n"));
    }

    #[test]
    fn proxy_addresses() {
        let ok = |p: &str| parse_proxy(p).unwrap();
        assert_eq!(ok("127.0.0.1:3128"), ("127.0.0.1".to_string(), 3128));
        assert_eq!(
            ok("http://proxy.test:8080/"),
            ("proxy.test".to_string(), 8080)
        );
        assert_eq!(ok("[::1]:3128"), ("::1".to_string(), 3128));
        for bad in [
            "proxy.test",
            "https://p:1",
            "p:x",
            "p:1/path",
            ":1",
            "[::1]",
        ] {
            let e = parse_proxy(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("-x"), "{bad}: {e}");
        }
    }

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:8080/tasks?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/tasks?x=1")
        );
        let u = parse_url("http://localhost").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.port, u.path.as_str()),
            ("localhost", 80, "/")
        );
        let u = parse_url("http://[::1]:9/a").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert!(!u.tls);
        let u = parse_url("https://example.com/x").unwrap();
        assert_eq!(
            (u.tls, u.authority.as_str(), u.host.as_str(), u.port),
            (true, "example.com", "example.com", 443)
        );
        let u = parse_url("https://[::1]/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "::1", 443));
        let u = parse_url("https://127.0.0.1:8443").unwrap();
        assert_eq!((u.authority.as_str(), u.port), ("127.0.0.1:8443", 8443));
        assert!(parse_url("http://h/p?page={rand:1..3}").is_ok());
        for bad in [
            "127.0.0.1:80",
            "ftp://x/",
            "http://",
            "http://h:99999/",
            "http://h/a b",
            "https://",
            "https://bad_host!/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}

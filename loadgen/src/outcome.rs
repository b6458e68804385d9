//! How every request ends. Each request ends as exactly one `Outcome`; its `name()`
//! is the key used in results files, so the names are a contract (see results/README.md).

/// The end of one request: a response (by status class) or the way it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A response with status 200–299.
    Status2xx,
    /// A response with status 300–399 (after redirects, when they are followed).
    Status3xx,
    /// A response with status 400–499.
    Status4xx,
    /// A response with status 500–599.
    Status5xx,
    /// The TCP connect was refused (nothing listening).
    ConnectRefused,
    /// The TCP connect did not finish within the request timeout.
    ConnectTimeout,
    /// `https://`: connected, but the TLS handshake failed (a fatal alert, a
    /// server that answered something that is not TLS — often plain HTTP — or
    /// closed the connection mid-handshake).
    TlsHandshake,
    /// Connected, but the full response did not arrive within the request timeout.
    RequestTimeout,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// The peer answered something that is not HTTP/1.x.
    ProtocolError,
    /// Anything else (a 1xx final status, too many redirects, an unexpected I/O error).
    Other,
}

impl Outcome {
    /// Every outcome, in the order summaries list them.
    pub const ALL: [Outcome; 11] = [
        Outcome::Status2xx,
        Outcome::Status3xx,
        Outcome::Status4xx,
        Outcome::Status5xx,
        Outcome::ConnectRefused,
        Outcome::ConnectTimeout,
        Outcome::TlsHandshake,
        Outcome::RequestTimeout,
        Outcome::Reset,
        Outcome::ProtocolError,
        Outcome::Other,
    ];

    /// The key in results files and `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Status2xx => "2xx",
            Outcome::Status3xx => "3xx",
            Outcome::Status4xx => "4xx",
            Outcome::Status5xx => "5xx",
            Outcome::ConnectRefused => "connect_refused",
            Outcome::ConnectTimeout => "connect_timeout",
            Outcome::TlsHandshake => "tls_handshake",
            Outcome::RequestTimeout => "request_timeout",
            Outcome::Reset => "reset",
            Outcome::ProtocolError => "protocol_error",
            Outcome::Other => "other",
        }
    }

    /// A human sentence for hey's "Error distribution" section.
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::Status2xx | Outcome::Status3xx | Outcome::Status4xx | Outcome::Status5xx => {
                "HTTP response"
            }
            Outcome::ConnectRefused => "connect: connection refused",
            Outcome::ConnectTimeout => "connect: timed out",
            Outcome::TlsHandshake => "TLS handshake failed",
            Outcome::RequestTimeout => "request timed out (awaiting response)",
            Outcome::Reset => "connection reset or closed before the response was complete",
            Outcome::ProtocolError => "malformed HTTP response",
            Outcome::Other => "other error",
        }
    }

    /// What to check first when every request ended this way (printed next
    /// to the availability), for the failures whose usual cause is the setup.
    pub fn hint(self) -> Option<&'static str> {
        match self {
            Outcome::ConnectRefused => Some("connection refused: is the server up?"),
            Outcome::TlsHandshake => Some(
                "the TLS handshake failed: does this port speak TLS? (for plain HTTP use http://)",
            ),
            _ => None,
        }
    }

    pub fn from_name(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.name() == name)
    }

    /// The outcome of a response with this status; 1xx as a final status is `Other`.
    pub fn from_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Status2xx,
            300..=399 => Outcome::Status3xx,
            400..=499 => Outcome::Status4xx,
            500..=599 => Outcome::Status5xx,
            _ => Outcome::Other,
        }
    }

    /// True for outcomes that carry an HTTP response.
    pub fn is_response(self) -> bool {
        matches!(
            self,
            Outcome::Status2xx | Outcome::Status3xx | Outcome::Status4xx | Outcome::Status5xx
        )
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names: Vec<_> = Outcome::ALL.iter().map(|o| o.name()).collect();
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_name(o.name()), Some(o));
            assert_eq!(Outcome::ALL[o.index()], o);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Outcome::ALL.len());
    }

    #[test]
    fn status_classes() {
        assert_eq!(Outcome::from_status(204), Outcome::Status2xx);
        assert_eq!(Outcome::from_status(302), Outcome::Status3xx);
        assert_eq!(Outcome::from_status(429), Outcome::Status4xx);
        assert_eq!(Outcome::from_status(503), Outcome::Status5xx);
        assert_eq!(Outcome::from_status(101), Outcome::Other);
        assert!(Outcome::Status4xx.is_response());
        assert!(!Outcome::Reset.is_response());
    }
}

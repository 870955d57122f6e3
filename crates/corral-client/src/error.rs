//! What a client call can fail with.

/// A failed call. `Api` carries the server's own error code and message.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's stable snake_case code, e.g. `not_found`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The URL is not usable.
    #[error("invalid URL {0:?}: use http://HOST:PORT or https://HOST:PORT")]
    InvalidUrl(String),
    /// The server could not be reached or the connection broke.
    #[error("cannot reach corral at {url}: {message}; is `corral serve` running?")]
    Connect {
        /// The base URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The server's answer was not what the API describes.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
    /// Reading or writing local data failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
}

impl ClientError {
    /// The server's error code, when the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

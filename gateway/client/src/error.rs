//! The client library's error type.

use std::net::SocketAddr;

use keel_protocol::soupbin::LoginRejectReason;
use keel_protocol::ProtocolError;

/// Everything the client library (and `keel client`) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A value given to the library is not valid (a price, a token, a symbol, an address).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being parsed or built.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An endpoint refused the login as not authorized (`Login Rejected A`): wrong user name
    /// or password, or too many failed attempts. Retrying elsewhere would not help.
    #[error("login rejected by {endpoint}: {}", login_reject_text(*.reason))]
    LoginRejected {
        /// The endpoint that refused.
        endpoint: SocketAddr,
        /// Its reason code.
        reason: LoginRejectReason,
    },
    /// No endpoint accepted a connection and login within the configured attempts; the
    /// message lists each endpoint's last failure.
    #[error("no endpoint accepted the login after {attempts} attempt(s): {failures}")]
    Unavailable {
        /// Passes made over the endpoint list.
        attempts: u32,
        /// `endpoint: reason` for each endpoint, `; `-separated.
        failures: String,
    },
    /// The client is between connections (it reconnects on its own; see
    /// [`super::Client::wait_connected`]). Nothing was sent.
    #[error("not connected (the client is reconnecting)")]
    NotConnected,
    /// The client has logged out or given up reconnecting. Nothing was sent.
    #[error("the client is closed (logged out, or gave up reconnecting)")]
    Closed,
    /// A socket operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A protocol value could not be encoded or decoded.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// `keel client` was used wrongly (a bad command line or script line).
    #[error("{0}")]
    Usage(String),
    /// `keel client` gave up waiting for the server.
    #[error("{0}")]
    NoResponse(String),
}

/// A human description of a Login Rejected reason code.
pub fn login_reject_text(reason: LoginRejectReason) -> &'static str {
    match reason {
        LoginRejectReason::NotAuthorized => "not authorized (A): wrong user name or password",
        LoginRejectReason::SessionNotAvailable => {
            "session not available (S): the user is logged in elsewhere, this node does \
             not serve the session (e.g. a follower), or it is too busy to check the \
             password now"
        }
    }
}

impl ClientError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> ClientError {
        ClientError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

//! Keel's resumption ticket notice: how a Keel node hands a client a short-lived credential
//! it may present instead of its password on later logins, inside standard SoupBinTCP.
//!
//! SoupBinTCP's Login Accepted carries only the session and the next sequence number, and
//! its Login Request has a 10-character password field, so the ticket travels as follows:
//!
//! - right after a Login Accepted that followed a *password* check, the node sends one
//!   **Debug** packet (`+`) whose text is
//!   `keel-ticket v1 ticket=<10 base62 characters> expires=<unix seconds>`
//!   (ASCII, single spaces, no trailing newline). SoupBinTCP calls Debug text free-form and
//!   clients ignore it, so a standard client is unaffected;
//! - a client that understands it may put the ticket in the Login Request's Password field
//!   on its next logins as the same user, to any node of the same cluster, until `expires`
//!   (the node's clock decides; see the README for the tolerance).
//!
//! Logins by ticket get no new ticket: a ticket's life is not extended by using it.
//! Readers must ignore Debug text that does not start with `keel-ticket `, and a `v1`
//! notice with fields they do not know after `expires` (fields may be added at the end).

use super::soupbin::Password;

/// What a ticket notice's Debug text starts with.
pub const TICKET_NOTICE_PREFIX: &str = "keel-ticket v1 ";

/// Characters of a ticket (the whole SoupBinTCP password field).
pub const TICKET_CHARS: usize = 10;

/// A resumption ticket as announced to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketNotice {
    /// The ticket: 10 characters of `0-9A-Za-z`, sent as the password.
    pub ticket: Password,
    /// When the node stops accepting it, in seconds since the Unix epoch (UTC).
    pub expires_unix_s: u64,
}

impl TicketNotice {
    /// The Debug packet text announcing this ticket.
    pub fn text(&self) -> String {
        format!(
            "{TICKET_NOTICE_PREFIX}ticket={} expires={}",
            self.ticket.as_str(),
            self.expires_unix_s
        )
    }

    /// Reads a Debug packet's text; `None` for anything that is not a well-formed v1 notice
    /// (other Debug text included).
    pub fn parse(payload: &[u8]) -> Option<TicketNotice> {
        let text = std::str::from_utf8(payload).ok()?;
        let rest = text.strip_prefix(TICKET_NOTICE_PREFIX)?;
        let mut fields = rest.split(' ');
        let ticket = fields.next()?.strip_prefix("ticket=")?;
        let expires = fields.next()?.strip_prefix("expires=")?;
        if ticket.len() != TICKET_CHARS || !ticket.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        Some(TicketNotice {
            ticket: Password::new(ticket).ok()?,
            expires_unix_s: expires.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_reads_back_and_other_debug_text_is_ignored() {
        let notice = TicketNotice {
            ticket: Password::new("a1B2c3D4e5").unwrap(),
            expires_unix_s: 1_764_000_000,
        };
        let text = notice.text();
        assert_eq!(text, "keel-ticket v1 ticket=a1B2c3D4e5 expires=1764000000");
        assert_eq!(TicketNotice::parse(text.as_bytes()), Some(notice));
        // Fields added later at the end are ignored.
        let longer = format!("{text} node=2");
        assert_eq!(TicketNotice::parse(longer.as_bytes()), Some(notice));
        for other in [
            "hello",
            "keel-ticket v2 ticket=a1B2c3D4e5 expires=1",
            "keel-ticket v1 ticket=a1B2c3D4e expires=1",
            "keel-ticket v1 ticket=a1B2c3D4e! expires=1",
            "keel-ticket v1 ticket=a1B2c3D4e5 expires=-1",
            "keel-ticket v1 ticket=a1B2c3D4e5",
            "keel-ticket v1 expires=1 ticket=a1B2c3D4e5",
        ] {
            assert_eq!(TicketNotice::parse(other.as_bytes()), None, "{other}");
        }
        assert_eq!(TicketNotice::parse(&[0xff, 0xfe]), None);
    }
}

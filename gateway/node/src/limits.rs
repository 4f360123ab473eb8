//! The start-up check of the process's open-file limit against what the node is configured
//! to hold open: every order-entry connection slot is a socket, and a node that runs out of
//! descriptors under a connection flood fails on its journal or its peers, not on the flood.
//! The soft limit is raised up to the hard limit when that is enough; otherwise the node
//! refuses to start, saying what to set.

use crate::config::Config;
use crate::Error;

/// Descriptors the node holds besides its order-entry connections: journal segments being
/// written, prepared and read, snapshots, the listeners, epoll, eventfds and io_uring
/// rings of its threads, standard streams and the log; with room to spare.
pub const OPEN_FILES_HEADROOM: u64 = 256;
/// Descriptors per cluster peer (its Raft connections in and out, with room for the
/// unauthenticated connections the Raft port accepts).
pub const OPEN_FILES_PER_PEER: u64 = 8;
/// The most the soft limit is raised to when the hard limit is unlimited.
const RAISE_CAP: u64 = 1 << 20;

/// Open files the node needs with `config`: its connection slots, the follower's door in a
/// cluster, its peers', and [`OPEN_FILES_HEADROOM`].
pub fn open_files_needed(config: &Config) -> u64 {
    let slots = crate::server::CONNECTIONS_MAX as u64;
    let cluster = config.cluster.as_ref().map_or(0, |cluster| {
        crate::cluster::DOOR_CONNECTIONS_MAX as u64
            + OPEN_FILES_PER_PEER * cluster.peers.len() as u64
    });
    slots + cluster + OPEN_FILES_HEADROOM
}

/// What to do about an open-file limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The soft limit is enough.
    Enough,
    /// Raise the soft limit to this (at most the hard limit).
    Raise(u64),
    /// Even the hard limit is below what is needed.
    TooLow,
}

/// The plan for a soft and hard limit (`u64::MAX` = unlimited) and `needed` descriptors.
pub fn plan(soft: u64, hard: u64, needed: u64) -> Plan {
    if soft >= needed {
        Plan::Enough
    } else if hard >= needed {
        // As far as the hard limit allows (capped when unlimited): room for growth costs
        // nothing, and the check is made once.
        Plan::Raise(hard.min(RAISE_CAP.max(needed)))
    } else {
        Plan::TooLow
    }
}

/// Checks RLIMIT_NOFILE against [`open_files_needed`]; raises the soft limit, or refuses.
pub fn ensure_open_files(config: &Config) -> Result<(), Error> {
    let needed = open_files_needed(config);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(Error::Io(std::io::Error::last_os_error()));
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    match plan(soft, hard, needed) {
        Plan::Enough => Ok(()),
        Plan::Raise(to) => {
            limit.rlim_cur = to;
            // SAFETY: setrlimit reads the struct it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
                return Err(Error::Io(std::io::Error::last_os_error()));
            }
            tracing::info!(from = soft, to, needed, "open-file limit (soft) raised");
            Ok(())
        }
        Plan::TooLow => Err(Error::Node(format!(
            "the open-file limit is too low: this node needs about {needed} open files \
             (1,024 order-entry connections and its journal and peers), and the hard limit \
             is {hard} (soft {soft}); raise it to at least {needed} (`ulimit -n {needed}` \
             as root before starting, `LimitNOFILE={needed}` in a systemd unit, or \
             `nofile` in /etc/security/limits.conf)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_when_the_hard_one_allows_else_the_node_refuses() {
        assert_eq!(plan(2_000, 2_000, 1_300), Plan::Enough);
        assert_eq!(plan(1_024, 4_096, 1_300), Plan::Raise(4_096));
        assert_eq!(plan(1_024, u64::MAX, 1_300), Plan::Raise(RAISE_CAP));
        assert_eq!(plan(1_024, 1_299, 1_300), Plan::TooLow);
        assert_eq!(plan(256, 1_300, 1_300), Plan::Raise(1_300));
    }

    #[test]
    fn a_cluster_node_needs_more_than_a_single_one() {
        let single = Config::embedded_default();
        let needed = open_files_needed(&single);
        assert_eq!(
            needed,
            crate::server::CONNECTIONS_MAX as u64 + OPEN_FILES_HEADROOM
        );
        let mut config = single.clone();
        config.cluster = Some(crate::config::ClusterConfig {
            node_id: 1,
            peers: (1..=3)
                .map(|id| (id.to_string(), ([127, 0, 0, 1], 9100 + id).into()))
                .collect(),
            secret: "0123456789abcdef".into(),
            election_timeout_ms: 200,
            heartbeat_ms: 40,
        });
        assert!(open_files_needed(&config) > needed);
    }
}

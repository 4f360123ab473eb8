//! A fault-injection seam for tests of supervision, compiled only with the feature
//! `fault-injection` (the `keel` package turns it on for its own tests, so the binary the
//! gateway tests start has it; `cargo build --release` does not). Without the feature every
//! check is an inlined `Ok(())`.
//!
//! `KEEL_FAULT=<point>:<error|panic|hang>[:after=<n>][:when=<path>]` makes the named point
//! fail on its `n + 1`-th pass (and every pass after), by returning an error, by panicking,
//! or by never returning (the thread sleeps for ever); with `when=<path>` (an absolute path;
//! one `stat` per pass, so meant for points passed a few hundred times a second at most)
//! only while that file exists, so that a test or drill fires it at a moment of its choosing
//! without restarting the node:
//!
//! | point | where it is checked | a pass is |
//! |---|---|---|
//! | `matching` | the matching loop, before it journals an input | an input |
//! | `flusher` | the matching loop's look at the journal's sync health, as if the flusher had failed | an input |
//! | `gateway` | the gateway, as it hands an input to the matching loop | an input |
//! | `leader` | a cluster leader's order-entry thread, before it serves (as a failed bind would) | a leadership |
//! | `replication` | a cluster node's replication loop | a turn of the loop (about one per 10 ms tick) |
//! | `journal-sync` | a cluster node's replication loop, which then makes the journal flusher's next sync fail with EIO ([`keel_journal::Watermarks::inject_sync_failures`]): the real failed-sync path (`sync-failure` record, durable watermark frozen, exit 74); `error` is the only meaningful mode | a turn of the loop |
//! | `rebuild` | a cluster node's rebuild of its state from the journal (thread `keel-rebuild`), before it replays | a rebuild (the first is the node's start, the next ones follow step-downs) |

use crate::Error;

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// How an injected fault shows.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum How {
        Error,
        Panic,
        Hang,
    }

    /// A parsed `KEEL_FAULT`.
    pub(super) struct Spec {
        pub(super) point: String,
        pub(super) how: How,
        pub(super) after: u64,
        pub(super) when: Option<std::path::PathBuf>,
        pub(super) passes: AtomicU64,
    }

    pub(super) fn parse(text: &str) -> Option<Spec> {
        let mut parts = text.split(':');
        let point = parts.next()?.to_string();
        let how = match parts.next()? {
            "panic" => How::Panic,
            "error" => How::Error,
            "hang" => How::Hang,
            _ => return None,
        };
        let (mut after, mut when) = (0, None);
        for part in parts {
            if let Some(n) = part.strip_prefix("after=") {
                after = n.parse().ok()?;
            } else if let Some(path) = part.strip_prefix("when=") {
                when = Some(std::path::PathBuf::from(path));
            } else {
                return None;
            }
        }
        Some(Spec {
            point,
            how,
            after,
            when,
            passes: AtomicU64::new(0),
        })
    }

    pub(super) fn spec() -> Option<&'static Spec> {
        static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
        SPEC.get_or_init(|| {
            let text = std::env::var("KEEL_FAULT").ok()?;
            let spec = parse(&text);
            match &spec {
                Some(_) => tracing::warn!(fault = %text, "fault injection armed (KEEL_FAULT)"),
                None => tracing::error!(fault = %text, "KEEL_FAULT not understood; ignored"),
            }
            spec
        })
        .as_ref()
    }

    /// Whether `point` fails on this pass, and how.
    pub(super) fn fires(point: &str) -> Option<How> {
        let spec = spec().filter(|spec| spec.point == point)?;
        let pass = spec.passes.fetch_add(1, Ordering::Relaxed);
        let armed = spec.when.as_ref().is_none_or(|path| path.exists());
        (pass >= spec.after && armed).then_some(spec.how)
    }
}

/// Logs the armed fault, if any, at start (so a test can see that the seam is there).
pub(crate) fn announce() {
    #[cfg(feature = "fault-injection")]
    let _ = armed::spec();
}

/// Whether the injected fault fires at `point` on this pass, for points whose effect is
/// not an error of the calling thread (`journal-sync`). Always false without the feature.
#[inline]
pub(crate) fn fires(point: &'static str) -> bool {
    #[cfg(feature = "fault-injection")]
    if armed::fires(point).is_some() {
        return true;
    }
    let _ = point;
    false
}

/// The seam at `point`: `Err` (or a panic, or no return) once the injected fault fires
/// there.
#[inline]
pub(crate) fn check(point: &'static str) -> Result<(), Error> {
    #[cfg(feature = "fault-injection")]
    if let Some(how) = armed::fires(point) {
        match how {
            // The point of the seam: a thread of the node panics.
            #[allow(clippy::panic)]
            armed::How::Panic => panic!("injected fault (KEEL_FAULT) at {point}"),
            armed::How::Hang => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            armed::How::Error => {
                return Err(Error::Node(format!(
                    "injected fault (KEEL_FAULT) at {point}"
                )))
            }
        }
    }
    let _ = point;
    Ok(())
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::armed::{parse, How};

    #[test]
    fn specs_parse() {
        let spec = parse("matching:panic:after=100").unwrap();
        assert_eq!(
            (spec.point.as_str(), spec.how, spec.after),
            ("matching", How::Panic, 100)
        );
        let spec = parse("leader:error").unwrap();
        assert_eq!(
            (spec.point.as_str(), spec.how, spec.after),
            ("leader", How::Error, 0)
        );
        assert_eq!(parse("matching:hang:after=5").unwrap().how, How::Hang);
        assert!(parse("matching").is_none());
        assert!(parse("matching:explode").is_none());
        assert!(parse("matching:error:later=3").is_none());
        let spec = parse("journal-sync:error:when=/tmp/x:after=2").unwrap();
        assert_eq!(
            (spec.point.as_str(), spec.after, spec.when.as_deref()),
            ("journal-sync", 2, Some(std::path::Path::new("/tmp/x")))
        );
    }
}

//! The preparer thread: creates and maps the next segment before the appender needs it,
//! retrying with bounded backoff when it cannot, and watching free space on the journal's
//! file system.
//!
//! A failed preparation (a full disk, an I/O error) is logged as a warning, published in
//! the health state ([`crate::JournalHealth::preparer_failing_since`]) and retried: freeing
//! space lets the journal carry on. Meanwhile the appender fills the current segment; once
//! it is full, appends fail with [`crate::Error::PreparerFailing`] instead of blocking.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::segment::{self, WritableSegment};
use crate::watermarks::Watermarks;

/// How often the preparer looks for a request. The appender asks as soon as it starts a
/// segment, so the preparer has a whole segment's worth of appends to finish in.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// First wait after a failed preparation; doubled after each further failure up to
/// [`RETRY_BACKOFF_MAX`], so a full disk costs a few attempts a second, not a busy loop.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(10);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often free space is measured while idle (it is also measured after each
/// preparation).
const FREE_SPACE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// What the preparer needs to know about the journal.
pub(crate) struct PreparerConfig {
    pub dir: PathBuf,
    pub segment_size_bytes: u64,
    /// Warn below this many free bytes (already raised to at least two segments).
    pub free_space_warn_bytes: u64,
}

pub(crate) fn spawn(
    config: PreparerConfig,
    marks: Arc<Watermarks>,
    spares: Sender<WritableSegment>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("keel-journal-prep".into())
        .spawn(move || {
            crate::threads::lower_priority();
            let mut prepared = marks.active_segment();
            let mut space = FreeSpaceWatch::default();
            space.check(&config, &marks);
            while !marks.stopping() {
                let wanted = marks.spare_wanted();
                if wanted <= prepared {
                    if space.last_check.elapsed() >= FREE_SPACE_CHECK_INTERVAL {
                        space.check(&config, &marks);
                    }
                    std::thread::sleep(POLL_INTERVAL);
                    continue;
                }
                let Some(segment) = prepare_with_retries(&config, wanted, &marks) else {
                    break;
                };
                space.check(&config, &marks);
                if spares.send(segment).is_err() {
                    break;
                }
                prepared = wanted;
            }
        })
}

/// Prepares segment `index`, retrying with backoff until it succeeds; `None` if the journal
/// stops first.
fn prepare_with_retries(
    config: &PreparerConfig,
    index: u64,
    marks: &Watermarks,
) -> Option<WritableSegment> {
    let mut backoff = RETRY_BACKOFF_MIN;
    loop {
        let result = if marks.take_injected_prepare_failure() {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        } else {
            prepare(&config.dir, index, config.segment_size_bytes)
        };
        match result {
            Ok(segment) => {
                if marks.preparer_failing() {
                    tracing::info!(segment = index, "journal segment prepared again");
                }
                marks.set_preparer_outcome(None);
                return Some(segment);
            }
            Err(error) => {
                tracing::warn!(
                    segment = index,
                    %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot prepare journal segment; retrying"
                );
                marks.set_preparer_outcome(Some(error.to_string()));
            }
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if marks.stopping() {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL.max(Duration::from_millis(5)));
        }
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
    }
}

fn prepare(dir: &Path, index: u64, size_bytes: u64) -> std::io::Result<WritableSegment> {
    if !segment::segment_path(dir, index).exists() {
        if let Err(error) = segment::create(dir, index, size_bytes) {
            // A half-written temporary file would hold on to the very space that ran out.
            let _ =
                std::fs::remove_file(segment::segment_path(dir, index).with_extension("seg.tmp"));
            return Err(error);
        }
    }
    segment::map_writable(dir, index)
}

/// Free-space warnings: one when space falls below the threshold, one when it recovers.
struct FreeSpaceWatch {
    low: bool,
    last_check: Instant,
}

impl Default for FreeSpaceWatch {
    fn default() -> Self {
        FreeSpaceWatch {
            low: false,
            last_check: Instant::now(),
        }
    }
}

impl FreeSpaceWatch {
    fn check(&mut self, config: &PreparerConfig, marks: &Watermarks) {
        self.last_check = Instant::now();
        let free_bytes = match free_bytes(&config.dir) {
            Ok(free) => free,
            Err(error) => {
                tracing::warn!(%error, "cannot measure free space for the journal");
                return;
            }
        };
        let low = free_bytes < config.free_space_warn_bytes;
        if low && !self.low {
            tracing::warn!(
                free_bytes,
                threshold_bytes = config.free_space_warn_bytes,
                dir = %config.dir.display(),
                "journal file system low on free space"
            );
        } else if !low && self.low {
            tracing::info!(free_bytes, "journal file system has free space again");
        }
        self.low = low;
        marks.set_free_space_low(low.then_some(free_bytes));
    }
}

/// Bytes available to an unprivileged writer on the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("journal path contains a NUL byte"))?;
    // SAFETY: statvfs is plain data; all-zero is a valid value for it.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `stat` a valid out-pointer for the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_bytes_of_a_real_directory_is_positive() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn low_free_space_is_published_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let marks = Watermarks::default();
        let mut watch = FreeSpaceWatch::default();
        let mut config = PreparerConfig {
            dir: dir.path().to_path_buf(),
            segment_size_bytes: 4096,
            free_space_warn_bytes: u64::MAX,
        };
        watch.check(&config, &marks);
        assert!(marks.health().free_space_low_bytes.is_some());
        config.free_space_warn_bytes = 0;
        watch.check(&config, &marks);
        assert_eq!(marks.health().free_space_low_bytes, None);
    }
}

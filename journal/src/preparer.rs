//! The preparer thread: creates and maps the next segment before the appender needs it.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::segment::{self, WritableSegment};
use crate::watermarks::Watermarks;

/// How often the preparer looks for a request. The appender asks as soon as it starts a
/// segment, so the preparer has a whole segment's worth of appends to finish in.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

pub(crate) fn spawn(
    dir: PathBuf,
    segment_size_bytes: u64,
    marks: Arc<Watermarks>,
    spares: Sender<std::io::Result<WritableSegment>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("keel-journal-prep".into())
        .spawn(move || {
            crate::threads::lower_priority();
            let mut prepared = marks.active_segment();
            while !marks.stopping() {
                let wanted = marks.spare_wanted();
                if wanted <= prepared {
                    std::thread::sleep(POLL_INTERVAL);
                    continue;
                }
                let result = prepare(&dir, wanted, segment_size_bytes);
                if let Err(error) = &result {
                    tracing::error!(segment = wanted, %error, "cannot prepare journal segment");
                }
                if spares.send(result).is_err() {
                    break;
                }
                prepared = wanted;
            }
        })
}

fn prepare(dir: &std::path::Path, index: u64, size_bytes: u64) -> std::io::Result<WritableSegment> {
    if !segment::segment_path(dir, index).exists() {
        segment::create(dir, index, size_bytes)?;
    }
    segment::map_writable(dir, index)
}

//! The drill's disks: each node's data directory on its own small loop-mounted ext4 (root
//! and a loop device needed), so that the nemesis can fill one (a ballast file takes every
//! free block), and the operator steps after a failed sync (`keel serve` must refuse the
//! journal, `keel journal clear-sync-failure` clears it).
//!
//! For slow disks, each node's image file lives in its own [`SlowMount`] (a FUSE
//! passthrough of a backing directory whose writes and syncs wait for a delay switched at
//! run time), so a node's stack is: data directory → ext4 → loop device → image on the
//! slow mount → backing file.
//!
//! Mounts are undone by [`Disks::unmount`], which the drill calls once every node has
//! stopped, and by `Drop` on any other way out: per node, ext4 unmounted, loop device
//! detached, then the slow mount (the other order hangs or fails: ext4 writes back through
//! the loop device, which holds the image open on the slow mount).

use std::fs::File;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::slowfs::SlowMount;

/// Size of each node's file system: room for a long drill's journal (about 150 bytes a
/// record, plus the Raft index) many times over.
pub const IMAGE_BYTES: u64 = 128 << 20;

/// How long unmounting a node's ext4 may take before the slow mount under it is aborted
/// (a FUSE daemon that hangs must not hang the drill).
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// One node's disk.
struct Mount {
    /// The image file (on the slow mount, if any).
    image: PathBuf,
    /// The mount point: the node's data directory.
    dir: PathBuf,
    /// The loop device, once mounted.
    device: Option<String>,
    /// The ballast file, while the disk is full.
    ballast: Option<PathBuf>,
    /// The slow mount holding the image, and the backing directory under it.
    slow: Option<(SlowMount, PathBuf)>,
}

/// Every node's disk.
pub struct Disks {
    mounts: Vec<Mount>,
}

impl Disks {
    /// Makes an ext4 image per data directory (`IMAGE_BYTES`, sparse, in `images`) and
    /// mounts it there; with `slow`, each image on its own slow mount (`images/nodeN-slow`,
    /// backed by `images/nodeN-backing`). Says why if it cannot (then nothing stays
    /// mounted).
    pub fn mount(images: &Path, data_dirs: &[PathBuf], slow: bool) -> Result<Disks, String> {
        // SAFETY: a plain query of this process's effective user id.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root (loop mounts need root)".to_string());
        }
        if slow && !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse (a slow disk is a FUSE mount)".to_string());
        }
        let mut disks = Disks { mounts: Vec::new() };
        for (index, dir) in data_dirs.iter().enumerate() {
            let name = format!("node{}", index + 1);
            let slow_mount = if slow {
                Some(mount_slow(images, &name)?)
            } else {
                None
            };
            let image_dir = slow_mount
                .as_ref()
                .map_or(images, |(mount, _)| mount.path());
            disks.mounts.push(Mount {
                image: image_dir.join(format!("{name}-disk.img")),
                dir: dir.clone(),
                device: None,
                ballast: None,
                slow: slow_mount,
            });
            // Listed before it is attached: a failure drops `disks`, which undoes it too.
            if let Some(mount) = disks.mounts.last_mut() {
                mount.attach()?;
            }
        }
        Ok(disks)
    }

    /// Whether the images are on slow mounts.
    pub fn slow(&self) -> bool {
        self.mounts.iter().any(|m| m.slow.is_some())
    }

    /// Makes node `index`'s disk slow: each write, sync, flush and allocation of its image
    /// waits `delay` first (zero: back to normal).
    pub fn set_delay(&self, index: usize, delay: Duration) -> Result<(), String> {
        match self.mounts.get(index).and_then(|m| m.slow.as_ref()) {
            Some((slow, _)) => {
                slow.set_delay(delay);
                Ok(())
            }
            None => Err(format!("node{}'s disk is not on a slow mount", index + 1)),
        }
    }

    /// How many operations of node `index`'s image have waited for a delay so far.
    pub fn delayed_ops(&self, index: usize) -> u64 {
        self.mounts
            .get(index)
            .and_then(|m| m.slow.as_ref())
            .map_or(0, |(slow, _)| slow.delayed_ops())
    }

    /// The loop devices, by node.
    pub fn devices(&self) -> Vec<String> {
        self.mounts
            .iter()
            .map(|m| m.device.clone().unwrap_or_default())
            .collect()
    }

    /// Fills node `index`'s file system with a ballast file until a write fails for want of
    /// space; returns the bytes written.
    pub fn fill(&mut self, index: usize) -> std::io::Result<u64> {
        let mount = self
            .mounts
            .get_mut(index)
            .ok_or_else(|| std::io::Error::other("no such disk"))?;
        let path = mount.dir.join("drill-ballast");
        mount.ballast = Some(path.clone());
        let file = File::create(&path)?;
        // Allocated, not written: `fallocate` takes the blocks (as unwritten extents) with
        // no data I/O, so filling the disk does not also flood the host disk the other
        // nodes' journals sync to (writing 100 MB of ballast did, and slowed their syncs).
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let mut written: u64 = 0;
        let mut piece: u64 = 64 << 20;
        while piece >= 4096 {
            let (offset, len) = (
                libc::off_t::try_from(written).map_err(std::io::Error::other)?,
                libc::off_t::try_from(piece).map_err(std::io::Error::other)?,
            );
            // SAFETY: `fd` is an open file owned by `file`, alive for this call.
            let result = unsafe { libc::fallocate(fd, 0, offset, len) };
            if result == 0 {
                written += piece;
                continue;
            }
            let error = std::io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) => {}
                // Less than a piece left: halve it, down to a block.
                Some(libc::ENOSPC) => piece /= 2,
                _ => return Err(error),
            }
        }
        Ok(written)
    }

    /// Deletes node `index`'s ballast, if any.
    pub fn free(&mut self, index: usize) -> std::io::Result<()> {
        if let Some(path) = self.mounts.get_mut(index).and_then(|m| m.ballast.take()) {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Unmounts every disk and detaches its loop device (and unmounts its slow mount),
    /// deleting the images; returns what could not be undone. Call once no process uses
    /// the disks.
    pub fn unmount(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for mount in self.mounts.drain(..) {
            mount.undo(&mut problems);
        }
        problems
    }
}

/// Makes `images/NAME-backing` and mounts a slow mount of it at `images/NAME-slow`.
fn mount_slow(images: &Path, name: &str) -> Result<(SlowMount, PathBuf), String> {
    let backing = images.join(format!("{name}-backing"));
    let mountpoint = images.join(format!("{name}-slow"));
    for dir in [&backing, &mountpoint] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok((SlowMount::mount(&backing, &mountpoint)?, backing))
}

impl Mount {
    /// Creates the image, makes an ext4 of it, and mounts it on a loop device at `dir`.
    fn attach(&mut self) -> Result<(), String> {
        let image = &self.image;
        File::create(image)
            .and_then(|file| file.set_len(IMAGE_BYTES))
            .map_err(|e| format!("cannot create {}: {e}", image.display()))?;
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image))?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let device = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image))?;
        let device = device.trim().to_string();
        self.device = Some(device.clone());
        run(Command::new("mount").arg(&device).arg(&self.dir))?;
        // An empty data directory, as the node expects on its first start.
        let _ = std::fs::remove_dir(self.dir.join("lost+found"));
        Ok(())
    }

    /// Unmounts the ext4, detaches the loop device, unmounts the slow mount, deletes the
    /// image: in that order (see the module's documentation). Adds what failed to
    /// `problems`.
    fn undo(self, problems: &mut Vec<String>) {
        if let Some((slow, _)) = &self.slow {
            // Whatever is still to be written back goes at full speed.
            slow.set_delay(Duration::ZERO);
        }
        if let Some(device) = &self.device {
            if let Err(why) = self.unmount_ext4() {
                problems.push(why);
            }
            if let Err(why) = run(Command::new("losetup").arg("-d").arg(device)) {
                problems.push(format!("cannot detach {device}: {why}"));
            }
        }
        let image = match self.slow {
            Some((mut slow, backing)) => {
                if let Err(why) = slow.unmount() {
                    problems.push(format!("{}: {why}", slow.path().display()));
                }
                self.image.file_name().map(|name| backing.join(name))
            }
            None => Some(self.image),
        };
        if let Some(image) = image {
            let _ = std::fs::remove_file(image);
        }
    }

    /// Unmounts the ext4 at `dir`. Still in use (a process not yet reaped): detached from
    /// the tree, the loop device going once the last user does (autoclear). Not done
    /// within [`UNMOUNT_TIMEOUT`] (a slow mount's daemon that does not answer): the slow
    /// mount's connection is aborted, which fails the pending writes and ends the umount.
    fn unmount_ext4(&self) -> Result<(), String> {
        match run_bounded(Command::new("umount").arg(&self.dir), UNMOUNT_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(Bounded::Failed(why)) => {
                let _ = run(Command::new("umount").arg("-l").arg(&self.dir));
                Err(format!("{} was busy: {why}", self.dir.display()))
            }
            Err(Bounded::TimedOut) => {
                let aborted = match &self.slow {
                    Some((slow, _)) => slow.abort().map_or_else(
                        |e| format!("; cannot abort its slow mount: {e}"),
                        |()| "; its slow mount aborted".to_string(),
                    ),
                    None => String::new(),
                };
                Err(format!(
                    "umount {} did not finish within {UNMOUNT_TIMEOUT:?}{aborted}",
                    self.dir.display()
                ))
            }
        }
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        for problem in self.unmount() {
            eprintln!("keel-perf drill: {problem}");
        }
    }
}

/// Longest a disk command (mkfs, losetup, mount) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `command` (for at most [`COMMAND_TIMEOUT`]); its standard output, or why it failed.
fn run(command: &mut Command) -> Result<String, String> {
    run_bounded(command, COMMAND_TIMEOUT).map_err(|failure| match failure {
        Bounded::Failed(why) => why,
        Bounded::TimedOut => format!("{command:?} did not finish within {COMMAND_TIMEOUT:?}"),
    })
}

/// How a bounded command failed.
enum Bounded {
    /// It ended unsuccessfully (or could not start): why.
    Failed(String),
    /// It did not end in time (it was sent SIGKILL, which takes effect once it leaves the
    /// kernel).
    TimedOut,
}

/// Runs `command` for at most `timeout`; its standard output, or how it failed.
fn run_bounded(command: &mut Command, timeout: Duration) -> Result<String, Bounded> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Bounded::Failed(format!("cannot run {command:?}: {e}")))?;
    let deadline = Instant::now() + timeout;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Err(Bounded::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Exited: its pipes hold at most what it wrote, which `wait_with_output` reads.
    let output = child
        .wait_with_output()
        .map_err(|e| Bounded::Failed(format!("{command:?}: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Bounded::Failed(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// `keel serve` on node `config`, expected to refuse to start (a journal with a sync-failure
/// record): its exit status and last line of standard error, or an error if it did not
/// exit within `timeout` (it is then killed).
pub fn start_refused(
    keel: &Path,
    config: &Path,
    timeout: Duration,
) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let mut child = Command::new(keel)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut text = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            }
            let last = text.lines().last().unwrap_or("").to_string();
            return Ok((status, last));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("keel serve started on a journal with a sync-failure record (it ran {timeout:?} without refusing)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `keel journal ARGS DIR`: exit status and output (stdout then stderr).
pub fn journal_command(
    keel: &Path,
    args: &[&str],
    dir: &Path,
) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let output = Command::new(keel)
        .arg("journal")
        .args(args)
        .arg(dir)
        .stdin(Stdio::null())
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status, text.trim().replace('\n', " / ")))
}

/// The last sequence number in the journal in `dir` (read while the node runs: a record
/// being written counts as a torn tail, not an error).
pub fn last_seq(dir: &Path) -> Option<u64> {
    keel_journal::recovery::scan(dir, |_| {})
        .ok()
        .map(|scan| scan.last_seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Appends `len` bytes to `file` and fdatasyncs it; how long that took.
    fn append_and_sync(file: &mut File, len: usize) -> Duration {
        let started = Instant::now();
        file.write_all(&vec![7u8; len]).unwrap();
        file.sync_data().unwrap();
        started.elapsed()
    }

    #[test]
    fn a_slow_disk_stack_mounts_syncs_slowly_on_demand_and_unmounts() {
        if let Some(why) = crate::drill::slowfs::tests::cannot_mount() {
            eprintln!("SKIPPED slow disk stack test: {why}");
            return;
        }
        if std::env::var_os("KEEL_SKIP_LOOP_MOUNT").is_some() {
            eprintln!("SKIPPED slow disk stack test: KEEL_SKIP_LOOP_MOUNT is set");
            return;
        }
        let images = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("node1");
        let mut disks = Disks::mount(images.path(), std::slice::from_ref(&dir), true).unwrap();
        assert!(disks.slow());
        let mut file = File::create(dir.join("journal")).unwrap();
        let fast: Vec<Duration> = (0..5).map(|_| append_and_sync(&mut file, 200)).collect();
        let before = disks.delayed_ops(0);
        disks.set_delay(0, Duration::from_millis(50)).unwrap();
        let slow: Vec<Duration> = (0..5).map(|_| append_and_sync(&mut file, 200)).collect();
        disks.set_delay(0, Duration::ZERO).unwrap();
        let after = disks.delayed_ops(0);
        // Timings are printed, never asserted: they are this machine's.
        eprintln!("ext4 on loop on slowfs: append + fdatasync without delay {fast:?}");
        eprintln!(
            "with 50 ms per write/sync: {slow:?} ({} operations delayed)",
            after - before
        );
        // Each fdatasync of ext4 reached the image as writes and a flush.
        assert!(after - before >= 5, "{} delayed", after - before);
        drop(file);
        let problems = disks.unmount();
        assert!(problems.is_empty(), "{problems:?}");
        // Left: the empty backing directory and mount point.
        for entry in std::fs::read_dir(images.path()).unwrap() {
            let entry = entry.unwrap().path();
            assert_eq!(std::fs::read_dir(&entry).unwrap().count(), 0, "{entry:?}");
        }
    }
}

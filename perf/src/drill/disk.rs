//! The drill's disks: each node's data directory on its own small loop-mounted ext4 (root
//! and a loop device needed), so that the nemesis can fill one (a ballast file takes every
//! free block), and the operator steps after a failed sync (`keel serve` must refuse the
//! journal, `keel journal clear-sync-failure` clears it).
//!
//! Mounts are undone (unmounted, loop devices detached) by [`Disks::unmount`], which the
//! drill calls once every node has stopped, and by `Drop` on any other way out.

use std::fs::File;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Size of each node's file system: room for a long drill's journal (about 150 bytes a
/// record, plus the Raft index) many times over.
pub const IMAGE_BYTES: u64 = 128 << 20;

/// One node's disk.
struct Mount {
    /// The image file.
    image: PathBuf,
    /// The mount point: the node's data directory.
    dir: PathBuf,
    /// The loop device, once mounted.
    device: Option<String>,
    /// The ballast file, while the disk is full.
    ballast: Option<PathBuf>,
}

/// Every node's disk.
pub struct Disks {
    mounts: Vec<Mount>,
}

impl Disks {
    /// Makes an ext4 image per data directory (`IMAGE_BYTES`, sparse, in `images`) and
    /// mounts it there; says why if it cannot (then nothing stays mounted).
    pub fn mount(images: &Path, data_dirs: &[PathBuf]) -> Result<Disks, String> {
        // SAFETY: a plain query of this process's effective user id.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root (loop mounts need root)".to_string());
        }
        let mut disks = Disks { mounts: Vec::new() };
        for (index, dir) in data_dirs.iter().enumerate() {
            let image = images.join(format!("node{}-disk.img", index + 1));
            File::create(&image)
                .and_then(|file| file.set_len(IMAGE_BYTES))
                .map_err(|e| format!("cannot create {}: {e}", image.display()))?;
            run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            disks.mounts.push(Mount {
                image: image.clone(),
                dir: dir.clone(),
                device: None,
                ballast: None,
            });
            let device = run(Command::new("losetup")
                .args(["--find", "--show"])
                .arg(&image))?;
            let device = device.trim().to_string();
            if let Some(mount) = disks.mounts.last_mut() {
                mount.device = Some(device.clone());
            }
            run(Command::new("mount").arg(&device).arg(dir))?;
            // An empty data directory, as the node expects on its first start.
            let _ = std::fs::remove_dir(dir.join("lost+found"));
        }
        Ok(disks)
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

    /// Unmounts every disk and detaches its loop device, deleting the images; returns what
    /// could not be undone. Call once no process uses the disks.
    pub fn unmount(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for mount in self.mounts.drain(..) {
            if let Some(device) = &mount.device {
                let busy = run(Command::new("umount").arg(&mount.dir)).err();
                if let Some(why) = busy {
                    // Still in use (a process not yet reaped): detach it from the tree; the
                    // loop device goes once the last user does (autoclear below).
                    let _ = run(Command::new("umount").arg("-l").arg(&mount.dir));
                    problems.push(format!("{} was busy: {why}", mount.dir.display()));
                }
                if let Err(why) = run(Command::new("losetup").arg("-d").arg(device)) {
                    problems.push(format!("cannot detach {device}: {why}"));
                }
            }
            let _ = std::fs::remove_file(&mount.image);
        }
        problems
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        for problem in self.unmount() {
            eprintln!("keel-perf drill: {problem}");
        }
    }
}

/// Runs `command`; its standard output, or why it failed.
fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
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

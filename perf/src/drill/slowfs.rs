//! Slow disks for the drill: a FUSE file system that passes one backing directory through,
//! except that every write, sync, flush and allocation first waits for a delay that the
//! drill switches on and off while it runs ([`SlowMount::set_delay`]).
//!
//! Each node's loop-disk image lives in such a mount, so a node's stack is: its data
//! directory → ext4 → loop device → image file here (the delay) → backing file (in
//! `/dev/shm` by default). A slow journal append then costs the node what it would on a
//! disk whose writes or syncs are slow: every block the loop device writes, and every
//! flush that an `fsync` of ext4 sends down, waits.
//!
//! Why FUSE, and why the `fuser` crate: the kernels the drill runs on have neither
//! device-mapper (no `dm-delay`) nor the cgroup v2 io controller (no `io.max`), and cgroup
//! v1 throttling does not cover buffered writeback or `fsync`. A FUSE daemon sees every
//! write and sync that reaches the image file, and can sleep in it. `fuser` is the
//! maintained pure-Rust FUSE library: without its `libfuse` features it needs no C library,
//! and as root it mounts with mount(2) directly (no `fusermount3`).
//!
//! The daemon runs in the drill's own process, on `fuser`'s background thread. No
//! writeback cache is negotiated, so every write of the loop device reaches the daemon
//! (and waits) before it completes. Undoing a mount must not hang the drill: the delay is
//! switched off first, and a daemon that does not stop in time has its FUSE connection
//! aborted (`/sys/fs/fuse/connections/N/abort`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation,
    INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, SessionACL, TimeOrNow,
    WriteFlags,
};

/// How long the kernel may cache an answer (attributes, names). Only this daemon changes
/// the backing directory while it is mounted, so caching is safe; short, all the same.
const TTL: Duration = Duration::from_secs(1);

/// A delayed operation rechecks the delay this often, so that switching it off (the heal)
/// releases the operations already waiting at once, as a disk that recovers would.
const PAUSE_SLICE: Duration = Duration::from_millis(5);

/// How long unmounting waits for the daemon's thread before aborting its connection.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the drill and the daemon share: the delay, and how many operations waited.
#[derive(Default)]
struct Knob {
    /// The delay of each write, sync, flush and allocation, µs (0: none).
    delay_us: AtomicU64,
    /// Operations that started while a delay was on.
    delayed_ops: AtomicU64,
}

/// Waits out the delay in force (rechecked every [`PAUSE_SLICE`]).
fn pause(knob: &Knob) {
    let started = Instant::now();
    if knob.delay_us.load(Ordering::Relaxed) > 0 {
        knob.delayed_ops.fetch_add(1, Ordering::Relaxed);
    }
    loop {
        let delay = Duration::from_micros(knob.delay_us.load(Ordering::Relaxed));
        let elapsed = started.elapsed();
        if elapsed >= delay {
            return;
        }
        std::thread::sleep((delay - elapsed).min(PAUSE_SLICE));
    }
}

/// Inode numbers of the paths the kernel has looked up, relative to the backing directory
/// (the root, inode 1, is the empty path). Never forgotten: the drill's mounts hold a few
/// files.
#[derive(Default)]
struct Inodes {
    paths: HashMap<u64, PathBuf>,
    numbers: HashMap<PathBuf, u64>,
}

impl Inodes {
    fn number(&mut self, path: PathBuf) -> u64 {
        if let Some(ino) = self.numbers.get(&path) {
            return *ino;
        }
        // The root is 1; the table holds it from the start (see `SlowFs::new`).
        let ino = self.paths.len() as u64 + 1;
        self.paths.insert(ino, path.clone());
        self.numbers.insert(path, ino);
        ino
    }
}

/// The file system: a passthrough of `backing` with delayed writes and syncs.
struct SlowFs {
    backing: PathBuf,
    knob: Arc<Knob>,
    inodes: Mutex<Inodes>,
    files: Mutex<HashMap<u64, Arc<File>>>,
    next_fh: AtomicU64,
}

/// Locks `mutex`, whatever a panicking holder left: the maps stay consistent (each
/// change is one insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `SystemTime` of seconds and nanoseconds since the epoch (before it: the epoch).
fn time_of(secs: i64, nsecs: i64) -> SystemTime {
    let secs = u64::try_from(secs).unwrap_or(0);
    let nsecs = u32::try_from(nsecs).unwrap_or(0);
    UNIX_EPOCH + Duration::new(secs, nsecs)
}

fn attr_of(ino: u64, meta: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: meta.len(),
        blocks: meta.blocks(),
        atime: time_of(meta.atime(), meta.atime_nsec()),
        mtime: time_of(meta.mtime(), meta.mtime_nsec()),
        ctime: time_of(meta.ctime(), meta.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
        // The mode's permission bits fit 16 bits by definition.
        perm: (meta.mode() & 0o7777) as u16,
        nlink: u32::try_from(meta.nlink()).unwrap_or(u32::MAX),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: u32::try_from(meta.rdev()).unwrap_or(0),
        blksize: u32::try_from(meta.blksize()).unwrap_or(4096),
        flags: 0,
    }
}

/// Open options for FUSE open flags: the access mode, and `O_TRUNC`/`O_EXCL`/`O_APPEND`.
fn open_options(flags: i32) -> OpenOptions {
    let access = flags & libc::O_ACCMODE;
    let mut options = OpenOptions::new();
    options
        .read(access != libc::O_WRONLY)
        .write(access != libc::O_RDONLY)
        .custom_flags(flags & (libc::O_TRUNC | libc::O_EXCL | libc::O_APPEND));
    options
}

impl SlowFs {
    fn new(backing: PathBuf, knob: Arc<Knob>) -> SlowFs {
        let mut inodes = Inodes::default();
        inodes.number(PathBuf::new());
        SlowFs {
            backing,
            knob,
            inodes: Mutex::new(inodes),
            files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    /// The backing path of inode `ino`.
    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        let inodes = lock(&self.inodes);
        let relative = inodes.paths.get(&ino.0).ok_or(Errno::ENOENT)?;
        Ok(self.backing.join(relative))
    }

    /// The inode number and attributes of `name` in directory `parent`.
    fn entry(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let relative = {
            let inodes = lock(&self.inodes);
            inodes.paths.get(&parent.0).ok_or(Errno::ENOENT)?.join(name)
        };
        let meta = std::fs::symlink_metadata(self.backing.join(&relative))?;
        let ino = lock(&self.inodes).number(relative);
        Ok(attr_of(ino, &meta))
    }

    fn attr(&self, ino: INodeNo) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(self.path(ino)?)?;
        Ok(attr_of(ino.0, &meta))
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        lock(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn add_file(&self, file: File) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.files).insert(fh, Arc::new(file));
        FileHandle(fh)
    }

    /// `setattr` for what a loop image needs: size (truncate), mode, owner.
    fn set_attr(
        &self,
        ino: INodeNo,
        fh: Option<FileHandle>,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
        size: Option<u64>,
    ) -> Result<FileAttr, Errno> {
        let path = self.path(ino)?;
        if let Some(size) = size {
            match fh {
                Some(fh) => self.file(fh)?.set_len(size)?,
                None => OpenOptions::new().write(true).open(&path)?.set_len(size)?,
            }
        }
        if let Some(mode) = mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
        }
        if owner.0.is_some() || owner.1.is_some() {
            std::os::unix::fs::lchown(&path, owner.0, owner.1)?;
        }
        self.attr(ino)
    }

    /// The entries of directory `ino` after the first `offset`, as (inode, kind, name).
    fn list(&self, ino: INodeNo, offset: u64) -> Result<Vec<(u64, FileType, PathBuf)>, Errno> {
        let dir = self.path(ino)?;
        let mut entries = vec![
            (ino.0, FileType::Directory, PathBuf::from(".")),
            (ino.0, FileType::Directory, PathBuf::from("..")),
        ];
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let attr = self.entry(ino, &entry.file_name())?;
            entries.push((attr.ino.0, attr.kind, PathBuf::from(entry.file_name())));
        }
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(entries.into_iter().skip(skip).collect())
    }

    /// Reads up to `size` bytes at `offset` (fewer only at the end of the file).
    fn read_at(&self, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let file = self.file(fh)?;
        let mut data = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < data.len() {
            match file.read_at(&mut data[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        data.truncate(filled);
        Ok(data)
    }
}

/// Sends `result` as an empty reply.
fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(errno) => reply.error(errno),
    }
}

fn reply_attr(reply: ReplyAttr, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(errno) => reply.error(errno),
    }
}

impl fuser::Filesystem for SlowFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.entry(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(errno) => reply.error(errno),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, self.attr(ino));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Times are left to the backing file system: nothing on a loop image reads them.
        reply_attr(reply, self.set_attr(ino, fh, mode, (uid, gid), size));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self
            .path(ino)
            .and_then(|path| open_options(flags.0).open(path).map_err(Errno::from))
        {
            Ok(file) => reply.opened(self.add_file(file), FopenFlags::empty()),
            Err(errno) => reply.error(errno),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let created = self.path(parent).and_then(|dir| {
            let file = open_options(flags)
                .create(true)
                .mode(mode & !umask & 0o7777)
                .open(dir.join(name))?;
            Ok((self.entry(parent, name)?, file))
        });
        match created {
            Ok((attr, file)) => {
                let fh = self.add_file(file);
                reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::empty());
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_at(fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(errno) => reply.error(errno),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        pause(&self.knob);
        match self
            .file(fh)
            .and_then(|f| Ok(f.write_all_at(data, offset)?))
        {
            // A FUSE write is at most `max_write` bytes (far below 4 GiB).
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(errno) => reply.error(errno),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is buffered here; a slow disk makes a close that flushes wait all the same.
        pause(&self.knob);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        pause(&self.knob);
        let synced = self.file(fh).and_then(|file| {
            let result = if datasync {
                file.sync_data()
            } else {
                file.sync_all()
            };
            result.map_err(Errno::from)
        });
        reply_empty(reply, synced);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // The loop device turns discards and zeroed writes into these.
        pause(&self.knob);
        let allocated = self.file(fh).and_then(|file| {
            let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
            let length = libc::off_t::try_from(length).map_err(|_| Errno::EINVAL)?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&*file);
            // SAFETY: `fd` is an open file owned by `file`, alive for this call.
            match unsafe { libc::fallocate(fd, mode, offset, length) } {
                0 => Ok(()),
                _ => Err(Errno::from(std::io::Error::last_os_error())),
            }
        });
        reply_empty(reply, allocated);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.files).remove(&fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.list(ino, offset) {
            Ok(entries) => {
                for (i, (entry_ino, kind, name)) in entries.into_iter().enumerate() {
                    // The offset the kernel sends back for the entries after this one.
                    let next = offset + i as u64 + 1;
                    if reply.add(INodeNo(entry_ino), next, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let removed = self
            .path(parent)
            .and_then(|dir| Ok(std::fs::remove_file(dir.join(name))?));
        reply_empty(reply, removed);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match statvfs(&self.backing) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                u32::try_from(s.f_bsize).unwrap_or(4096),
                u32::try_from(s.f_namemax).unwrap_or(255),
                u32::try_from(s.f_frsize).unwrap_or(4096),
            ),
            Err(errno) => reply.error(errno),
        }
    }
}

/// statvfs(3) of `path`.
fn statvfs(path: &Path) -> Result<libc::statvfs, Errno> {
    let path =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: a zeroed statvfs is a valid value of this plain C struct.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a writable statvfs, both alive
    // for the call.
    match unsafe { libc::statvfs(path.as_ptr(), &mut stats) } {
        0 => Ok(stats),
        _ => Err(Errno::from(std::io::Error::last_os_error())),
    }
}

/// One slow-disk mount: a backing directory passed through at a mount point, with a delay
/// on its writes and syncs that starts at zero.
pub struct SlowMount {
    mountpoint: PathBuf,
    knob: Arc<Knob>,
    /// The daemon, until unmounted.
    session: Option<BackgroundSession>,
    /// The FUSE connection's number (the mount's device minor), to abort it by.
    connection: u64,
}

impl SlowMount {
    /// Mounts `backing` at `mountpoint` (an existing directory); says why if it cannot.
    /// Needs root (mount(2)) and `/dev/fuse`.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<SlowMount, String> {
        let knob = Arc::new(Knob::default());
        let fs = SlowFs::new(backing.to_path_buf(), Arc::clone(&knob));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("keel-slowfs".to_string()),
            // The kernel checks permissions by mode, as on any disk; the daemon does not.
            MountOption::DefaultPermissions,
            MountOption::NoAtime,
        ];
        // `allow_other`: the loop device's I/O comes from kernel workers, not this process.
        config.acl = SessionACL::All;
        let session = fuser::spawn_mount(fs, mountpoint, &config).map_err(|e| {
            format!(
                "cannot mount a FUSE file system at {}: {e}",
                mountpoint.display()
            )
        })?;
        let mut mount = SlowMount {
            mountpoint: mountpoint.to_path_buf(),
            knob,
            session: Some(session),
            connection: 0,
        };
        match std::fs::metadata(mountpoint) {
            Ok(meta) => mount.connection = u64::from(libc::minor(meta.dev())),
            Err(e) => {
                let _ = mount.unmount();
                return Err(format!("cannot stat {}: {e}", mountpoint.display()));
            }
        }
        Ok(mount)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Every write, sync, flush and allocation from now on waits `delay` first (zero: none).
    /// Operations already waiting follow the change within a few milliseconds.
    pub fn set_delay(&self, delay: Duration) {
        let delay_us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.knob.delay_us.store(delay_us, Ordering::Relaxed);
    }

    /// How many writes, syncs, flushes and allocations have waited for a delay so far.
    pub fn delayed_ops(&self) -> u64 {
        self.knob.delayed_ops.load(Ordering::Relaxed)
    }

    /// Aborts the FUSE connection: every request waiting on the daemon, and every later
    /// one, fails with an error instead of hanging. For a daemon that does not answer.
    pub fn abort(&self) -> Result<(), String> {
        abort_connection(self.connection)
    }

    /// Unmounts (the delay switched off first) and stops the daemon. Call once nothing uses
    /// the mount (the loop device detached): a mount still in use is detached lazily, and a
    /// daemon that does not stop within [`STOP_TIMEOUT`] has its connection aborted; both
    /// are reported as errors, neither waits longer.
    pub fn unmount(&mut self) -> Result<(), String> {
        self.knob.delay_us.store(0, Ordering::Relaxed);
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let busy = unmount_retrying(&self.mountpoint).err();
        let (done_tx, done_rx) = mpsc::channel();
        let joiner = std::thread::Builder::new()
            .name("slowfs-unmount".to_string())
            .spawn(move || {
                // Unmounted above: the kernel ends the connection and the daemon's loop.
                let _ = done_tx.send(session.join());
            });
        if let Err(e) = joiner {
            return Err(format!(
                "cannot start a thread to stop the FUSE daemon: {e}"
            ));
        }
        let stopped = match done_rx.recv_timeout(STOP_TIMEOUT) {
            Ok(result) => result.map_err(|e| format!("FUSE daemon: {e}")),
            Err(_) => {
                let aborted = abort_connection(self.connection).map_or_else(
                    |e| format!("; cannot abort it: {e}"),
                    |()| "; aborted".to_string(),
                );
                Err(format!(
                    "the FUSE daemon did not stop within {STOP_TIMEOUT:?}{aborted}"
                ))
            }
        };
        match busy {
            Some(why) => Err(why),
            None => stopped,
        }
    }
}

impl Drop for SlowMount {
    fn drop(&mut self) {
        if let Err(problem) = self.unmount() {
            eprintln!("keel-perf drill: {}: {problem}", self.mountpoint.display());
        }
    }
}

/// umount(2) of `path`, retried for a while if busy (a loop device just detached may hold
/// the image a moment longer); still busy then, detached lazily and reported.
fn unmount_retrying(path: &Path) -> Result<(), String> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} has a NUL byte", path.display()))?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        // SAFETY: `c_path` is a NUL-terminated string alive for the call.
        if unsafe { libc::umount2(c_path.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EBUSY) || Instant::now() >= deadline {
            // SAFETY: as above.
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
            return Err(format!(
                "cannot unmount {}: {error} (detached lazily)",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Aborts FUSE connection `connection` through fusectl (mounted for the purpose if it is
/// not, and unmounted again): every request waiting on the daemon fails with an error
/// instead of hanging.
fn abort_connection(connection: u64) -> Result<(), String> {
    let control = Path::new("/sys/fs/fuse/connections");
    let abort = control.join(connection.to_string()).join("abort");
    let mounted_here = !abort.exists()
        && std::process::Command::new("mount")
            .args(["-t", "fusectl", "fusectl"])
            .arg(control)
            .status()
            .is_ok_and(|status| status.success());
    let written =
        std::fs::write(&abort, b"1").map_err(|e| format!("cannot write {}: {e}", abort.display()));
    if mounted_here {
        let _ = std::process::Command::new("umount").arg(control).status();
    }
    written
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Why this machine cannot mount a FUSE file system, if it cannot.
    pub(crate) fn cannot_mount() -> Option<&'static str> {
        // SAFETY: a plain query of this process's effective user id.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not running as root (mount(2) needs root)");
        }
        if !Path::new("/dev/fuse").exists() {
            return Some("no /dev/fuse");
        }
        None
    }

    /// A backing directory and a slow mount of it, or `None` (said, for `test`) where this
    /// machine cannot mount one.
    fn mounted(test: &str) -> Option<(tempfile::TempDir, tempfile::TempDir, SlowMount)> {
        if let Some(why) = cannot_mount() {
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        let backing = tempfile::tempdir().unwrap();
        let mountpoint = tempfile::tempdir().unwrap();
        let mount = SlowMount::mount(backing.path(), mountpoint.path()).unwrap();
        Some((backing, mountpoint, mount))
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_file_written_and_synced_through_the_mount_reads_back_the_same_with_or_without_delay() {
        let Some((backing, mountpoint, mut mount)) = mounted("slowfs test") else {
            return;
        };
        let path = mountpoint.path().join("image");
        let mut data = pattern(300_000);
        let mut file = File::create(&path).unwrap();
        file.write_all(&data).unwrap();
        file.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Passed through: the backing file holds the bytes.
        assert_eq!(std::fs::read(backing.path().join("image")).unwrap(), data);
        assert_eq!(mount.delayed_ops(), 0);

        mount.set_delay(Duration::from_millis(20));
        let started = Instant::now();
        file.write_all_at(b"slow", 1_000).unwrap();
        file.sync_data().unwrap();
        eprintln!(
            "slowfs: a write and an fdatasync with a 20 ms delay took {:?}",
            started.elapsed()
        );
        // No writeback cache: the write reached the daemon, and so did the sync.
        assert!(mount.delayed_ops() >= 2, "{} delayed", mount.delayed_ops());
        data[1_000..1_004].copy_from_slice(b"slow");
        assert_eq!(std::fs::read(&path).unwrap(), data);
        file.set_len(4_096).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4_096);
        mount.set_delay(Duration::ZERO);
        drop(file);

        let names: Vec<_> = std::fs::read_dir(mountpoint.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["image"]);
        std::fs::remove_file(&path).unwrap();
        assert!(!backing.path().join("image").exists());
        mount.unmount().unwrap();
        // Unmounted: the mount point is the empty directory again.
        assert_eq!(std::fs::read_dir(mountpoint.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_aborted_mount_fails_its_io_instead_of_hanging_and_still_unmounts() {
        let Some((backing, mountpoint, mut mount)) = mounted("slowfs abort test") else {
            return;
        };
        let file = File::create(mountpoint.path().join("image")).unwrap();
        file.write_all_at(b"before", 0).unwrap();
        mount.abort().unwrap();
        let error = file.write_all_at(b"after", 0).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOTCONN), "{error}");
        // The open file keeps the mount busy: detached lazily, said so, not waited for.
        let unmounted = mount.unmount();
        assert!(unmounted.is_err(), "{unmounted:?}");
        drop(file);
        assert_eq!(
            std::fs::read(backing.path().join("image")).unwrap(),
            b"before"
        );
    }
}

//! A running `keel serve` (or any program that prints its start line): its standard error
//! captured line by line (and optionally appended to a file, or echoed when the environment
//! variable `KEEL_TEST_SERVER_LOG` is set), its "listening on" line parsed, signals by pid,
//! bounded waits, and a kill on drop.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What `keel serve` prints once it listens.
pub const LISTENING: &str = "keel serve: listening on";

/// Echo every captured line to this process's standard error when this variable is set.
pub const ECHO_VAR: &str = "KEEL_TEST_SERVER_LOG";

/// How to start a node.
pub struct Launch {
    command: Command,
    log_file: Option<PathBuf>,
    start_timeout: Duration,
    ready: String,
}

impl Launch {
    /// `keel serve --config CONFIG`, `keel` being the binary's path (tests:
    /// `env!("CARGO_BIN_EXE_keel")`).
    pub fn serve(keel: impl AsRef<OsStr>, config: &Path) -> Launch {
        let mut command = Command::new(keel);
        command.arg("serve").arg("--config").arg(config);
        Launch::command(command)
    }

    /// Any command that prints [`LISTENING`] as `keel serve` does.
    pub fn command(command: Command) -> Launch {
        Launch {
            command,
            log_file: None,
            start_timeout: Duration::from_secs(20),
            ready: LISTENING.to_string(),
        }
    }

    /// Sets an environment variable of the process (e.g. `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    /// The process's working directory.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Also appends every line of standard error to `path`.
    pub fn log_file(mut self, path: &Path) -> Self {
        self.log_file = Some(path.to_path_buf());
        self
    }

    /// How long to wait for the start line (20 s by default).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts the process and waits for its start line.
    pub fn start(self) -> anyhow::Result<Node> {
        self.start_with(|command| command.spawn())
    }

    /// As [`Launch::start`], spawning through `spawn` (e.g. to spawn with another CPU
    /// affinity).
    pub fn start_with(
        mut self,
        spawn: impl FnOnce(&mut Command) -> std::io::Result<Child>,
    ) -> anyhow::Result<Node> {
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let program = self.command.get_program().to_os_string();
        let mut child = spawn(&mut self.command)
            .with_context(|| format!("cannot start {}", Path::new(&program).display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let log = Arc::new(Log::default());
        let mut file = match &self.log_file {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            ),
            None => None,
        };
        {
            let log = log.clone();
            let echo = std::env::var_os(ECHO_VAR).is_some();
            std::thread::Builder::new()
                .name("keel-log".into())
                .spawn(move || {
                    for line in BufReader::new(stderr).lines() {
                        let Ok(line) = line else { break };
                        if echo {
                            eprintln!("[keel] {line}");
                        }
                        if let Some(file) = file.as_mut() {
                            let _ = writeln!(file, "{line}");
                        }
                        log.push(line);
                    }
                    log.close();
                })
                .context("cannot start the log thread")?;
        }
        let mut node = Node {
            child: Some(child),
            log,
            log_file: self.log_file,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            session: String::new(),
            start_record: 0,
            banner: String::new(),
        };
        let Some(line) = node.wait_log(&self.ready, self.start_timeout) else {
            let status = node.try_status()?;
            let log = node.log_text();
            node.kill()?;
            match status {
                Some(status) => bail!("keel serve exited ({status}) before listening:\n{log}"),
                None => bail!(
                    "keel serve did not start listening within {:?}:\n{log}",
                    self.start_timeout
                ),
            }
        };
        node.parse_start_line(&line)?;
        Ok(node)
    }
}

/// The process's standard error, line by line, as it arrives.
#[derive(Default)]
struct Log {
    lines: Mutex<(Vec<String>, bool)>,
    changed: Condvar,
}

impl Log {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.0.push(line);
        }
        self.changed.notify_all();
    }

    fn close(&self) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.1 = true;
        }
        self.changed.notify_all();
    }
}

/// A running node (or one that ran: the log stays readable after it exits).
pub struct Node {
    child: Option<Child>,
    log: Arc<Log>,
    log_file: Option<PathBuf>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its SoupBinTCP session name (empty if its start line names none).
    pub session: String,
    /// "journal at record N" from its start line (0 if it names none).
    pub start_record: u64,
    /// The start line after "keel serve: ".
    pub banner: String,
}

impl Node {
    /// Starts `keel serve --config CONFIG` with `RUST_LOG=info` and waits until it listens.
    pub fn start(keel: impl AsRef<OsStr>, config: &Path) -> anyhow::Result<Node> {
        Launch::serve(keel, config).env("RUST_LOG", "info").start()
    }

    // "keel serve: listening on ADDR (session NAME), matching loop on core C, journal at
    // record N; Ctrl-C to stop"
    fn parse_start_line(&mut self, line: &str) -> anyhow::Result<()> {
        let rest = line
            .split("listening on ")
            .nth(1)
            .with_context(|| format!("no address in {line:?}"))?;
        let addr = rest.split_whitespace().next().unwrap_or_default();
        self.addr = addr
            .parse()
            .with_context(|| format!("bad listen address {addr:?}"))?;
        self.banner = line
            .split("keel serve: ")
            .nth(1)
            .unwrap_or(line)
            .to_string();
        if let Some(session) = rest.split("(session ").nth(1) {
            self.session = session.split(')').next().unwrap_or_default().to_string();
        }
        if let Some(record) = rest.split("journal at record ").nth(1) {
            let record = record.split(';').next().unwrap_or_default();
            self.start_record = record
                .parse()
                .with_context(|| format!("bad start record {record:?}"))?;
        }
        Ok(())
    }

    /// The process id (`None` once it has been reaped: it is never signalled again).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file the log is appended to, if any.
    pub fn log_file(&self) -> Option<&Path> {
        self.log_file.as_deref()
    }

    /// Everything logged so far, one line each.
    pub fn log_text(&self) -> String {
        self.log
            .lines
            .lock()
            .map(|lines| lines.0.join("\n"))
            .unwrap_or_default()
    }

    /// Waits for a log line containing every one of `needles`; returns it (`None` after
    /// `timeout`, or once the process closed its standard error without one).
    pub fn wait_log_all(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().ok()?;
        loop {
            if let Some(line) = lines
                .0
                .iter()
                .find(|line| needles.iter().all(|needle| line.contains(needle)))
            {
                return Some(line.clone());
            }
            let now = Instant::now();
            if now >= deadline || lines.1 {
                return None;
            }
            lines = self.log.changed.wait_timeout(lines, deadline - now).ok()?.0;
        }
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_log_all(&[needle], timeout)
    }

    /// Lines containing `needle` so far.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log
            .lines
            .lock()
            .map(|lines| lines.0.iter().filter(|line| line.contains(needle)).count())
            .unwrap_or(0)
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait().context("cannot wait for keel serve")?),
            None => bail!("keel serve was already reaped"),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_status(), Ok(None))
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to the process.
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let pid = self.pid().context("keel serve is not running")?;
        send_signal(pid, signal)
    }

    /// SIGSTOP: freezes the process (see [`Node::resume`]).
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// SIGCONT.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// SIGTERM, then waits (up to `timeout`) for the exit; see [`Node::wait_exit`].
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        self.wait_exit(timeout)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("keel serve is not running")?;
        child.kill().context("SIGKILL")?;
        child.wait().context("cannot reap keel serve")
    }

    /// SIGKILL without waiting for the exit (which may take a while, e.g. during an
    /// fsync): the instant just before the signal and the process, which the caller must
    /// reap. This node never signals that pid again.
    pub fn kill_nowait(&mut self) -> anyhow::Result<(Instant, Child)> {
        let mut child = self.child.take().context("keel serve is not running")?;
        let before = Instant::now();
        child.kill().context("SIGKILL")?;
        Ok((before, child))
    }

    /// Waits for the process to exit; after `timeout` kills it and fails with its log.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.kill();
                bail!(
                    "keel serve did not exit within {timeout:?}; killed:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: i32) -> anyhow::Result<()> {
    let pid = i32::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) has no memory effects; a wrong pid is an error, not undefined.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot send signal {signal} to {pid}"));
    }
    Ok(())
}

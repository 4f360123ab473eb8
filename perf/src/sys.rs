//! Thin wrappers over the few Linux calls the load generator needs: the monotonic and
//! real-time clocks in nanoseconds, a `timerfd` for sleeping until an absolute instant with
//! nanosecond precision (epoll's own timeout is rounded up to whole milliseconds and is
//! subject to the thread's timer slack), CPU affinity, signals, and per-thread CPU time
//! from `/proc`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `CLOCK_MONOTONIC` in nanoseconds (the clock `timerfd` absolute deadlines use).
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` in nanoseconds since the Unix epoch (the clock the gateway stamps
/// OUCH timestamps with).
pub fn real_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clocks exist on every Linux.
    unsafe {
        libc::clock_gettime(clock, &mut ts);
    }
    // Both fields are non-negative for these clocks.
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// A one-shot `CLOCK_MONOTONIC` timer file descriptor, for use in an epoll set.
pub struct TimerFd {
    fd: OwnedFd,
    armed_at: u64,
}

impl TimerFd {
    /// Creates a disarmed, non-blocking timer.
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: plain system call with constant arguments.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by timerfd_create and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(TimerFd { fd, armed_at: 0 })
    }

    /// Arms the timer to expire at `deadline_ns` on the monotonic clock (a deadline in the
    /// past expires at once). Re-arming also clears any unread expiration. Does nothing if
    /// the timer is already armed for exactly this deadline.
    pub fn arm_at(&mut self, deadline_ns: u64) -> io::Result<()> {
        if deadline_ns == self.armed_at {
            return Ok(());
        }
        let deadline = deadline_ns.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `self.fd` is a live timerfd; `spec` is valid; the old value is not asked for.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed_at = deadline_ns;
        Ok(())
    }

    /// Notes that the timer fired: the next `arm_at` re-arms even for the same deadline.
    pub fn fired(&mut self) {
        self.armed_at = 0;
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Online CPU count (of the machine, whatever this thread's affinity).
pub fn cpu_count() -> usize {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(online).unwrap_or(1).max(1)
}

/// Restricts the calling thread to `cpus`. Returns false if the kernel refused.
pub fn pin_current_thread(cpus: &[usize]) -> bool {
    pin_thread(0, cpus)
}

/// Restricts thread `tid` (0: the calling thread) to `cpus`, as `taskset -p` does. Returns
/// false if the kernel refused (kernel-owned threads such as io_uring workers refuse).
pub fn pin_thread(tid: u32, cpus: &[usize]) -> bool {
    let Ok(tid) = libc::pid_t::try_from(tid) else {
        return false;
    };
    if cpus.is_empty() {
        return false;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET only writes inside it for
    // indices below CPU_SETSIZE, which the filter guarantees; the call reads `set` only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// The cores the calling thread may run on.
pub fn current_affinity() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel writes at most its size;
    // CPU_ISSET reads inside it for indices below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Runs `f` with the calling thread allowed on every online core (so that a child process
/// spawned inside inherits no restriction), then restores the thread's affinity.
pub fn with_all_cores<T>(f: impl FnOnce() -> T) -> T {
    let saved = current_affinity();
    let all: Vec<usize> = (0..cpu_count()).collect();
    let widened = saved != all && pin_current_thread(&all);
    let result = f();
    if widened {
        pin_current_thread(&saved);
    }
    result
}

/// Pins every thread of process `pid` whose name is not `except` to `cpus`. Returns
/// `name: pinned|refused` per thread.
pub fn pin_threads_except(pid: u32, except: &str, cpus: &[usize]) -> Vec<String> {
    thread_times(&pid.to_string())
        .into_iter()
        .filter(|t| t.name != except)
        .map(|t| {
            let ok = pin_thread(t.tid, cpus);
            format!("{}: {}", t.name, if ok { "pinned" } else { "refused" })
        })
        .collect()
}

/// Sends SIGTERM to a process.
pub fn terminate(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: plain system call; signalling a pid we spawned.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CPU time and context switches of one thread, from `/proc`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ThreadTimes {
    /// Thread id.
    pub tid: u32,
    /// Thread name (`comm`).
    pub name: String,
    /// User plus system CPU time, in seconds (clock-tick resolution, 10 ms).
    #[serde(deserialize_with = "crate::json::f64")]
    pub cpu_s: f64,
    /// Voluntary context switches (the thread blocked).
    pub voluntary_switches: u64,
    /// Involuntary context switches (the thread was preempted).
    pub involuntary_switches: u64,
}

/// Every thread of process `pid` (use `"self"` for this process).
pub fn thread_times(pid: &str) -> Vec<ThreadTimes> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let path = entry.path();
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat.get(open + 1..close).unwrap_or("").to_string();
        let fields: Vec<&str> = stat
            .get(close + 2..)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        // After the comm: state is field 3 (index 0 here); utime and stime are fields 14/15.
        let field = |n: usize| -> f64 {
            fields
                .get(n - 3)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cpu_s = (field(14) + field(15)) / ticks;
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let switches = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.trim().parse().ok())
                .unwrap_or(0)
        };
        out.push(ThreadTimes {
            tid,
            name,
            cpu_s,
            voluntary_switches: switches("voluntary_ctxt_switches:"),
            involuntary_switches: switches("nonvoluntary_ctxt_switches:"),
        });
    }
    out.sort_by_key(|t| t.tid);
    out
}

/// Busy CPU seconds of the whole machine since boot (all cores; `/proc/stat` minus idle
/// and iowait).
pub fn machine_busy_s() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let total: f64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (total - idle) / ticks
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    [
        values.next().unwrap_or(f64::NAN),
        values.next().unwrap_or(f64::NAN),
        values.next().unwrap_or(f64::NAN),
    ]
}

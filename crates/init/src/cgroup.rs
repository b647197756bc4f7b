//! The container's cgroup, as init sees it: descriptors the host opened on
//! its cgroup files and handed over once. Init needs no cgroup file system
//! of its own; it resets the counters before each run, sets the run's
//! limits, reads CPU time while the run goes on, and reads the peak memory
//! and the OOM kills after it.

use alloc::format;
use core::cell::Cell;

use alloc::vec::Vec;

use rustix::fd::{AsRawFd, OwnedFd, RawFd};

use crate::os as io;

use hutch_protocol::{CgroupFile, CgroupFiles, CgroupVersion, Limits};

/// The container's cgroup files.
pub struct Cgroup {
    version: CgroupVersion,
    procs: Vec<OwnedFd>,
    /// The same as raw descriptors, for a run's plan.
    procs_raw: Vec<RawFd>,
    /// v2: the directory of the group programs start in, in place of
    /// `procs`.
    dir: Option<OwnedFd>,
    cpu_user: Option<OwnedFd>,
    cpu_system: Option<OwnedFd>,
    cpu_usage: Option<OwnedFd>,
    cpu_stat: Option<OwnedFd>,
    memory_peak: Option<OwnedFd>,
    oom_events: Option<OwnedFd>,
    memory_limit: Option<OwnedFd>,
    swap_limit: Option<OwnedFd>,
    force_empty: Option<OwnedFd>,
    reclaim: Option<OwnedFd>,
    pids_limit: Option<OwnedFd>,
    memory_usage: Option<OwnedFd>,
    memory_stat: Option<OwnedFd>,
    pids_peak: Option<OwnedFd>,
    /// What `pids.peak` read after the last run, if it was read since the
    /// group was handed over: the most tasks any earlier run had at once.
    pids_seen: Cell<Option<u64>>,
    /// Whether the peak can be reset: not a v2 `memory.peak` of a kernel
    /// before 6.12, which the host opens read-only.
    peak_resets: bool,
    /// Limits last written, to skip writes that change nothing.
    written: Option<(Option<u64>, Option<u32>)>,
    /// The page cache the last reclaim could not drop.
    cache_floor: u64,
    /// All that was charged to the group after the last reclaim.
    usage_floor: u64,
}

/// Page cache a reset leaves charged rather than reclaim, above what the
/// last reclaim could not drop: 256 KiB, the order of what `memory.stat`
/// lags anyway (a batch of charges per CPU). It is counted in the next
/// run's baseline like any charge, so it can loosen that run's limit by
/// at most this much.
pub const RECLAIM_SLACK: u64 = 256 << 10;

/// Growth of all that is charged to the group (kernel memory such as the
/// dentries of names a run looked up, which `memory.stat`'s cache does not
/// count) a reset leaves rather than reclaim, above what the last reclaim
/// left: 1 MiB. Between runs that leave nothing the charge still moves by
/// up to a batch of charges per CPU (256 KiB each).
pub const USAGE_RECLAIM_SLACK: u64 = 1 << 20;

/// The most reclaim passes one reset makes: writes of `memory.force_empty`
/// (v1) or `memory.reclaim` (v2), each followed by a wait for the frees.
const MAX_RECLAIM_PASSES: usize = 4;

/// Waits until memory a reclaim dropped is uncharged: a dentry is freed,
/// and its memory uncharged, only after an RCU grace period, which
/// membarrier's global command waits out.
fn wait_for_frees() {
    let _ = rustix::thread::membarrier(rustix::thread::MembarrierCommand::Global);
}

/// Counters at the start of a run, for what cannot be reset.
pub struct Baseline {
    user_ns: u64,
    system_ns: u64,
    oom_kills: u64,
    /// Memory charged before the run (files earlier runs left in the tmpfs
    /// mounts): not the run's, so added to its limit and taken off its peak.
    memory_bytes: u64,
    /// The group's peak before the run, where it could not be reset.
    peak_bytes: Option<u64>,
    /// The pids group's peak before the run (it cannot be reset).
    pids_before: u64,
}

/// A run's usage, measured by the cgroup.
pub struct Measured {
    /// User CPU time.
    pub user_ns: u64,
    /// System CPU time.
    pub system_ns: u64,
    /// Peak memory; `None` where the cgroup cannot tell the run's own (a
    /// peak that could not be reset, and that the run did not raise; no
    /// peak file; a peak that did not move, the run having used only what
    /// its group held of an earlier charge batch). The run's processes'
    /// largest resident set (rusage) stands in then, as go-judge's
    /// measure does when its cgroup reads 0.
    pub peak_bytes: Option<u64>,
    /// Whether the kernel's OOM killer struck during the run.
    pub oom_killed: bool,
    /// The most tasks of the run alive at once; `None` without a
    /// `pids.peak`, or where an earlier run's peak hides the run's own.
    pub processes_peak: Option<u32>,
}

impl Cgroup {
    /// Takes the descriptors in the order `files` names them.
    pub fn new(files: &CgroupFiles, fds: Vec<OwnedFd>) -> Self {
        let mut cgroup = Cgroup {
            version: files.version,
            procs: Vec::new(),
            procs_raw: Vec::new(),
            dir: None,
            cpu_user: None,
            cpu_system: None,
            cpu_usage: None,
            cpu_stat: None,
            memory_peak: None,
            oom_events: None,
            memory_limit: None,
            swap_limit: None,
            force_empty: None,
            reclaim: None,
            pids_limit: None,
            memory_usage: None,
            memory_stat: None,
            pids_peak: None,
            pids_seen: Cell::new(None),
            peak_resets: true,
            written: None,
            cache_floor: 0,
            usage_floor: 0,
        };
        for (file, fd) in files.files.iter().zip(fds) {
            let slot = match file {
                CgroupFile::Procs => {
                    cgroup.procs.push(fd);
                    continue;
                }
                CgroupFile::CpuUser => &mut cgroup.cpu_user,
                CgroupFile::CpuSystem => &mut cgroup.cpu_system,
                CgroupFile::CpuUsage => &mut cgroup.cpu_usage,
                CgroupFile::CpuStat => &mut cgroup.cpu_stat,
                CgroupFile::MemoryPeak => &mut cgroup.memory_peak,
                CgroupFile::OomEvents => &mut cgroup.oom_events,
                CgroupFile::MemoryLimit => &mut cgroup.memory_limit,
                CgroupFile::SwapLimit => &mut cgroup.swap_limit,
                CgroupFile::ForceEmpty => &mut cgroup.force_empty,
                CgroupFile::PidsLimit => &mut cgroup.pids_limit,
                CgroupFile::MemoryUsage => &mut cgroup.memory_usage,
                CgroupFile::MemoryStat => &mut cgroup.memory_stat,
                CgroupFile::Reclaim => &mut cgroup.reclaim,
                CgroupFile::PidsPeak => &mut cgroup.pids_peak,
                CgroupFile::Dir => &mut cgroup.dir,
            };
            *slot = Some(fd);
        }
        cgroup.procs_raw = cgroup.procs.iter().map(AsRawFd::as_raw_fd).collect();
        cgroup
    }

    /// Takes the groups later programs join or start in, and their
    /// `pids.peak`, from a validated `Regroup` of this cgroup's version, in
    /// place of the ones held so far (`Procs`, `Dir` and `PidsPeak` are all
    /// it names).
    pub fn regroup(&mut self, files: &CgroupFiles, fds: Vec<OwnedFd>) {
        self.procs.clear();
        self.dir = None;
        self.pids_peak = None;
        self.pids_seen.set(None);
        for (file, fd) in files.files.iter().zip(fds) {
            match file {
                CgroupFile::Procs => self.procs.push(fd),
                CgroupFile::Dir => self.dir = Some(fd),
                _ => self.pids_peak = Some(fd),
            }
        }
        self.procs_raw = self.procs.iter().map(AsRawFd::as_raw_fd).collect();
    }

    /// Drops the page cache earlier runs left charged, at a reset, so that
    /// it neither takes room in the next run's limit nor, reclaimed inside
    /// that run, hides part of its peak: on v1 through `memory.force_empty`,
    /// on v2 by writing the amount to `memory.reclaim` (Linux 5.19 and
    /// later; without it the cache stays charged, and is counted in the next
    /// run's baseline). `memory.force_empty` costs half a millisecond or more
    /// even with nothing to drop, and serialises the resets of every
    /// container: it drains every CPU's page lists, then retries reclaim
    /// until the group's usage is zero, which the kernel memory charged to
    /// it never lets happen. So either runs only when `memory.stat` shows
    /// more page cache than [`RECLAIM_SLACK`] above what the last reclaim
    /// left (or, on v1, cannot be read), or the group's whole charge grew
    /// by more than [`USAGE_RECLAIM_SLACK`] since then (kernel memory a run
    /// left: reclaim drops dentries and inodes too, which would otherwise
    /// loosen the next run's limit as cache does): a run of a dynamic
    /// program typically leaves a few pages of the shared libraries it
    /// mapped, which no reclaim drops while other processes map them, and
    /// reclaiming for them at every reset cost more than the run itself.
    /// Called after the scratch mounts are emptied, whose files would count
    /// as cache.
    pub fn reclaim(&mut self) {
        let grown = self.grown();
        // What each pass writes: `0` to `memory.force_empty` (v1, `None`),
        // or an amount to `memory.reclaim` (v2).
        let (fd, mut amount) = match self.version {
            CgroupVersion::V1 => {
                let Some(fd) = &self.force_empty else {
                    return;
                };
                if grown.is_none()
                    && self
                        .cache()
                        .is_some_and(|cache| !self.worth_reclaiming(cache))
                {
                    return;
                }
                (fd, None)
            }
            CgroupVersion::V2 => {
                let Some(fd) = &self.reclaim else {
                    return;
                };
                let cache = self.cache().filter(|&cache| self.worth_reclaiming(cache));
                let Some(amount) = cache.max(grown) else {
                    return;
                };
                (fd, Some(amount))
            }
        };
        // `memory.force_empty` fails with EBUSY while tasks remain (none
        // do between runs), `memory.reclaim` with EAGAIN when not all could
        // be reclaimed: what is left is the floor below. A pass gives up
        // after a few rounds that drop nothing, while dentries leave their
        // lists a batch at a time, some only at a second look (70 MB of
        // them took three v1 passes here, the second dropping little), and
        // they are uncharged only once a grace period has passed (one v2
        // pass under an emulated CPU left 9 of 68 MB). Passes go on while
        // much more than the floor is still charged.
        for _ in 0..MAX_RECLAIM_PASSES {
            let _ = match amount {
                Some(bytes) => write_at(fd, Decimal::new(bytes).as_bytes()),
                None => write_at(fd, b"0"),
            };
            if self.grown().is_none() {
                break;
            }
            wait_for_frees();
            match (self.grown(), &mut amount) {
                (None, _) => break,
                (Some(still), Some(bytes)) => *bytes = still,
                (Some(_), None) => {}
            }
        }
        self.cache_floor = self.cache().unwrap_or(0);
        self.usage_floor = self.usage().unwrap_or(0);
    }

    /// How much more than what the last reclaim left is charged to the
    /// group now, when it is more than [`USAGE_RECLAIM_SLACK`].
    fn grown(&self) -> Option<u64> {
        self.usage()
            .map(|usage| usage.saturating_sub(self.usage_floor))
            .filter(|&grown| grown > USAGE_RECLAIM_SLACK)
    }

    /// All that is charged to the group now: `memory.usage_in_bytes` (v1)
    /// or `memory.current` (v2); `None` when it cannot be read.
    fn usage(&self) -> Option<u64> {
        self.memory_usage
            .as_ref()
            .and_then(|fd| read_number(fd).ok())
    }

    /// The page cache charged to the group, from `memory.stat`: `cache` on
    /// v1; `file` less `shmem` on v2 (files in tmpfs mounts, which no
    /// reclaim drops without swap).
    fn cache(&self) -> Option<u64> {
        let stat = self.memory_stat.as_ref()?;
        match self.version {
            CgroupVersion::V1 => read_keyed(stat, "cache").ok().flatten(),
            CgroupVersion::V2 => {
                let file = read_keyed(stat, "file").ok().flatten()?;
                let shmem = read_keyed(stat, "shmem").ok().flatten().unwrap_or(0);
                Some(file.saturating_sub(shmem))
            }
        }
    }

    fn worth_reclaiming(&self, cache: u64) -> bool {
        cache > self.cache_floor.saturating_add(RECLAIM_SLACK)
    }

    /// The `cgroup.procs` descriptors a program writes `0` to.
    pub fn procs(&self) -> &[RawFd] {
        &self.procs_raw
    }

    /// The directory of the group programs start in, or -1.
    pub fn dir(&self) -> RawFd {
        self.dir.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// The hierarchy version.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Readies the cgroup for a run: resets the counters that can be reset, sets `limits`, and returns
    /// the counters that cannot be reset.
    pub fn prepare(&mut self, limits: &Limits) -> io::Result<Baseline> {
        let mut peak_bytes = None;
        if let Some(fd) = &self.memory_peak {
            match self.version {
                CgroupVersion::V1 => write_at(fd, b"0")?,
                // v2 resets the peak seen through this descriptor; a
                // descriptor open for reading only (EBADF) cannot.
                CgroupVersion::V2 if self.peak_resets => match write_at(fd, b"reset") {
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BADF.raw_os_error()) => {
                        self.peak_resets = false;
                    }
                    done => done?,
                },
                CgroupVersion::V2 => {}
            }
            if !self.peak_resets {
                peak_bytes = Some(read_number(fd)?);
            }
        }
        if let Some(fd) = &self.cpu_usage {
            write_at(fd, b"0")?;
        }
        let memory_bytes = self
            .memory_usage
            .as_ref()
            .map(read_number)
            .transpose()?
            .unwrap_or(0);
        let limit = limits
            .memory_bytes
            .map(|bytes| bytes.saturating_add(memory_bytes));
        self.set_limits(limit, limits.processes)?;
        let (user_ns, system_ns) = self.cpu_raw()?;
        // Known without a read after every run but the first in a group.
        let pids_before = match (&self.pids_peak, self.pids_seen.get()) {
            (Some(_), Some(seen)) => seen,
            (Some(fd), None) => read_number(fd)?,
            (None, _) => 0,
        };
        Ok(Baseline {
            user_ns,
            system_ns,
            oom_kills: self.oom_kills()?,
            memory_bytes,
            peak_bytes,
            pids_before,
        })
    }

    fn set_limits(&mut self, memory: Option<u64>, pids: Option<u32>) -> io::Result<()> {
        if self.written == Some((memory, pids)) {
            return Ok(());
        }
        let unlimited: &[u8] = match self.version {
            CgroupVersion::V1 => b"-1",
            CgroupVersion::V2 => b"max",
        };
        let memory_text = memory.map(Decimal::new);
        let memory_bytes = memory_text.as_ref().map_or(unlimited, Decimal::as_bytes);
        match self.version {
            CgroupVersion::V1 => {
                // memsw must stay at least the memory limit: lift it first,
                // then set both, so no run can swap beyond its limit.
                if let Some(fd) = &self.swap_limit {
                    write_at(fd, unlimited)?;
                }
                if let Some(fd) = &self.memory_limit {
                    write_at(fd, memory_bytes)?;
                }
                if let (Some(fd), Some(bytes)) = (&self.swap_limit, &memory_text) {
                    write_at(fd, bytes.as_bytes())?;
                }
            }
            CgroupVersion::V2 => {
                if let Some(fd) = &self.swap_limit {
                    write_at(fd, b"0")?;
                }
                if let Some(fd) = &self.memory_limit {
                    write_at(fd, memory_bytes)?;
                }
            }
        }
        // `pids.max` says "max" in both versions.
        if let Some(fd) = &self.pids_limit {
            let pids_text = pids.map(|n| Decimal::new(u64::from(n)));
            write_at(fd, pids_text.as_ref().map_or(b"max", Decimal::as_bytes))?;
        }
        self.written = Some((memory, pids));
        Ok(())
    }

    /// CPU time of the run so far: (user, system) in ns.
    pub fn cpu(&self, base: &Baseline) -> io::Result<(u64, u64)> {
        let (user, system) = self.cpu_raw()?;
        Ok((
            user.saturating_sub(base.user_ns),
            system.saturating_sub(base.system_ns),
        ))
    }

    /// Total CPU time of the run so far, in ns.
    pub fn cpu_total(&self, base: &Baseline) -> io::Result<u64> {
        if let (Some(fd), CgroupVersion::V1) = (&self.cpu_usage, self.version) {
            // One read instead of two on the hot path of the limit check.
            return Ok(read_number(fd)?.saturating_sub(base.user_ns + base.system_ns));
        }
        let (user, system) = self.cpu(base)?;
        Ok(user + system)
    }

    fn cpu_raw(&self) -> io::Result<(u64, u64)> {
        match self.version {
            CgroupVersion::V1 => {
                // `cpuacct.usage` is exact (scheduler run time); the user and
                // system counters come from timer ticks. Report the exact
                // total, split in the ticks' proportion.
                let total = self
                    .cpu_usage
                    .as_ref()
                    .map(read_number)
                    .transpose()?
                    .unwrap_or(0);
                let user = self
                    .cpu_user
                    .as_ref()
                    .map(read_number)
                    .transpose()?
                    .unwrap_or(0);
                let system = self
                    .cpu_system
                    .as_ref()
                    .map(read_number)
                    .transpose()?
                    .unwrap_or(0);
                Ok(split(total, user, system))
            }
            CgroupVersion::V2 => match &self.cpu_stat {
                Some(fd) => {
                    let mut buf = [0u8; 1024];
                    let text = read_lines(fd, &mut buf)?;
                    Ok((
                        keyed(text, "user_usec").unwrap_or(0) * 1000,
                        keyed(text, "system_usec").unwrap_or(0) * 1000,
                    ))
                }
                None => Ok((0, 0)),
            },
        }
    }

    fn oom_kills(&self) -> io::Result<u64> {
        match &self.oom_events {
            Some(fd) => {
                let mut buf = [0u8; 1024];
                Ok(keyed(read_lines(fd, &mut buf)?, "oom_kill").unwrap_or(0))
            }
            None => Ok(0),
        }
    }

    /// The run's usage after it ended.
    pub fn measure(&self, base: &Baseline) -> io::Result<Measured> {
        let (user_ns, system_ns) = self.cpu(base)?;
        let peak_bytes = match &self.memory_peak {
            Some(fd) => {
                let peak = read_number(fd)?;
                // A peak that could not be reset is the group's since it was
                // made: the run's own only when the run raised it.
                match base.peak_bytes {
                    Some(before) if peak <= before => None,
                    // A run served from what the group still held of a
                    // charge batch moves no counter: no peak of its own.
                    _ => Some(peak.saturating_sub(base.memory_bytes)).filter(|&peak| peak > 0),
                }
            }
            None => None,
        };
        let processes_peak = match &self.pids_peak {
            Some(fd) => {
                let peak = read_number(fd)?;
                self.pids_seen.set(Some(peak));
                // The group's peak since it was made: the run's own when the
                // run raised it, or when no earlier run had more than the one
                // process every run has.
                (peak > base.pids_before || base.pids_before <= 1)
                    .then(|| u32::try_from(peak).unwrap_or(u32::MAX))
            }
            None => None,
        };
        Ok(Measured {
            user_ns,
            system_ns,
            peak_bytes,
            oom_killed: self.oom_kills()? > base.oom_kills,
            processes_peak,
        })
    }
}

/// Splits `total` in the proportion `user : system` (all user when both
/// are zero).
fn split(total: u64, user: u64, system: u64) -> (u64, u64) {
    let ticks = u128::from(user) + u128::from(system);
    if ticks == 0 {
        return (total, 0);
    }
    let user_part = (u128::from(total) * u128::from(user) / ticks) as u64;
    (user_part, total - user_part)
}

/// Writes `data` to a control file. Some kernels (Linux 6.1, for one) open
/// cgroup files without positioned writes, so `pwrite` fails with ESPIPE;
/// a plain `write` then does the same, as control files ignore the offset.
fn write_at(fd: &OwnedFd, data: &[u8]) -> io::Result<()> {
    loop {
        match rustix::io::pwrite(fd, data, 0) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::SPIPE) => break,
            Err(e) => return Err(e.into()),
        }
    }
    loop {
        match rustix::io::write(fd, data) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads the file from its start into `buf`; returns the length read.
fn read_start(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::pread(fd, &mut *buf, 0) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The whole lines at the start of the file, read into `buf`, as text.
fn read_lines<'a>(fd: &OwnedFd, buf: &'a mut [u8]) -> io::Result<&'a str> {
    let n = read_start(fd, buf)?;
    // A line cut at the end of the buffer has no newline: left out, unless
    // it is all there is (a number without one).
    let whole = match buf[..n].iter().rposition(|&b| b == b'\n') {
        Some(last) => last + 1,
        None => n,
    };
    core::str::from_utf8(&buf[..whole])
        .map_err(|_| io::Error::Data(format!("not text: {:?}", &buf[..whole])))
}

/// A number alone in a file (`memory.usage_in_bytes`, `cpuacct.usage`).
fn read_number(fd: &OwnedFd) -> io::Result<u64> {
    let mut buf = [0u8; 64];
    let text = read_lines(fd, &mut buf)?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::Data(format!("not a number: {text:?}")))
}

/// The value of `key` in a `key value` per line file of up to 4 KiB
/// (`memory.stat`).
fn read_keyed(fd: &OwnedFd, key: &str) -> io::Result<Option<u64>> {
    let mut buf = [0u8; 4096];
    Ok(keyed(read_lines(fd, &mut buf)?, key))
}

/// A number in decimal, formatted without allocating.
struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    fn new(mut value: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Self { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

/// The value of `key` in a `key value` per line file (`cpu.stat`,
/// `memory.events`, `memory.oom_control`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::keyed;

    #[test]
    fn totals_split_in_the_ticks_proportion() {
        assert_eq!(super::split(1000, 0, 0), (1000, 0));
        assert_eq!(super::split(1000, 3, 1), (750, 250));
        assert_eq!(super::split(999, 1, 2), (333, 666));
        let (user, system) = super::split(u64::MAX, u64::MAX, u64::MAX);
        assert_eq!(user + system, u64::MAX);
    }

    #[test]
    fn a_key_of_memory_stat_is_read_but_not_from_a_line_the_buffer_cut() {
        let fd = rustix::fs::memfd_create("stat", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let mut text = String::from("cache 8192\nrss 0\n");
        while text.len() < 4090 {
            text.push_str("pad 1\n");
        }
        // Crosses the 4 KiB the reader takes: it reads "tail 1", no newline.
        text.push_str("tail 123456\n");
        rustix::io::write(&fd, text.as_bytes()).unwrap();
        assert_eq!(super::read_keyed(&fd, "cache").unwrap(), Some(8192));
        assert_eq!(super::read_keyed(&fd, "rss").unwrap(), Some(0));
        assert_eq!(super::read_keyed(&fd, "tail").unwrap(), None);
        assert_eq!(super::read_keyed(&fd, "shmem").unwrap(), None);
    }

    #[test]
    fn keyed_values_are_found_by_exact_name() {
        let stat = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(keyed(stat, "user_usec"), Some(1000));
        assert_eq!(keyed(stat, "system_usec"), Some(500));
        assert_eq!(keyed(stat, "usec"), None);
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(3));
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed(events, "oom_kill"), Some(2));
        assert_eq!(keyed(events, "oom"), Some(2));
    }
}

#[cfg(test)]
mod fake_files {
    //! Init's side of both versions against plain files standing in for
    //! cgroup control files.

    use super::*;
    use std::path::{Path, PathBuf};

    fn tree(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hutch-init-cg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, content) in files {
            std::fs::write(dir.join(file), content).unwrap();
        }
        dir
    }

    fn open(dir: &Path, file: &str) -> OwnedFd {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(file))
            .unwrap()
            .into()
    }

    /// A cgroup of `version` over the plain files of `dir`, each named with
    /// what it stands for.
    fn cgroup_of(dir: &Path, version: CgroupVersion, files: &[(&str, CgroupFile)]) -> Cgroup {
        let kinds = CgroupFiles {
            version,
            files: files.iter().map(|(_, kind)| *kind).collect(),
        };
        let fds = files.iter().map(|(name, _)| open(dir, name)).collect();
        Cgroup::new(&kinds, fds)
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    #[test]
    fn v2_prepare_sets_limits_and_measure_reads_the_files() {
        let dir = tree(
            "v2",
            &[
                ("cgroup.procs", ""),
                (
                    "cpu.stat",
                    "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n",
                ),
                ("memory.peak", "0\n"),
                ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 1\n"),
                ("memory.max", "max\n"),
                ("memory.swap.max", "max\n"),
                ("pids.max", "max\n"),
            ],
        );
        let order = [
            ("cgroup.procs", CgroupFile::Procs),
            ("cpu.stat", CgroupFile::CpuStat),
            ("memory.peak", CgroupFile::MemoryPeak),
            ("memory.events", CgroupFile::OomEvents),
            ("memory.max", CgroupFile::MemoryLimit),
            ("memory.swap.max", CgroupFile::SwapLimit),
            ("pids.max", CgroupFile::PidsLimit),
        ];
        let files = CgroupFiles {
            version: CgroupVersion::V2,
            files: order.iter().map(|(_, kind)| *kind).collect(),
        };
        let fds = order.iter().map(|(name, _)| open(&dir, name)).collect();
        let mut cgroup = Cgroup::new(&files, fds);
        assert_eq!(cgroup.procs().len(), 1);
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            processes: Some(32),
            ..Limits::default()
        };
        let base = cgroup.prepare(&limits).unwrap();
        assert!(read(&dir, "memory.max").starts_with("67108864"));
        assert!(read(&dir, "memory.swap.max").starts_with('0'));
        assert!(read(&dir, "pids.max").starts_with("32"));
        assert!(
            read(&dir, "memory.peak").starts_with("reset"),
            "the peak is reset"
        );
        // The run: CPU and an OOM kill happen, the peak is what the kernel saw.
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 9000\nuser_usec 6500\nsystem_usec 2500\n",
        )
        .unwrap();
        std::fs::write(dir.join("memory.events"), "low 0\noom 1\noom_kill 2\n").unwrap();
        std::fs::write(dir.join("memory.peak"), "5242880\n").unwrap();
        assert_eq!(cgroup.cpu_total(&base).unwrap(), 6_000_000);
        let measured = cgroup.measure(&base).unwrap();
        assert_eq!(
            (measured.user_ns, measured.system_ns),
            (4_500_000, 1_500_000)
        );
        assert_eq!(measured.peak_bytes, Some(5 << 20));
        assert!(measured.oom_killed);
        // Unlimited next time: "max".
        cgroup.prepare(&Limits::default()).unwrap();
        assert!(read(&dir, "memory.max").starts_with("max"));
        assert!(read(&dir, "pids.max").starts_with("max"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn v2_peak_that_cannot_be_reset_counts_only_when_the_run_raises_it() {
        // Before Linux 6.12 memory.peak is read-only: the host opens it so.
        let dir = tree(
            "v2-peak",
            &[("memory.peak", "8388608\n"), ("memory.current", "4096\n")],
        );
        let files = CgroupFiles {
            version: CgroupVersion::V2,
            files: [CgroupFile::MemoryPeak, CgroupFile::MemoryUsage].into(),
        };
        let read_only = std::fs::File::open(dir.join("memory.peak")).unwrap().into();
        let mut cgroup = Cgroup::new(&files, [read_only, open(&dir, "memory.current")].into());
        let base = cgroup.prepare(&Limits::default()).unwrap();
        assert_eq!(
            cgroup.measure(&base).unwrap().peak_bytes,
            None,
            "a run below the group's old peak has no peak of its own here"
        );
        std::fs::write(dir.join("memory.peak"), "16777216\n").unwrap();
        assert_eq!(
            cgroup.measure(&base).unwrap().peak_bytes,
            Some((16 << 20) - 4096),
            "a run that raised the peak reached it"
        );
        let base = cgroup.prepare(&Limits::default()).unwrap();
        assert_eq!(cgroup.measure(&base).unwrap().peak_bytes, None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn v1_prepare_orders_memsw_and_resets_counters() {
        let dir = tree(
            "v1",
            &[
                ("procs", ""),
                ("cpuacct.usage_user", "30\n"),
                ("cpuacct.usage_sys", "10\n"),
                ("cpuacct.usage", "5000\n"),
                ("memory.max_usage_in_bytes", "999999\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
                ),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("memory.force_empty", ""),
                ("memory.stat", "cache 0\nrss 0\n"),
                ("memory.usage_in_bytes", "4096\n"),
                ("pids.max", "max\n"),
            ],
        );
        let order = [
            ("procs", CgroupFile::Procs),
            ("cpuacct.usage_user", CgroupFile::CpuUser),
            ("cpuacct.usage_sys", CgroupFile::CpuSystem),
            ("cpuacct.usage", CgroupFile::CpuUsage),
            ("memory.max_usage_in_bytes", CgroupFile::MemoryPeak),
            ("memory.oom_control", CgroupFile::OomEvents),
            ("memory.limit_in_bytes", CgroupFile::MemoryLimit),
            ("memory.memsw.limit_in_bytes", CgroupFile::SwapLimit),
            ("memory.force_empty", CgroupFile::ForceEmpty),
            ("memory.stat", CgroupFile::MemoryStat),
            ("memory.usage_in_bytes", CgroupFile::MemoryUsage),
            ("pids.max", CgroupFile::PidsLimit),
        ];
        let files = CgroupFiles {
            version: CgroupVersion::V1,
            files: order.iter().map(|(_, kind)| *kind).collect(),
        };
        let fds = order.iter().map(|(name, _)| open(&dir, name)).collect();
        let mut cgroup = Cgroup::new(&files, fds);
        let limits = Limits {
            memory_bytes: Some(1 << 30),
            ..Limits::default()
        };
        let base = cgroup.prepare(&limits).unwrap();
        // Plain files keep what was written last, at offset 0.
        assert!(read(&dir, "cpuacct.usage").starts_with('0'), "CPU reset");
        assert!(
            read(&dir, "memory.max_usage_in_bytes").starts_with('0'),
            "peak reset"
        );
        // The limit is raised by what was charged before the run.
        assert!(read(&dir, "memory.limit_in_bytes").starts_with("1073745920"));
        assert!(read(&dir, "memory.memsw.limit_in_bytes").starts_with("1073745920"));
        assert!(read(&dir, "pids.max").starts_with("max"));
        std::fs::write(dir.join("cpuacct.usage"), "2000000\n").unwrap();
        std::fs::write(dir.join("cpuacct.usage_user"), "3\n").unwrap();
        std::fs::write(dir.join("cpuacct.usage_sys"), "1\n").unwrap();
        std::fs::write(dir.join("memory.max_usage_in_bytes"), "8192\n").unwrap();
        let measured = cgroup.measure(&base).unwrap();
        assert_eq!(
            measured.user_ns + measured.system_ns,
            2_000_000 - base_total(&base)
        );
        assert!(!measured.oom_killed);
        assert_eq!(
            measured.peak_bytes,
            Some(4096),
            "the peak less the usage before"
        );
        // Every later run: counters, limits (changed, so written) and
        // usage without a single allocation.
        let limits = Limits {
            memory_bytes: Some(256 << 20),
            processes: Some(64),
            ..Limits::default()
        };
        let (_, allocations) = crate::sys::counting::allocations(|| {
            let base = cgroup.prepare(&limits).unwrap();
            cgroup.cpu_total(&base).unwrap();
            cgroup.measure(&base).unwrap();
            cgroup.reclaim();
        });
        assert_eq!(allocations, 0);
        assert!(read(&dir, "memory.limit_in_bytes").starts_with("268439552"));
        assert!(read(&dir, "pids.max").starts_with("64"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn base_total(base: &Baseline) -> u64 {
        base.user_ns + base.system_ns
    }

    const KIB: u64 = 1 << 10;

    /// A v2 `memory.stat` whose page cache is `file` less `shmem` bytes.
    fn v2_stat(file: u64, shmem: u64) -> String {
        format!("anon 4096\nfile {file}\nkernel 8192\nshmem {shmem}\nfile_mapped 0\n")
    }

    /// What a reset wrote to the plain file standing in for `file`, which
    /// is then emptied for the next reset.
    fn take(dir: &Path, file: &str) -> String {
        let written = read(dir, file);
        std::fs::write(dir.join(file), "").unwrap();
        written
    }

    #[test]
    fn v2_reclaim_writes_the_page_cache_only_when_it_is_more_than_the_slack_above_the_floor() {
        assert_eq!(RECLAIM_SLACK, 256 * KIB);
        let dir = tree(
            "v2-reclaim",
            &[("memory.stat", &v2_stat(0, 0)), ("memory.reclaim", "")],
        );
        let mut cgroup = cgroup_of(
            &dir,
            CgroupVersion::V2,
            &[
                ("memory.stat", CgroupFile::MemoryStat),
                ("memory.reclaim", CgroupFile::Reclaim),
            ],
        );
        let stat = |file: u64, shmem: u64| {
            std::fs::write(dir.join("memory.stat"), v2_stat(file, shmem)).unwrap();
        };

        // The few pages a dynamic program's run leaves: within the slack.
        stat(200 * KIB, 0);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.reclaim"), "", "200 KiB are left");
        stat(256 * KIB, 0);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.reclaim"), "", "the slack itself is left");

        // Files in tmpfs are shmem, which no reclaim drops: not counted.
        stat(64 << 20, 64 << 20);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.reclaim"), "", "tmpfs files are no cache");
        stat(1 << 20, 2 << 20);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.reclaim"), "", "shmem above file is 0");

        // More than the slack: the cache's size, in bytes, file less shmem.
        stat((1 << 20) + 256 * KIB + 4 * KIB, 1 << 20);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.reclaim"), "266240", "260 KiB");

        // What the reclaim could not drop (a plain file keeps the amount:
        // 260 KiB) is the floor: the slack counts from there.
        stat(260 * KIB + 256 * KIB, 0);
        cgroup.reclaim();
        assert_eq!(
            take(&dir, "memory.reclaim"),
            "",
            "within the slack of the floor"
        );
        stat(260 * KIB + 256 * KIB + 4 * KIB, 0);
        let (_, allocations) = crate::sys::counting::allocations(|| cgroup.reclaim());
        assert_eq!(take(&dir, "memory.reclaim"), "532480", "above it: 520 KiB");
        assert_eq!(allocations, 0, "a reclaim allocates nothing");

        // A reset that does not reclaim leaves the floor where it was.
        stat(100 * KIB, 0);
        cgroup.reclaim();
        stat(520 * KIB + 256 * KIB, 0);
        cgroup.reclaim();
        assert_eq!(
            take(&dir, "memory.reclaim"),
            "",
            "the floor is 520 KiB still"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn v2_reclaim_needs_both_files() {
        let dir = tree(
            "v2-reclaim-alone",
            &[
                ("memory.stat", &v2_stat(64 << 20, 0)),
                ("memory.reclaim", ""),
            ],
        );
        // Reclaim without MemoryStat: no amount to write, so nothing.
        let files = CgroupFiles {
            version: CgroupVersion::V2,
            files: [CgroupFile::Reclaim].into(),
        };
        let mut cgroup = Cgroup::new(&files, [open(&dir, "memory.reclaim")].into());
        cgroup.reclaim();
        cgroup.reclaim();
        assert_eq!(read(&dir, "memory.reclaim"), "");
        // A v2 group without either (a kernel before 5.19, or an older
        // host): a reset does nothing, and fails at nothing.
        let files = CgroupFiles {
            version: CgroupVersion::V2,
            files: [CgroupFile::MemoryStat].into(),
        };
        let mut cgroup = Cgroup::new(&files, [open(&dir, "memory.stat")].into());
        cgroup.reclaim();
        assert_eq!(read(&dir, "memory.reclaim"), "");
        // A v2 memory.stat without a file line tells no amount either.
        std::fs::write(dir.join("memory.stat"), "anon 4096\nshmem 0\n").unwrap();
        let mut cgroup = cgroup_of(
            &dir,
            CgroupVersion::V2,
            &[
                ("memory.stat", CgroupFile::MemoryStat),
                ("memory.reclaim", CgroupFile::Reclaim),
            ],
        );
        cgroup.reclaim();
        assert_eq!(read(&dir, "memory.reclaim"), "");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn v1_force_empty_runs_only_when_the_cache_is_more_than_the_slack_above_the_floor() {
        let dir = tree(
            "v1-reclaim",
            &[
                ("memory.stat", "cache 0\nrss 0\n"),
                ("memory.force_empty", ""),
            ],
        );
        let mut cgroup = cgroup_of(
            &dir,
            CgroupVersion::V1,
            &[
                ("memory.force_empty", CgroupFile::ForceEmpty),
                ("memory.stat", CgroupFile::MemoryStat),
            ],
        );
        let cache = |bytes: u64| {
            std::fs::write(dir.join("memory.stat"), format!("cache {bytes}\nrss 0\n")).unwrap();
        };
        cache(16 * KIB);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.force_empty"), "", "16 KiB are left");
        cache(256 * KIB);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.force_empty"), "", "so is the slack");
        cache(64 << 20);
        cgroup.reclaim();
        assert_eq!(
            take(&dir, "memory.force_empty"),
            "0",
            "64 MiB are reclaimed"
        );
        // The plain file still says 64 MiB: as if the kernel could drop
        // none of it. That is the floor now.
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.force_empty"), "", "nothing new since");
        cache((64 << 20) + 256 * KIB + 1);
        cgroup.reclaim();
        assert_eq!(
            take(&dir, "memory.force_empty"),
            "0",
            "past the slack again"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn growth_of_the_whole_charge_past_its_slack_is_reclaimed_without_cache() {
        assert_eq!(USAGE_RECLAIM_SLACK, 1024 * KIB);
        // v2: the amount written is what grew since the last reclaim.
        let dir = tree(
            "v2-reclaim-usage",
            &[
                ("memory.stat", &v2_stat(0, 0)),
                ("memory.reclaim", ""),
                ("memory.current", "0"),
            ],
        );
        let mut cgroup = cgroup_of(
            &dir,
            CgroupVersion::V2,
            &[
                ("memory.stat", CgroupFile::MemoryStat),
                ("memory.reclaim", CgroupFile::Reclaim),
                ("memory.current", CgroupFile::MemoryUsage),
            ],
        );
        let usage =
            |bytes: u64| std::fs::write(dir.join("memory.current"), bytes.to_string()).unwrap();
        usage(1024 * KIB);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.reclaim"), "", "the slack is left");
        usage(3 << 20);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.reclaim"), "3145728", "3 MiB grew");
        // The plain file still says 3 MiB: none of it could be dropped, and
        // that is the floor now.
        usage((4 << 20) + 4 * KIB);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.reclaim"), "1052672", "1028 KiB since");
        std::fs::remove_dir_all(dir).unwrap();

        // v1: force_empty, although memory.stat shows no cache.
        let dir = tree(
            "v1-reclaim-usage",
            &[
                ("memory.stat", "cache 0\nrss 0\n"),
                ("memory.force_empty", ""),
                ("memory.usage_in_bytes", "0"),
            ],
        );
        let mut cgroup = cgroup_of(
            &dir,
            CgroupVersion::V1,
            &[
                ("memory.force_empty", CgroupFile::ForceEmpty),
                ("memory.stat", CgroupFile::MemoryStat),
                ("memory.usage_in_bytes", CgroupFile::MemoryUsage),
            ],
        );
        let usage = |bytes: u64| {
            std::fs::write(dir.join("memory.usage_in_bytes"), bytes.to_string()).unwrap();
        };
        usage(900 * KIB);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.force_empty"), "", "within the slack");
        usage(60 << 20);
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.force_empty"), "0", "60 MiB grew");
        cgroup.reclaim();
        assert_eq!(take(&dir, "memory.force_empty"), "", "nothing new since");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn v1_force_empty_runs_at_every_reset_when_memory_stat_tells_nothing() {
        // An older host sent no memory.stat (an init without
        // INIT_MEMORY_STAT's host), or one without a cache line.
        let dir = tree(
            "v1-reclaim-blind",
            &[("memory.stat", "rss 0\n"), ("memory.force_empty", "")],
        );
        let files = CgroupFiles {
            version: CgroupVersion::V1,
            files: [CgroupFile::ForceEmpty].into(),
        };
        let mut cgroup = Cgroup::new(&files, [open(&dir, "memory.force_empty")].into());
        for _ in 0..2 {
            cgroup.reclaim();
            assert_eq!(take(&dir, "memory.force_empty"), "0");
        }
        let mut cgroup = cgroup_of(
            &dir,
            CgroupVersion::V1,
            &[
                ("memory.force_empty", CgroupFile::ForceEmpty),
                ("memory.stat", CgroupFile::MemoryStat),
            ],
        );
        for _ in 0..2 {
            cgroup.reclaim();
            assert_eq!(take(&dir, "memory.force_empty"), "0");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_run_peak_is_told_only_where_no_earlier_run_hides_it() {
        let dir = tree(
            "pids",
            &[
                ("cgroup.procs", ""),
                ("pids.peak", "0\n"),
                ("next.procs", ""),
            ],
        );
        let files = CgroupFiles {
            version: CgroupVersion::V1,
            files: vec![CgroupFile::Procs, CgroupFile::PidsPeak],
        };
        let fds = vec![open(&dir, "cgroup.procs"), open(&dir, "pids.peak")];
        let mut cgroup = Cgroup::new(&files, fds);
        let limits = Limits::default();
        let run = |cgroup: &mut Cgroup, peak_after: &str| {
            let base = cgroup.prepare(&limits).unwrap();
            std::fs::write(dir.join("pids.peak"), peak_after).unwrap();
            cgroup.measure(&base).unwrap().processes_peak
        };
        assert_eq!(run(&mut cgroup, "1\n"), Some(1), "a fresh group");
        assert_eq!(run(&mut cgroup, "1\n"), Some(1), "after one process");
        assert_eq!(run(&mut cgroup, "4\n"), Some(4), "a run that raised it");
        assert_eq!(run(&mut cgroup, "4\n"), None, "hidden by the run before");
        assert_eq!(run(&mut cgroup, "6\n"), Some(6), "raised again");
        // A fresh group: the peak is told again, and later programs join it.
        std::fs::write(dir.join("pids.peak"), "0\n").unwrap();
        let fds = vec![open(&dir, "next.procs"), open(&dir, "pids.peak")];
        cgroup.regroup(&files, fds);
        assert_eq!(cgroup.procs().len(), 1);
        assert_eq!(run(&mut cgroup, "2\n"), Some(2));
        // Without pids.peak nothing is told.
        cgroup.regroup(
            &CgroupFiles {
                version: CgroupVersion::V1,
                files: vec![CgroupFile::Procs],
            },
            vec![open(&dir, "next.procs")],
        );
        assert_eq!(run(&mut cgroup, "9\n"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

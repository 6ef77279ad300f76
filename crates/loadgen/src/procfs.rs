//! CPU time and memory of the server process and of the machine, read from Linux's `/proc`.
//! On other systems every reading is `None`.

/// Clock ticks per second of `/proc` CPU times. Linux fixes `USER_HZ` at 100 on the usual
/// architectures.
// NOTE: assumed rather than read with sysconf(_SC_CLK_TCK), to keep libc out of the crate.
const TICKS_PER_SECOND: f64 = 100.0;

/// Memory of a process, from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMemory {
    /// `VmHWM`: the peak resident set size.
    pub peak_rss_kib: u64,
    /// `VmRSS`: the resident set size when read.
    pub rss_kib: u64,
}

impl ProcessMemory {
    /// Parses the `VmHWM` and `VmRSS` lines of a `/proc/PID/status` file.
    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        };
        Some(Self {
            peak_rss_kib: field("VmHWM:")?,
            rss_kib: field("VmRSS:")?,
        })
    }

    pub fn read(pid: u32) -> Result<Self, String> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path)
            .map_err(|e| format!("failed to read {path}: {e}; is process {pid} running?"))?;
        Self::parse(&status).ok_or_else(|| format!("no VmHWM or VmRSS line in {path}"))
    }
}

/// Parses the user plus system CPU time of a process, in seconds, from `/proc/PID/stat`.
pub fn parse_process_cpu(stat: &str) -> Option<f64> {
    // The command name in brackets may contain spaces, so fields are counted after the last
    // closing bracket: state is field 3, utime field 14 and stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// Reads the CPU seconds that a process has used so far, all threads included.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    parse_process_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Busy and total CPU time of the whole machine, in ticks, summed over its cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineCpu {
    pub busy: u64,
    pub total: u64,
}

impl MachineCpu {
    /// Parses the `cpu` line of `/proc/stat`; idle and iowait count as not busy.
    pub fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()?;
        // Fields: user nice system idle iowait irq softirq steal guest guest_nice. The guest
        // times are already part of user and nice.
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
        Some(Self {
            busy: total - idle,
            total,
        })
    }

    pub fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Returns the busy fraction of the machine's CPU time between two readings.
    pub fn busy_fraction_since(&self, earlier: &MachineCpu) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

/// CPU readings taken when a run starts, to report what the server and the machine used
/// during it.
pub struct CpuWindow {
    server_pid: Option<u32>,
    server_before: Option<f64>,
    machine_before: Option<MachineCpu>,
}

impl CpuWindow {
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            server_before: server_pid.and_then(process_cpu_seconds),
            machine_before: MachineCpu::read(),
        }
    }

    /// Returns the server's CPU seconds and the machine's busy fraction since the start.
    pub fn finish(&self) -> (Option<f64>, Option<f64>) {
        let server = self
            .server_pid
            .and_then(process_cpu_seconds)
            .zip(self.server_before)
            .map(|(after, before)| after - before);
        let machine = MachineCpu::read()
            .zip(self.machine_before)
            .and_then(|(after, before)| after.busy_fraction_since(&before));
        (server, machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_memory_reads_status() {
        let status =
            "Name:\tregistrar\nVmPeak:\t  900000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(
            ProcessMemory::parse(status),
            Some(ProcessMemory {
                peak_rss_kib: 51234,
                rss_kib: 40000
            })
        );
        assert_eq!(ProcessMemory::parse("Name:\tx\n"), None);
    }

    #[test]
    fn process_cpu_skips_command_name() {
        let stat =
            "4242 (tokio (worker) x) S 1 4242 4242 0 -1 4194304 500 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_process_cpu(stat), Some(3.25));
        assert_eq!(parse_process_cpu("4242 (x) S 1"), None);
    }

    #[test]
    fn machine_cpu_counts_idle_and_iowait() {
        let before = MachineCpu::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        let after = MachineCpu::parse("cpu  250 0 100 850 100 0 0 0 0 0\n").unwrap();
        assert_eq!(before.busy, 150);
        assert_eq!(before.total, 1000);
        assert_eq!(after.busy_fraction_since(&before), Some(200.0 / 300.0));
    }
}

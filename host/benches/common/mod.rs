//! What the benches read of a process (from `/proc`, from callgrind), one
//! copy for all.

use std::path::Path;
use std::process::Command;

/// The process's user + system CPU time and its system part (clock ticks
/// of 10 ms), and minor page faults, from /proc.
pub fn cpu_seconds_and_faults(pid: u32) -> (f64, f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which is in parentheses): minflt [7],
    // utime [11], stime [12].
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let system = fields[12].parse::<f64>().unwrap_or(0.0);
    let ticks: f64 = fields[11].parse::<f64>().unwrap_or(0.0) + system;
    (
        ticks / 100.0,
        system / 100.0,
        fields[7].parse().unwrap_or(0),
    )
}

/// The 1-, 5- and 15-minute load averages: other engineers build on the
/// same two cores, and every figure is read beside them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `callgrind_control COMMAND PID` (it reaches a process blocked in a
/// system call too, through vgdb).
pub fn callgrind_control(command: &str, pid: u32) {
    let out = Command::new("callgrind_control")
        .arg(command)
        .arg(pid.to_string())
        .output()
        .expect("run callgrind_control");
    assert!(
        out.status.success(),
        "callgrind_control {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Dumps the counters since the last zeroing: the instructions executed by
/// every thread of the process.
pub fn callgrind_dump(dir: &Path, pid: u32) -> u64 {
    let before: Vec<_> = std::fs::read_dir(dir)
        .expect("callgrind dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    callgrind_control("--dump", pid);
    let dump = std::fs::read_dir(dir)
        .expect("callgrind dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| !before.contains(p))
        .expect("a new dump");
    let text = std::fs::read_to_string(&dump).expect("read the dump");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no instruction total in {}", dump.display()))
}

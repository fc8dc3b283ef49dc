//! Free TCP ports that no other caller in this process, and as far as possible no other test process, gets too.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The range ports are picked from (both ends included), minus the kernel's
/// ephemeral range when enough remains, so outgoing connections do not
/// collide with them.
const LOW: u16 = 20000;
const HIGH: u16 = 60000;
/// A reservation by another process is honoured for this long.
const RESERVATION_TTL: Duration = Duration::from_secs(30 * 60);

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port that is free on 127.0.0.1 (and ::1 when the machine has it)
/// right now, never handed out before by this process.
///
/// Ports are drawn at random from 20000–60000 (avoiding the kernel's
/// ephemeral range when possible) and reserved across processes with a
/// marker file in `/tmp/citus-testkit-ports/` that other test processes
/// honour for 30 minutes.
///
/// # Panics
/// When no free port can be found.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports, as from [`free_port`].
///
/// # Panics
/// When not enough free ports can be found.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = guard.get_or_insert_with(HashSet::new);
    let (low, high) = pick_range(ephemeral_range());
    let span = u64::from(high - low) + 1;
    let reservations = reservation_dir();
    let mut ports = Vec::with_capacity(n);
    let mut attempts = 0u32;
    while ports.len() < n {
        attempts += 1;
        let port = if attempts <= 20_000 {
            low + (random_u64() % span) as u16
        } else if attempts <= 20_100 {
            // Fall back on the kernel's choice.
            kernel_port().unwrap_or(0)
        } else {
            panic!("free_ports: could not find {n} free ports");
        };
        if port == 0 || handed_out.contains(&port) || !bindable(port) {
            continue;
        }
        if let Some(dir) = &reservations {
            if !reserve(dir, port) {
                continue;
            }
        }
        handed_out.insert(port);
        ports.push(port);
    }
    ports
}

/// Whether `port` can be bound on 127.0.0.1 and, when it exists, ::1.
fn bindable(port: u16) -> bool {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if TcpListener::bind(v4).is_err() {
        return false;
    }
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    match TcpListener::bind(v6) {
        Ok(_) => true,
        // No IPv6 loopback here: nothing can hold the port there either.
        Err(e) => e.kind() != std::io::ErrorKind::AddrInUse,
    }
}

fn kernel_port() -> Option<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    Some(listener.local_addr().ok()?.port())
}

/// The kernel's ephemeral port range.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

/// The part of LOW..=HIGH to pick from: the widest side of it outside the
/// ephemeral range when that side has at least 5000 ports, else all of it.
pub(crate) fn pick_range(ephemeral: Option<(u16, u16)>) -> (u16, u16) {
    if let Some((lo, hi)) = ephemeral {
        let below = (LOW, lo.saturating_sub(1).min(HIGH));
        let above = (hi.saturating_add(1).max(LOW), HIGH);
        let width = |(a, b): (u16, u16)| if b >= a { u32::from(b - a) + 1 } else { 0 };
        let best = if width(below) >= width(above) { below } else { above };
        if width(best) >= 5000 {
            return best;
        }
    }
    (LOW, HIGH)
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(t) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(t.as_nanos());
    }
    hasher.finish()
}

/// The shared, sticky, world-writable directory of port reservations.
fn reservation_dir() -> Option<PathBuf> {
    let dir = PathBuf::from("/tmp/citus-testkit-ports");
    if !dir.is_dir() {
        fs::create_dir_all(&dir).ok()?;
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777));
    }
    Some(dir)
}

/// Claims `port` for this process unless another process claimed it
/// recently. Stale claims are taken over.
pub(crate) fn reserve(dir: &Path, port: u16) -> bool {
    let marker = dir.join(port.to_string());
    let mine = std::process::id().to_string();
    match OpenOptions::new().write(true).create_new(true).open(&marker) {
        Ok(_) => {
            let _ = fs::write(&marker, &mine);
            let _ = fs::set_permissions(&marker, fs::Permissions::from_mode(0o666));
            true
        }
        Err(_) => {
            let age = fs::metadata(&marker).and_then(|m| m.modified()).ok().and_then(|t| SystemTime::now().duration_since(t).ok());
            match age {
                Some(age) if age > RESERVATION_TTL => fs::write(&marker, &mine).is_ok(),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let threads: Vec<_> = (0..4).map(|_| std::thread::spawn(|| free_ports(50))).collect();
        let mut all: Vec<u16> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.push(free_port());
        all.push(free_port());
        let unique: HashSet<u16> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "a port was handed out twice");
        for port in all {
            assert!(port >= 1024, "{port}");
        }
    }

    #[test]
    fn handed_out_ports_are_bindable() {
        let port = free_port();
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port is free");
    }

    #[test]
    fn range_avoids_ephemeral_ports() {
        assert_eq!(pick_range(Some((32768, 60999))), (20000, 32767));
        assert_eq!(pick_range(Some((20000, 50000))), (50001, 60000));
        assert_eq!(pick_range(Some((21000, 59000))), (20000, 60000));
        assert_eq!(pick_range(None), (20000, 60000));
    }

    #[test]
    fn reservations_are_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        assert!(reserve(dir.path(), 31000));
        assert!(!reserve(dir.path(), 31000));
        assert!(reserve(dir.path(), 31001));
    }
}

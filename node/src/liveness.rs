//! Peer liveness from the cluster transport.
//!
//! Each director holds one idle TCP connection to every other member's transport address
//! (the port its Raft RPC and admin API listen on). When the peer's process dies, its
//! host's kernel closes that connection at once; a new connection is then tried right
//! away, and only a *refusal* by the peer's host (nothing listens: the process is gone,
//! the host itself answered) is a death signal. A timeout or an unreachable network is
//! "unknown" and changes nothing: a frozen process (SIGSTOP keeps its sockets open), a
//! partition of the transport, or a host that vanished all leave VRRP's own timers to
//! decide.
//!
//! The classification is pure ([`Tracker`]); the probing is the I/O around it.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// What one connection attempt, or a held connection, told us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A connection is established (or was re-established).
    Connected,
    /// The peer's host answered with a reset to our SYN: nothing listens.
    Refused,
    /// The held connection was closed or reset by the peer.
    Closed,
    /// No answer in time, or no route: the peer may be frozen, cut off, or gone.
    NoAnswer,
}

/// What we believe of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Its process holds our connection.
    Alive,
    /// Its host refused a connection: its process is gone.
    Gone,
    /// No answer: frozen, partitioned, or the host is down. Not a death signal.
    Unknown,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Gone => "process gone",
            Liveness::Unknown => "unknown",
        }
    }
}

/// The pure part: probes in, beliefs out; `death` is raised once per death, when a peer
/// seen alive is refused.
#[derive(Clone, Debug)]
pub struct Tracker {
    state: Option<Liveness>,
    /// When a connection the peer held was last closed.
    closed_at: Option<Duration>,
}

/// A refusal this soon after the peer closed the connection it held is its death, even
/// if an attempt in between went unanswered (a busy host, a SYN lost).
pub const DEATH_WINDOW: Duration = Duration::from_secs(1);

/// What changed with one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub now: Liveness,
    /// The death signal: a peer that was alive is gone.
    pub death: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Tracker {
            state: None,
            closed_at: None,
        }
    }

    pub fn state(&self) -> Option<Liveness> {
        self.state
    }

    /// Whether a refusal at `at` would still be a death: the peer closed the connection
    /// it held less than [`DEATH_WINDOW`] ago and nothing has decided since.
    pub fn in_death_window(&self, at: Duration) -> bool {
        self.closed_at
            .is_some_and(|c| at.saturating_sub(c) <= DEATH_WINDOW)
    }

    /// Feeds one probe made at `at` (any monotonic origin); returns the change, if the
    /// belief changed.
    pub fn observe(&mut self, at: Duration, probe: Probe) -> Option<Change> {
        let now = match probe {
            Probe::Connected => Liveness::Alive,
            Probe::Refused => Liveness::Gone,
            // A closed connection alone proves nothing (the peer may close idle
            // connections); the reconnect that follows decides.
            Probe::Closed => {
                if self.state == Some(Liveness::Alive) {
                    self.closed_at = Some(at);
                }
                return None;
            }
            Probe::NoAnswer => Liveness::Unknown,
        };
        // A death: refused right after the peer was alive (directly, or within the window
        // since it closed our connection). After longer silence VRRP's own timers rule.
        let death = now == Liveness::Gone
            && self.state != Some(Liveness::Gone)
            && (self.state == Some(Liveness::Alive) || self.in_death_window(at));
        // An answer (accepted or refused) decides: the window after a close ends.
        if now != Liveness::Unknown {
            self.closed_at = None;
        }
        if self.state == Some(now) {
            return None;
        }
        self.state = Some(now);
        Some(Change { now, death })
    }
}

/// How long a connection attempt may take before it counts as no answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
/// Between attempts while a peer does not hold a connection.
pub const RETRY: Duration = Duration::from_millis(100);
/// Right after the peer closed our connection (within [`DEATH_WINDOW`]): attempts are
/// short and close together. A process being killed may close our connection while its
/// listening socket still exists for a moment; a SYN that reaches it then goes unanswered.
pub const FAST_CONNECT_TIMEOUT: Duration = Duration::from_millis(20);
pub const FAST_RETRY: Duration = Duration::from_millis(5);

/// One connection attempt, classified.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> (Probe, Option<TcpStream>) {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => (Probe::Connected, Some(s)),
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => (Probe::Refused, None),
        Ok(Err(_)) | Err(_) => (Probe::NoAnswer, None),
    }
}

/// Waits until a held connection is closed or reset by the peer. We never send on it, so
/// any byte from the peer is unexpected and ends it too.
pub async fn held_until_closed(mut s: TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Watches one peer for ever, calling `report` with every change.
pub async fn watch_peer<F>(addr: SocketAddr, mut report: F)
where
    F: FnMut(Change) + Send,
{
    let mut tracker = Tracker::new();
    let origin = tokio::time::Instant::now();
    loop {
        let fast = tracker.in_death_window(origin.elapsed());
        let timeout = if fast {
            FAST_CONNECT_TIMEOUT
        } else {
            CONNECT_TIMEOUT
        };
        let (probe, stream) = connect(addr, timeout).await;
        if probe == Probe::NoAnswer && fast {
            tracing::debug!(peer = %addr, "no answer right after the peer closed our connection; trying again");
        }
        if let Some(c) = tracker.observe(origin.elapsed(), probe) {
            report(c);
        }
        match stream {
            Some(s) => {
                held_until_closed(s).await;
                let _ = tracker.observe(origin.elapsed(), Probe::Closed);
                // Reconnect at once: this is the fast path.
            }
            None => tokio::time::sleep(if fast { FAST_RETRY } else { RETRY }).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::ZERO;

    #[test]
    fn only_a_refusal_after_alive_is_a_death() {
        let mut t = Tracker::new();
        assert_eq!(
            t.observe(T0, Probe::Connected),
            Some(Change {
                now: Liveness::Alive,
                death: false
            })
        );
        assert_eq!(t.observe(T0, Probe::Closed), None);
        assert_eq!(
            t.observe(T0, Probe::Refused),
            Some(Change {
                now: Liveness::Gone,
                death: true
            })
        );
        // Still refused: no second signal.
        assert_eq!(t.observe(T0, Probe::Refused), None);
    }

    #[test]
    fn timeouts_are_never_a_death() {
        let mut t = Tracker::new();
        t.observe(T0, Probe::Connected);
        assert_eq!(
            t.observe(T0, Probe::NoAnswer),
            Some(Change {
                now: Liveness::Unknown,
                death: false
            })
        );
        // A refusal after a period of no answers: the host came back without the process;
        // the master was long declared down by VRRP's own timer by then.
        assert_eq!(t.observe(T0, Probe::Refused).map(|c| c.death), Some(false));
    }

    #[test]
    fn an_unanswered_attempt_right_after_the_close_does_not_hide_the_death() {
        let mut t = Tracker::new();
        t.observe(T0, Probe::Connected);
        let ms = Duration::from_millis;
        t.observe(ms(10_000), Probe::Closed);
        assert_eq!(
            t.observe(ms(10_100), Probe::NoAnswer).map(|c| c.death),
            Some(false)
        );
        assert_eq!(t.observe(ms(10_300), Probe::Refused).map(|c| c.death), Some(true));
        // The same after the window: not a death.
        let mut t = Tracker::new();
        t.observe(T0, Probe::Connected);
        t.observe(ms(10_000), Probe::Closed);
        t.observe(ms(10_100), Probe::NoAnswer);
        assert_eq!(
            t.observe(ms(11_200), Probe::Refused).map(|c| c.death),
            Some(false)
        );
    }

    #[test]
    fn a_peer_never_seen_alive_is_not_reported_dead() {
        let mut t = Tracker::new();
        assert_eq!(t.observe(T0, Probe::Refused).map(|c| c.death), Some(false));
        t.observe(T0, Probe::Connected);
        assert_eq!(t.observe(T0, Probe::Refused).map(|c| c.death), Some(true));
    }

    #[test]
    fn a_closed_connection_that_reconnects_is_still_alive() {
        let mut t = Tracker::new();
        t.observe(T0, Probe::Connected);
        assert_eq!(t.observe(T0, Probe::Closed), None);
        assert!(t.in_death_window(T0));
        assert_eq!(t.observe(T0, Probe::Connected), None);
        assert_eq!(t.state(), Some(Liveness::Alive));
        // The reconnect decided: the window after the close is over.
        assert!(!t.in_death_window(T0));
    }

    #[tokio::test]
    async fn loopback_refusal_and_close_are_told_apart_from_silence() {
        // A listener: connected. Dropped listener and connection: closed, then refused.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (p, s) = connect(addr, CONNECT_TIMEOUT).await;
        assert_eq!(p, Probe::Connected);
        let (srv, _) = l.accept().await.unwrap();
        drop(l);
        drop(srv);
        tokio::time::timeout(Duration::from_secs(1), held_until_closed(s.unwrap()))
            .await
            .expect("the close is seen at once");
        assert_eq!(connect(addr, CONNECT_TIMEOUT).await.0, Probe::Refused);
    }
}

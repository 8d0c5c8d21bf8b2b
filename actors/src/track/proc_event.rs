//! The kernel's process events connector (`cn_proc`, `NETLINK_CONNECTOR`): the
//! subscription request and the events it sends (fork, exec, comm, exit). Byte layout of
//! `<linux/connector.h>` and `<linux/cn_proc.h>`, native endian. Pure.

/// `NETLINK_CONNECTOR`.
pub const NETLINK_CONNECTOR: isize = 11;
/// `CN_IDX_PROC`: the connector index, and the multicast group to bind.
pub const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDR: usize = 16;
const CN_MSG: usize = 20;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;

const PROC_EVENT_NONE: u32 = 0;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_COMM: u32 = 0x0000_0200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One process event that matters to process tracking. Threads are told apart from
/// processes by the caller (`pid != tgid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcEvent {
    /// The answer to our subscription (`err` 0: listening).
    Ack {
        err: u32,
    },
    Fork {
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    Exec {
        pid: u32,
        tgid: u32,
    },
    /// The process renamed itself (`prctl(PR_SET_NAME)`).
    Comm {
        pid: u32,
        tgid: u32,
        comm: String,
    },
    Exit {
        pid: u32,
        tgid: u32,
    },
    /// Another event (uid, gid, sid, ptrace, coredump...): nothing to track.
    Other(u32),
}

/// The message that starts (`listen`) or stops the flow of events to `port`.
pub fn subscription(port: u32, listen: bool) -> Vec<u8> {
    let op = if listen {
        PROC_CN_MCAST_LISTEN
    } else {
        PROC_CN_MCAST_IGNORE
    };
    let len = NLMSG_HDR + CN_MSG + 4;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&port.to_ne_bytes());
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // payload length
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&op.to_ne_bytes());
    m
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_ne_bytes)
}

/// The events in one datagram from the connector (normally one). Messages for another
/// connector index, and truncated ones, are skipped.
pub fn parse(datagram: &[u8]) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDR {
        let Some(len) = u32_at(rest, 0).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDR || len > rest.len() {
            break;
        }
        if let Some(e) = parse_one(&rest[NLMSG_HDR..len]) {
            out.push(e);
        }
        let aligned = (len + 3) & !3;
        rest = rest.get(aligned..).unwrap_or(&[]);
    }
    out
}

fn parse_one(cn: &[u8]) -> Option<ProcEvent> {
    if u32_at(cn, 0)? != CN_IDX_PROC || u32_at(cn, 4)? != CN_VAL_PROC {
        return None;
    }
    let payload_len = usize::from(u16::from_ne_bytes(cn.get(16..18)?.try_into().ok()?));
    let ev = cn.get(CN_MSG..CN_MSG + payload_len)?;
    // what, cpu, timestamp (u64), then the event's data.
    let what = u32_at(ev, 0)?;
    let data = ev.get(16..)?;
    let at = |i: usize| u32_at(data, i * 4);
    Some(match what {
        PROC_EVENT_NONE => ProcEvent::Ack { err: at(0)? },
        PROC_EVENT_FORK => ProcEvent::Fork {
            parent_tgid: at(1)?,
            child_pid: at(2)?,
            child_tgid: at(3)?,
        },
        PROC_EVENT_EXEC => ProcEvent::Exec {
            pid: at(0)?,
            tgid: at(1)?,
        },
        PROC_EVENT_COMM => {
            let raw = data.get(8..24)?;
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            ProcEvent::Comm {
                pid: at(0)?,
                tgid: at(1)?,
                comm: String::from_utf8_lossy(&raw[..end]).into_owned(),
            }
        }
        PROC_EVENT_EXIT => ProcEvent::Exit {
            pid: at(0)?,
            tgid: at(1)?,
        },
        other => ProcEvent::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// nlmsghdr + cn_msg + proc_event header, as the kernel (x86-64) sends them.
    fn frame(what: &str, data: &str) -> Vec<u8> {
        let data = hex(data);
        let payload = 16 + data.len();
        let len = 16 + 20 + payload;
        let mut m = hex(&format!("{:02x}000000 0300 0000 00000000 00000000", len));
        m.extend(hex("01000000 01000000 05000000 00000000"));
        m.extend((payload as u16).to_le_bytes());
        m.extend(hex("0000"));
        m.extend(hex(what));
        m.extend(hex("01000000 d0996d77621d0000"));
        m.extend(data);
        m
    }

    #[test]
    fn subscription_bytes() {
        let m = subscription(0x1234, true);
        assert_eq!(
            m,
            hex(
                "28000000 0300 0000 00000000 34120000 01000000 01000000 00000000 00000000 0400 0000 01000000"
            )
        );
        assert_eq!(subscription(7, false)[36..], hex("02000000")[..]);
    }

    #[test]
    fn events_from_captured_layouts() {
        // The ack of a subscription (captured on this kernel: err 0).
        assert_eq!(parse(&frame("00000000", "00000000")), [ProcEvent::Ack { err: 0 }]);
        // fork: parent pid/tgid 7777, child 7800/7800.
        assert_eq!(
            parse(&frame("01000000", "611e0000 611e0000 781e0000 781e0000")),
            [ProcEvent::Fork {
                parent_tgid: 7777,
                child_pid: 7800,
                child_tgid: 7800
            }]
        );
        assert_eq!(
            parse(&frame("02000000", "781e0000 781e0000")),
            [ProcEvent::Exec {
                pid: 7800,
                tgid: 7800
            }]
        );
        // comm: "hatrackd" NUL-padded to 16 bytes.
        assert_eq!(
            parse(&frame(
                "00020000",
                "781e0000 781e0000 6861747261636b64 0000000000000000"
            )),
            [ProcEvent::Comm {
                pid: 7800,
                tgid: 7800,
                comm: "hatrackd".into()
            }]
        );
        // exit of a thread (pid 7801 of process 7800): code, signal, parent.
        assert_eq!(
            parse(&frame(
                "00000080",
                "791e0000 781e0000 00000000 11000000 611e0000 611e0000"
            )),
            [ProcEvent::Exit {
                pid: 7801,
                tgid: 7800
            }]
        );
        assert_eq!(
            parse(&frame("04000000", "781e0000 781e0000 e8030000 e8030000")),
            [ProcEvent::Other(4)]
        );
    }

    #[test]
    fn truncated_or_foreign_messages_are_skipped() {
        let f = frame("02000000", "781e0000 781e0000");
        assert!(parse(&f[..f.len() - 3]).is_empty(), "shorter than its length");
        let mut other = f.clone();
        other[16] = 2; // another connector index
        assert!(parse(&other).is_empty());
        assert!(parse(&[]).is_empty());
        let mut bad = f;
        bad[32] = 0xff; // payload length past the end
        assert!(parse(&bad).is_empty());
    }
}

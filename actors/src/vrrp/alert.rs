//! `smtp_alert`: a mail for each state change of an instance or sync group, as keepalived
//! 2.2.7 writes it (subject `[ROUTER_ID] VRRP Instance NAME - Entering MASTER state`, its
//! one-line body, `HELO`/`MAIL FROM`/`RCPT TO`/`DATA`/`QUIT` to `smtp_server`). The
//! message and the exchange are pure; one actor per director sends them, one at a time,
//! never holding up VRRP.

use actix::prelude::*;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Who changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Instance,
    Group,
}

/// keepalived's subject end and body for a state, for an instance or a group (None: no
/// mail for that state).
pub fn wording(source: Source, state: &str) -> Option<(&'static str, &'static str)> {
    Some(match (source, state) {
        (Source::Instance, "MASTER") => (
            "Entering MASTER state",
            "=> VRRP Instance is now owning VRRP VIPs <=",
        ),
        (Source::Instance, "BACKUP") => (
            "Entering BACKUP state",
            "=> VRRP Instance is no longer owning VRRP VIPs <=",
        ),
        (Source::Instance, "FAULT") => (
            "Entering FAULT state",
            "=> VRRP Instance is no longer owning VRRP VIPs <=",
        ),
        (Source::Instance, "STOP") => ("Stopping", "=> VRRP Instance stopping <="),
        (Source::Group, "MASTER") => (
            "Entering MASTER state",
            "=> All VRRP group instances are now in MASTER state <=",
        ),
        (Source::Group, "BACKUP") => (
            "Entering BACKUP state",
            "=> All VRRP group instances are now in BACKUP state <=",
        ),
        (Source::Group, "FAULT") => (
            "Entering FAULT state",
            "=> All VRRP group instances are now in FAULT state <=",
        ),
        (Source::Group, "STOP") => ("Stopping", "=> All VRRP group instances are now stopping <="),
        _ => return None,
    })
}

/// Where alert mails go and as whom (from `global_defs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailSettings {
    pub server: String,
    pub port: u16,
    pub helo: String,
    pub from: String,
    pub to: Vec<String>,
    pub router_id: String,
    pub timeout: Duration,
    pub no_email_faults: bool,
}

impl MailSettings {
    /// The settings of `g`, if it says where to send (a server and recipients).
    pub fn of(g: &ha_config::model::GlobalDefs) -> Option<MailSettings> {
        let server = g.smtp_server.as_ref()?;
        if g.notification_email.is_empty() {
            return None;
        }
        let host = local_name();
        Some(MailSettings {
            server: server.host.clone(),
            port: server.port.unwrap_or(25),
            helo: g.smtp_helo_name.clone().unwrap_or_else(|| host.clone()),
            from: g
                .notification_email_from
                .clone()
                .unwrap_or_else(|| format!("root@{host}")),
            to: g.notification_email.clone(),
            router_id: g.router_id.clone().unwrap_or(host),
            timeout: Duration::from_secs(u64::from(g.smtp_connect_timeout.unwrap_or(30))),
            no_email_faults: g.no_email_faults,
        })
    }
}

/// The host's name (keepalived's default router_id and HELO name).
pub fn local_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A mail to send.
#[derive(Clone, Debug, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Alert {
    pub source: Source,
    pub name: String,
    pub state: String,
}

/// The subject and body of `a` (None: no mail for that state).
pub fn compose(s: &MailSettings, a: &Alert) -> Option<(String, String)> {
    if s.no_email_faults && a.state == "FAULT" {
        return None;
    }
    let (what, body) = wording(a.source, &a.state)?;
    let kind = match a.source {
        Source::Instance => "VRRP Instance",
        Source::Group => "VRRP Group",
    };
    Some((
        format!("[{}] {kind} {} - {what}", s.router_id, a.name),
        body.to_string(),
    ))
}

/// The SMTP exchange of one mail: each line sent (None: the greeting, nothing sent)
/// with the reply code that must come back.
pub fn session(s: &MailSettings, date: &str, subject: &str, body: &str) -> Vec<(Option<String>, u16)> {
    let mut out = vec![(None, 220), (Some(format!("HELO {}\r\n", s.helo)), 250)];
    out.push((Some(format!("MAIL FROM:<{}>\r\n", s.from)), 250));
    for to in &s.to {
        out.push((Some(format!("RCPT TO:<{to}>\r\n")), 250));
    }
    out.push((Some("DATA\r\n".into()), 354));
    // A body line that starts with a dot is doubled (RFC 5321 4.5.2).
    let body: String = body
        .lines()
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}\r\n")
            } else {
                format!("{l}\r\n")
            }
        })
        .collect();
    out.push((
        Some(format!(
            "Date: {date}\r\nFrom: {}\r\nSubject: {subject}\r\nX-Mailer: hanode\r\nTo: {}\r\n\r\n{body}\r\n.\r\n",
            s.from,
            s.to.join(", ")
        )),
        250,
    ));
    out.push((Some("QUIT\r\n".into()), 221));
    out
}

/// The code of a complete reply (its last line: `250 ok`, after any `250-...`), or None
/// while more lines are to come.
pub fn reply_code(line: &str) -> Option<Result<u16, String>> {
    let Some(code) = line.get(..3) else {
        return Some(Err(format!("not an SMTP reply: {line:?}")));
    };
    match line.as_bytes().get(3) {
        Some(b'-') => None,
        _ => Some(code.parse().map_err(|_| format!("not an SMTP reply: {line:?}"))),
    }
}

async fn deliver(s: &MailSettings, steps: Vec<(Option<String>, u16)>) -> Result<(), String> {
    let stream = tokio::time::timeout(
        s.timeout,
        tokio::net::TcpStream::connect((s.server.as_str(), s.port)),
    )
    .await
    .map_err(|_| {
        format!(
            "connect to {}:{}: timed out after {:?}",
            s.server, s.port, s.timeout
        )
    })?
    .map_err(|e| format!("connect to {}:{}: {e}", s.server, s.port))?;
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    for (send, want) in steps {
        if let Some(text) = &send {
            w.write_all(text.as_bytes())
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
        let code = loop {
            let line = tokio::time::timeout(s.timeout, lines.next_line())
                .await
                .map_err(|_| "no reply: timed out".to_string())?
                .map_err(|e| format!("read: {e}"))?
                .ok_or("the server closed the connection")?;
            if let Some(c) = reply_code(&line) {
                break c?;
            }
        };
        if code != want {
            let what = send
                .as_deref()
                .map(|t| t.lines().next().unwrap_or("").to_string());
            return Err(format!(
                "{}: reply {code}, not {want}",
                what.unwrap_or_else(|| "greeting".into())
            ));
        }
    }
    Ok(())
}

/// Sends alert mails, one at a time, in order.
pub struct Mailer {
    settings: MailSettings,
    /// The last state mailed per (source, name): keepalived mails a change once.
    last: std::collections::BTreeMap<(bool, String), String>,
}

impl Mailer {
    pub fn new(settings: MailSettings) -> Self {
        Mailer {
            settings,
            last: Default::default(),
        }
    }
}

impl Actor for Mailer {
    type Context = Context<Self>;
}

impl Handler<Alert> for Mailer {
    type Result = ();

    fn handle(&mut self, a: Alert, ctx: &mut Context<Self>) {
        let key = (a.source == Source::Group, a.name.clone());
        let composed = (self.last.get(&key) != Some(&a.state))
            .then(|| compose(&self.settings, &a))
            .flatten();
        let Some((subject, body)) = composed else {
            return;
        };
        self.last.insert(key, a.state.clone());
        let date = rfc2822_now();
        let steps = session(&self.settings, &date, &subject, &body);
        let settings = self.settings.clone();
        // `wait`: one mail at a time, in the order the changes came.
        ctx.wait(
            async move {
                match deliver(&settings, steps).await {
                    Ok(()) => tracing::info!(subject = %subject, "smtp_alert sent"),
                    Err(e) => tracing::warn!(subject = %subject, server = %settings.server, "smtp_alert not sent: {e}"),
                }
            }
            .into_actor(self),
        );
    }
}

/// Waits until every alert sent before it has been handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

impl Handler<Flush> for Mailer {
    type Result = ();

    fn handle(&mut self, _: Flush, _ctx: &mut Context<Self>) {}
}

/// Now as RFC 2822 (`Tue, 08 Dec 2026 04:38:17 +0000`, UTC).
pub fn rfc2822_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc2822(secs)
}

fn rfc2822(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = ha_config::time::civil_from_days(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MailSettings {
        MailSettings {
            server: "198.18.116.25".into(),
            port: 25,
            helo: "lvs01".into(),
            from: "lvs@example.test".into(),
            to: vec!["ops@example.test".into(), "noc@example.test".into()],
            router_id: "LVS_DEVEL".into(),
            timeout: Duration::from_secs(30),
            no_email_faults: false,
        }
    }

    #[test]
    fn keepalived_s_subject_and_body() {
        let a = Alert {
            source: Source::Instance,
            name: "VI_1".into(),
            state: "MASTER".into(),
        };
        assert_eq!(
            compose(&settings(), &a),
            Some((
                "[LVS_DEVEL] VRRP Instance VI_1 - Entering MASTER state".into(),
                "=> VRRP Instance is now owning VRRP VIPs <=".into()
            ))
        );
        let g = Alert {
            source: Source::Group,
            name: "G".into(),
            state: "FAULT".into(),
        };
        assert_eq!(
            compose(&settings(), &g).unwrap().0,
            "[LVS_DEVEL] VRRP Group G - Entering FAULT state"
        );
        let quiet = MailSettings {
            no_email_faults: true,
            ..settings()
        };
        assert_eq!(compose(&quiet, &g), None, "no_email_faults");
        let init = Alert {
            state: "INIT".into(),
            ..a
        };
        assert_eq!(compose(&settings(), &init), None);
    }

    #[test]
    fn the_smtp_exchange() {
        let s = session(
            &settings(),
            "Tue, 08 Dec 2026 04:38:17 +0000",
            "subj",
            "body\n.hidden",
        );
        let sent: Vec<String> = s.iter().filter_map(|(l, _)| l.clone()).collect();
        assert_eq!(sent[0], "HELO lvs01\r\n");
        assert_eq!(sent[1], "MAIL FROM:<lvs@example.test>\r\n");
        assert_eq!(sent[2], "RCPT TO:<ops@example.test>\r\n");
        assert_eq!(sent[3], "RCPT TO:<noc@example.test>\r\n");
        assert_eq!(sent[4], "DATA\r\n");
        assert!(sent[5].starts_with(
            "Date: Tue, 08 Dec 2026 04:38:17 +0000\r\nFrom: lvs@example.test\r\nSubject: subj\r\n"
        ));
        assert!(
            sent[5].contains("To: ops@example.test, noc@example.test\r\n\r\nbody\r\n..hidden\r\n"),
            "dot-stuffed: {}",
            sent[5]
        );
        assert!(sent[5].ends_with("\r\n.\r\n"));
        assert_eq!(sent[6], "QUIT\r\n");
        let codes: Vec<u16> = s.iter().map(|(_, c)| *c).collect();
        assert_eq!(codes, [220, 250, 250, 250, 250, 354, 250, 221]);
    }

    #[test]
    fn replies_and_dates() {
        assert_eq!(reply_code("250-first"), None);
        assert_eq!(reply_code("250 ok"), Some(Ok(250)));
        assert_eq!(reply_code("354"), Some(Ok(354)));
        assert!(matches!(reply_code("abc def"), Some(Err(_))));
        assert!(
            matches!(reply_code("25"), Some(Err(_))),
            "too short: an error, not a wait"
        );
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(1_796_704_697), "Tue, 08 Dec 2026 04:38:17 +0000");
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}

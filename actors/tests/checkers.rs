//! Checkers end to end on loopback: real HTTP servers, the seed's kind of checker block,
//! a server stopped and started again; the desired table follows.

use ::actors::check::hub::GetTables;
use ::actors::check::runner;
use actix::prelude::*;
use ha_config::cluster;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn web(l: TcpListener) {
    loop {
        let Ok((mut s, _)) = l.accept().await else { return };
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        });
    }
}

async fn table_ports(hub: &Addr<::actors::check::hub::CheckHub>) -> Vec<u16> {
    let t = hub.send(GetTables).await.unwrap();
    t.values()
        .flat_map(|o| o.dests.iter().filter(|d| d.weight > 0).filter_map(|d| d.port))
        .collect()
}

#[actix_rt::test]
async fn a_stopped_web_server_leaves_the_table_and_comes_back() {
    let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (p1, p2) = (l1.local_addr().unwrap().port(), l2.local_addr().unwrap().port());
    let s1 = tokio::spawn(web(l1));
    let _s2 = tokio::spawn(web(l2));
    let rs = |p: u16| {
        format!(
            " real_server 127.0.0.1 {p} {{\n  weight 1\n  HTTP_GET {{\n   url {{\n    path /\n    status_code 200\n   }}\n   connect_timeout 1\n   retry 1\n   delay_before_retry 1\n  }}\n }}\n"
        )
    };
    let text = format!(
        "virtual_server 198.18.116.134 80 {{\n delay_loop 1\n lb_algo rr\n lb_kind NAT\n protocol TCP\n{}{}}}\n",
        rs(p1),
        rs(p2)
    );
    let (_, loaded) = cluster::load_str("c.conf", &text, &[]);
    assert!(!loaded.diags.has_errors(), "{:?}", loaded.diags);
    let config = loaded.cluster.default.clone();
    let checks = runner::start(&config, 1, vec![]);
    let hub = checks.hub.clone();

    let wait = |want: Vec<u16>, within: Duration| {
        let hub = hub.clone();
        async move {
            let start = Instant::now();
            loop {
                let mut got = table_ports(&hub).await;
                got.sort();
                if got == want {
                    return start.elapsed();
                }
                assert!(start.elapsed() < within, "table {got:?}, want {want:?}");
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut both = vec![p1, p2];
    both.sort();
    wait(both.clone(), Duration::from_secs(3)).await;

    // Stop rs01's web server (connections refused from now on).
    s1.abort();
    let _ = s1.await;
    let took = wait(vec![p2], Duration::from_secs(6)).await;
    // keepalived, refused at once: at most delay_loop + retry x delay_before_retry = 2 s
    // (plus the probes themselves).
    eprintln!("rs01 down after {took:?} (keepalived bound for refusals: 2 s)");
    assert!(took <= Duration::from_millis(2600), "{took:?}");

    // Start it again: back at the next probe.
    let l1 = TcpListener::bind(("127.0.0.1", p1)).await.unwrap();
    let _s1 = tokio::spawn(web(l1));
    let took = wait(both, Duration::from_secs(3)).await;
    eprintln!("rs01 back after {took:?}");
}

#[actix_rt::test]
async fn a_real_server_shared_by_two_virtual_servers_is_probed_once() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
            });
        }
    });
    let vs = |vport: u16| {
        format!(
            "virtual_server 198.18.116.134 {vport} {{\n delay_loop 1\n lb_kind NAT\n real_server 127.0.0.1 {port} {{\n  HTTP_GET {{\n   url {{\n    path /\n   }}\n   connect_timeout 1\n  }}\n }}\n}}\n"
        )
    };
    let (_, loaded) = cluster::load_str("c.conf", &(vs(80) + &vs(8080)), &[]);
    let checks = runner::start(&loaded.cluster.default, 1, vec![]);
    assert_eq!(checks.checkers.len(), 1, "one probe for both virtual servers");
    actix_rt::time::sleep(Duration::from_millis(2500)).await;
    let n = hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=4).contains(&n),
        "{n} probes in 2.5 s at delay_loop 1 (not twice that)"
    );
    let tables = checks.hub.send(GetTables).await.unwrap();
    assert_eq!(tables.len(), 2);
    assert!(tables.values().all(|t| t.dests.len() == 1));
}

#[actix_rt::test]
async fn reconfiguring_one_checker_leaves_the_others_state_alone() {
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = up.local_addr().unwrap().port();
    tokio::spawn(web(up));
    let down_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = |path: &str| {
        format!(
            "virtual_server 198.18.116.134 80 {{\n delay_loop 1\n lb_kind NAT\n real_server 127.0.0.1 {up_port} {{\n  HTTP_GET {{\n   url {{\n    path {path}\n   }}\n   connect_timeout 1\n  }}\n }}\n real_server 127.0.0.1 {down_port} {{\n  TCP_CHECK {{\n   connect_timeout 1\n   retry 1\n   delay_before_retry 1\n  }}\n }}\n}}\n"
        )
    };
    let (_, l) = cluster::load_str("c.conf", &conf("/"), &[]);
    let mut checks = runner::start(&l.cluster.default, 1, vec![]);
    let hub = checks.hub.clone();
    let ports = || async { table_ports(&hub).await };
    // Refused, retried once a second later: down after ~1 s.
    actix_rt::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(ports().await, vec![up_port], "the closed port is down");
    // Retune only the HTTP check (another path): it restarts; the TCP check keeps its
    // DOWN verdict instead of starting UP again.
    let (_, l2) = cluster::load_str("c.conf", &conf("/health"), &[]);
    let changes = checks.reconfigure(&l2.cluster.default, 2);
    assert_eq!(
        (
            changes.started,
            changes.stopped,
            changes.retargeted,
            changes.running
        ),
        (1, 1, 0, 2),
        "{changes}"
    );
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ports().await,
        vec![up_port],
        "no state reset for the unchanged checker"
    );
}

/// The seed's checker block (`connect_timeout 3`, `nb_get_retry 3`, `delay_before_retry 3`,
/// `delay_loop 6`): a stopped web server (connections refused) is down within what
/// keepalived takes: at most delay_loop + retry x delay_before_retry = 15 s (27 s when
/// every attempt hangs to its timeout).
#[actix_rt::test]
async fn the_seed_checker_block_detects_within_keepalived_time() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(web(l));
    let text = format!(
        "virtual_server 198.18.116.134 80 {{\n delay_loop 6\n lb_algo rr\n lb_kind DR\n persistence_timeout 50\n protocol TCP\n real_server 127.0.0.1 {port} {{\n  weight 1\n  HTTP_GET {{\n   url {{\n    path /\n    status_code 200\n   }}\n   connect_timeout 3\n   nb_get_retry 3\n   delay_before_retry 3\n  }}\n }}\n}}\n"
    );
    let (_, l) = cluster::load_str("seed.conf", &text, &[]);
    let vs = &l.cluster.default.virtual_servers[0];
    let timing = ::actors::check::schedule::Timing::from(&vs.real_servers[0].checkers[0].common);
    let checks = runner::start(&l.cluster.default, 1, vec![]);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(table_ports(&checks.hub).await, vec![port]);
    server.abort();
    let _ = server.await;
    let start = Instant::now();
    while !table_ports(&checks.hub).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(20), "not down after 20 s");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let took = start.elapsed();
    let refused_bound = timing.delay_loop + timing.delay_before_retry * timing.retry;
    eprintln!(
        "seed checker: down after {took:?}; keepalived: at most {refused_bound:?} for refusals, {:?} worst case",
        timing.worst_case_detection()
    );
    assert!(took <= refused_bound + Duration::from_millis(500), "{took:?}");
}

#[actix_rt::test]
async fn notify_and_quorum_scripts_run_on_transitions() {
    let dir = std::env::temp_dir().join(format!("ha-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = |n: &str| dir.join(n).display().to_string();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(web(l));
    let text = format!(
        "virtual_server 198.18.116.134 80 {{\n delay_loop 1\n lb_kind NAT\n quorum 1\n quorum_up \"/usr/bin/touch {qup}\"\n quorum_down \"/usr/bin/touch {qdown}\"\n real_server 127.0.0.1 {port} {{\n  notify_up \"/usr/bin/touch {up}\"\n  notify_down \"/usr/bin/touch {down}\"\n  TCP_CHECK {{\n   connect_timeout 1\n   retry 1\n   delay_before_retry 1\n  }}\n }}\n}}\n",
        qup = f("quorum-up"),
        qdown = f("quorum-down"),
        up = f("rs-up"),
        down = f("rs-down"),
    );
    let (parsed, l) = cluster::load_str("c.conf", &text, &[]);
    assert!(!l.diags.has_errors(), "{}", l.diags.render(&parsed.sources));
    let _checks = runner::start(&l.cluster.default, 1, vec![]);
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    server.abort();
    let _ = server.await;
    let exists = |n: &str| dir.join(n).exists();
    let start = Instant::now();
    while !(exists("rs-down") && exists("quorum-down")) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "notify_down / quorum_down not run"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!exists("rs-up") && !exists("quorum-up"), "nothing runs at start");
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let _server = tokio::spawn(web(l));
    let start = Instant::now();
    while !(exists("rs-up") && exists("quorum-up")) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "notify_up / quorum_up not run"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A change of some virtual servers touches their probes only: a weight changes nothing
/// that runs, a probe shared with a new virtual server is retargeted, not restarted, and
/// the hub's tables follow.
#[actix_rt::test]
async fn an_update_touches_only_the_changed_virtual_servers_probes() {
    let vs = |vip: u8, rss: &[(u16, u32)]| {
        let mut t = format!("virtual_server 198.18.120.{vip} 80 {{\n delay_loop 30\n lb_kind NAT\n");
        for (port, weight) in rss {
            t += &format!(" real_server 127.0.0.1 {port} {{\n  weight {weight}\n  TCP_CHECK {{\n   connect_timeout 1\n  }}\n }}\n");
        }
        t + "}\n"
    };
    let one = |text: &str| {
        let (_, l) = cluster::load_str("c.conf", text, &[]);
        assert!(!l.diags.has_errors(), "{:?}", l.diags);
        l.cluster.default.virtual_servers[0].clone()
    };
    // Listening (the kernel completes the handshakes): every probe that runs finds its
    // real server up, as the tables below assume.
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let port: Vec<u16> = listeners.iter().map(|l| l.local_addr().unwrap().port()).collect();
    let (p1, p2, p3) = (port[0], port[1], port[2]);
    let (_, l) = cluster::load_str("c.conf", &vs(1, &[(p1, 1), (p2, 1)]), &[]);
    let mut checks = runner::start(&l.cluster.default, 1, vec![]);
    let a = "198.18.120.1:80".to_string();
    let b = "198.18.120.2:80".to_string();
    let summary = |c: runner::ProbeChanges| (c.started, c.stopped, c.retargeted, c.running);

    let c = checks.update(vec![(a.clone(), Some(one(&vs(1, &[(p1, 5), (p2, 1)]))))], 2);
    assert_eq!(summary(c), (0, 0, 0, 2), "a weight touches no probe: {c}");
    let c = checks.update(vec![(b.clone(), Some(one(&vs(2, &[(p1, 1)]))))], 3);
    assert_eq!(summary(c), (0, 0, 1, 2), "the shared probe is retargeted: {c}");
    let c = checks.update(vec![(b.clone(), Some(one(&vs(2, &[(p1, 1), (p3, 1)]))))], 4);
    assert_eq!(
        summary(c),
        (1, 0, 0, 3),
        "a new real server starts one probe: {c}"
    );
    let c = checks.update(vec![(a.clone(), None)], 5);
    assert_eq!(summary(c), (0, 1, 1, 2), "{c}");

    let tables = checks.hub.send(GetTables).await.unwrap();
    assert_eq!(tables.keys().cloned().collect::<Vec<_>>(), vec![b.clone()]);
    let weights: std::collections::BTreeMap<Option<u16>, u32> = {
        let c = checks.update(vec![(b.clone(), Some(one(&vs(2, &[(p1, 7), (p3, 1)]))))], 6);
        assert_eq!(summary(c), (0, 0, 0, 2), "{c}");
        let t = checks.hub.send(GetTables).await.unwrap();
        // Both real servers are up (started so, and every probe connects): the new weight
        // is in the table.
        t[&b].dests.iter().map(|d| (d.port, d.weight)).collect()
    };
    assert_eq!(weights, [(Some(p1), 7), (Some(p3), 1)].into_iter().collect());
}

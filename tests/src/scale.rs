//! Generated cluster files at scale (issue 20): `n` virtual servers `lb_kind DR`, `wrr`,
//! each with `rs` real servers checked by `TCP_CHECK`, and one VRRP instance whose
//! priority differs per director (`@lvs01`/`@lvs02`/`@lvs03` lines). Every address is in
//! 198.18.0.0/15: virtual servers from 198.18.128.1 on, real servers in 198.19.0.0/16.

/// The `i`-th virtual server's address (up to 127 x 250 = 31,750 per port; the port
/// moves on after that, so 50,000 and more stay distinct).
pub fn vs_addr(i: u32) -> (String, u16) {
    let per_port = 127 * 250;
    let j = i % per_port;
    (
        format!("198.18.{}.{}", 128 + j / 250, 1 + j % 250),
        80 + (i / per_port) as u16,
    )
}

/// The `r`-th real server of virtual server `i`.
pub fn rs_addr(i: u32, r: u32) -> String {
    let k = i.wrapping_mul(4).wrapping_add(r) % (250 * 256);
    format!("198.19.{}.{}", k / 250, 1 + k % 250)
}

/// The `i`-th virtual server's block; `weights(r)` gives each real server's weight.
pub fn vs_block(i: u32, rs: u32, weights: impl Fn(u32) -> u32) -> String {
    let (ip, port) = vs_addr(i);
    let mut s = format!(
        "virtual_server {ip} {port} {{\n    delay_loop 6\n    lb_algo wrr\n    lb_kind DR\n    protocol TCP\n"
    );
    for r in 0..rs {
        s.push_str(&format!(
            "    real_server {} {port} {{\n        weight {}\n        TCP_CHECK {{\n            connect_timeout 3\n        }}\n    }}\n",
            rs_addr(i, r),
            weights(r)
        ));
    }
    s.push_str("}\n");
    s
}

/// The cluster file; `weights(i, r)` gives each real server's weight.
pub fn scale_conf(n: u32, rs: u32, weights: impl Fn(u32, u32) -> u32) -> String {
    let mut s = String::with_capacity(n as usize * (120 + rs as usize * 150) + 1024);
    s.push_str(
        "global_defs {\n    router_id SCALE\n}\n\nvrrp_instance VI_1 {\n    @lvs01 state MASTER\n    @lvs02 state BACKUP\n    @lvs03 state BACKUP\n    interface ens33\n    virtual_router_id 51\n    @lvs01 priority 100\n    @lvs02 priority 90\n    @lvs03 priority 80\n    advert_int 1\n    virtual_ipaddress {\n        198.18.116.134\n    }\n}\n",
    );
    for i in 0..n {
        s.push('\n');
        s.push_str(&vs_block(i, rs, |r| weights(i, r)));
    }
    s
}

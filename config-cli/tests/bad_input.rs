//! Bad input gets an error with its location, never a panic.

use ha_config::cluster;
use ha_config::syntax::{parse_file, parse_str, MemLoader};
use proptest::prelude::*;
use std::path::Path;

fn errors_of(text: &str) -> Vec<String> {
    let (parsed, loaded) = cluster::load_str("t.conf", text, &[]);
    loaded.diags.errors().map(|d| d.render(&parsed.sources)).collect()
}

#[test]
fn unterminated_block_names_where_it_opened() {
    let e = errors_of("global_defs {\n  router_id A\n\nvrrp_instance X {\n  interface eth0\n");
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:4:17: error: block opened here is not closed")),
        "{e:?}"
    );
}

#[test]
fn binary_garbage_is_refused_with_a_location() {
    let l = MemLoader::new().with("/bin.conf", b"\x7fELF\x02\x01\x01\x00\x00\x00garbage".to_vec());
    let p = parse_file(Path::new("/bin.conf"), &l);
    let msgs: Vec<String> = p.diags.iter().map(|d| d.render(&p.sources)).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("/bin.conf:1:1: error:") && m.contains("binary data")),
        "{msgs:?}"
    );
}

#[test]
fn ten_megabyte_line_is_refused() {
    let text = format!(
        "global_defs {{\n router_id {}\n}}\n",
        "A".repeat(10 * 1024 * 1024)
    );
    let e = errors_of(&text);
    assert!(
        e.iter()
            .any(|m| m.starts_with("t.conf:2:1: error: line is") && m.contains("limit")),
        "{e:?}"
    );
}

#[test]
fn include_loop_and_missing_include() {
    let l = MemLoader::new()
        .with("/etc/k/a.conf", "include b.conf\ninclude nothere.conf\n")
        .with("/etc/k/b.conf", "\n\ninclude a.conf\n");
    let p = parse_file(Path::new("/etc/k/a.conf"), &l);
    let msgs: Vec<String> = p.diags.iter().map(|d| d.render(&p.sources)).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("/etc/k/b.conf:3:9: error: include loop")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("/etc/k/a.conf:2:9: error: cannot read /etc/k/nothere.conf")),
        "{msgs:?}"
    );
}

#[test]
fn invalid_values_are_located_at_the_value() {
    let text = "vrrp_instance V {\n interface eth0\n virtual_router_id 51\n priority 0\n advert_int x\n}\n\
                virtual_server 198.18.0.1 80 {\n lb_algo fastest\n real_server 198.18.0.2 80 {\n  weight -1\n }\n}\n";
    let e = errors_of(text);
    for want in [
        "t.conf:4:11: error: `priority` 0 is outside the range 1..255",
        "t.conf:5:13: error: `advert_int` expects seconds",
        "t.conf:8:10: error: unknown scheduler `fastest`",
        "t.conf:10:10: error: `weight` expects a whole number, not `-1`",
    ] {
        assert!(e.iter().any(|m| m.starts_with(want)), "missing {want} in {e:?}");
    }
}

#[test]
fn semantic_errors() {
    let text = "vrrp_instance A {\n interface eth0\n virtual_router_id 7\n virtual_ipaddress {\n  198.18.0.10\n }\n}\n\
                vrrp_instance B {\n interface eth0\n virtual_router_id 7\n virtual_ipaddress {\n  198.18.0.11\n }\n track_script {\n  nosuch\n }\n}\n\
                virtual_server 198.18.0.1 80 {\n lb_kind DR\n real_server 198.18.0.2 8080 {\n }\n real_server 198.18.0.2 8080 {\n }\n}\n";
    let e = errors_of(text).join("\n");
    assert!(
        e.contains(
            "t.conf:10:2: error: vrrp_instance B uses virtual_router_id 7 on eth0 like vrrp_instance A"
        ),
        "{e}"
    );
    assert!(
        e.contains("t.conf:15:3: error: vrrp_instance B tracks `nosuch` (track_script), which no vrrp_script defines"),
        "{e}"
    );
    assert!(e.contains("t.conf:20:2: error: real_server 198.18.0.2:8080 in DR virtual_server 198.18.0.1:80: DR cannot change the port"), "{e}");
    assert!(
        e.contains("t.conf:22:2: error: real_server 198.18.0.2:8080 is listed twice"),
        "{e}"
    );
}

#[test]
fn strict_mode_and_auth_truncation_are_reported() {
    let text = "global_defs {\n vrrp_strict\n}\nvrrp_instance A {\n state MASTER\n interface eth0\n virtual_router_id 7\n priority 100\n \
                authentication {\n  auth_type PASS\n  auth_pass 123456789\n }\n virtual_ipaddress {\n  198.18.0.10\n }\n}\n";
    let (parsed, loaded) = cluster::load_str("t.conf", text, &[]);
    let all = loaded.diags.render(&parsed.sources);
    assert!(
        all.contains(
            "t.conf:11:13: warning: auth_pass is 9 characters; VRRP carries only 8: truncated to `12345678`"
        ),
        "{all}"
    );
    assert!(
        all.contains("t.conf:9:2: warning: vrrp_instance A: vrrp_strict does not support authentication"),
        "{all}"
    );
    assert!(all.contains("t.conf:5:2: warning: vrrp_instance A: under vrrp_strict, state MASTER must match being address owner"), "{all}");
}

#[test]
fn master_with_lower_priority_than_another_director() {
    let text = "vrrp_instance A {\n @lvs01 state MASTER\n @lvs02 state BACKUP\n interface eth0\n virtual_router_id 7\n \
                @lvs01 priority 90\n @lvs02 priority 100\n virtual_ipaddress {\n  198.18.0.10\n }\n}\n";
    let (parsed, loaded) = cluster::load_str("t.conf", text, &[]);
    let all = loaded.diags.render(&parsed.sources);
    assert!(
        all.contains(
            "warning: vrrp_instance A: lvs01 has state MASTER with priority 90 but lvs02 has priority 100"
        ),
        "{all}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Random bytes never panic the parser, lowering or validation.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let l = MemLoader::new().with("/r.conf", bytes);
        let p = parse_file(Path::new("/r.conf"), &l);
        let _ = cluster::ClusterConfig::from_parsed(&p, &["n1".into()]);
    }

    /// Random keepalived-looking text (keywords, braces, quotes, conditions) never panics.
    #[test]
    fn random_config_shaped_text_never_panics(
        parts in proptest::collection::vec(prop_oneof![
            Just("{"), Just("}"), Just("\n"), Just(" "), Just("\""), Just("#"), Just("!"), Just("@lvs01 "), Just("@^x "),
            Just("vrrp_instance"), Just("virtual_server"), Just("real_server"), Just("HTTP_GET"), Just("url"),
            Just("status_code"), Just("200-299"), Just("198.18.0.1"), Just("80"), Just("priority"), Just("weight"),
            Just("virtual_ipaddress"), Just("include"), Just("global_defs"), Just("-1"), Just("999999999999999999999"),
            Just("track_script"), Just("authentication"), Just("auth_pass"), Just("lb_kind"), Just("DR"), Just("1.5"),
        ], 0..200)
    ) {
        let text: String = parts.concat();
        let p = parse_str("r.conf", &text);
        let loaded = cluster::ClusterConfig::from_parsed(&p, &[]);
        let _ = loaded.cluster.print();
    }
}

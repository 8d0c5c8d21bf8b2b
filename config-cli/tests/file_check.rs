//! `hactl check`'s one-pass checker reports exactly what parsing the whole file and
//! lowering every director's view reports (the path a proposal takes): same diagnostics,
//! same places, same directors named, on the shipped samples, on hand-written corner cases
//! and on random cluster files mixing `@node` lines, duplicates, groups and errors.

use ha_config::cluster;
use ha_config::file_check::check_str;
use proptest::prelude::*;

fn both(text: &str, extra: &[String]) -> (Vec<String>, Vec<String>) {
    let (parsed, loaded) = cluster::load_str("t.conf", text, extra);
    let whole: Vec<String> = loaded.diags.iter().map(|d| d.render(&parsed.sources)).collect();
    let checked = check_str("t.conf", text, extra);
    let streamed: Vec<String> = checked.diags.iter().map(|d| d.render(&checked.sources)).collect();
    (whole, streamed)
}

fn assert_same(text: &str) {
    for extra in [vec![], vec!["lvs09".to_string()], vec!["lvs02".to_string()]] {
        let (whole, streamed) = both(text, &extra);
        assert_eq!(streamed, whole, "extra nodes {extra:?}, file:\n{text}");
    }
}

#[test]
fn fixtures_and_samples_report_the_same() {
    let mut texts = vec![
        include_str!("fixtures/keepalived.lvs01-master.conf").to_string(),
        include_str!("fixtures/keepalived.lvs02-backup.conf").to_string(),
        include_str!("fixtures/keepalived.sample.conf").to_string(),
    ];
    let samples = std::fs::read_dir("/usr/share/doc/keepalived/samples")
        .expect("Debian's keepalived package must be installed (the README's test command installs it)");
    for e in samples.flatten() {
        if e.file_name().to_string_lossy().starts_with("keepalived.conf") {
            texts.push(String::from_utf8_lossy(&std::fs::read(e.path()).expect("read sample")).into_owned());
        }
    }
    assert!(texts.len() > 10);
    for t in texts {
        assert_same(&t);
    }
}

#[test]
fn corner_cases_report_the_same() {
    let cases = [
        // A duplicate only one director sees, an `@` line inside a virtual server, a
        // director first named after blocks it saw as an unnamed one would.
        "virtual_server 198.18.1.1 80 {\n lb_kind DR\n real_server 198.18.2.1 80 {\n  weight 2\n }\n}\n\
         @lvs02 virtual_server 198.18.1.1 80 {\n lb_kind NAT\n}\n\
         virtual_server 198.18.1.2 80 {\n lb_kind DR\n real_server 198.18.2.2 81 {\n  @lvs03 weight 3\n }\n}\n\
         vrrp_instance VI_1 {\n interface ens33\n virtual_router_id 51\n @lvs01 priority 110\n @lvs01 state MASTER\n @lvs03 priority 120\n virtual_ipaddress {\n  198.18.116.134\n }\n}\n",
        // A group used before it is defined, a group never defined, one defined for one
        // director only.
        "virtual_server group G1 {\n real_server 198.18.2.1 80 {\n  TCP_CHECK {\n  }\n }\n}\n\
         virtual_server group G2 {\n}\n\
         virtual_server group G3 {\n}\n\
         virtual_server_group G1 {\n 198.18.1.9 80\n}\n\
         virtual_server_group G3 {\n @lvs01 198.18.1.10 80\n}\n",
        // Errors, unknown keywords (with suggestions), conditional lines at the top,
        // an unclosed block.
        "@lvs01 frobnicate 1\nglobal_defs {\n @lvs02 router_id A\n routr_id B\n}\n\
         virtual_server 198.18.1.3 80 {\n lb_kind XX\n lb_algo wrr\n real_server 198.18.2.3 80 {\n  weight ten\n }\n}\n\
         virtual_server 198.18.1.3 80 {\n}\nvirtual_server nonsense {\n}\nvirtual_server 198.18.1.4 80 {\n",
        // Extra closing braces and a `{` with no keyword.
        "}\n{\n a 1\n}\nvirtual_server 198.18.1.5 80 {\n persistence_granularity 255.255.255.0\n}\n",
    ];
    for c in cases {
        assert_same(c);
    }
}

/// One top-level block of a random cluster file.
fn block() -> impl Strategy<Value = String> {
    let node = prop_oneof![
        Just(""),
        Just("@lvs01 "),
        Just("@lvs02 "),
        Just("@^lvs01 "),
        Just("@lvs03 ")
    ];
    let key = prop_oneof![
        Just("198.18.1.1 80"),
        Just("198.18.1.2 80"),
        Just("fwmark 7"),
        Just("group G1"),
        Just("group G2"),
    ];
    let kind = prop_oneof![Just("DR"), Just("NAT"), Just("XX")];
    let vs = (node.clone(), key, kind, node.clone(), 0u32..3, 79u16..82, any::<bool>()).prop_map(
        |(head, key, kind, inner, weight, port, check)| {
            let check = if check { "  TCP_CHECK {\n   connect_timeout 3\n  }\n" } else { "" };
            format!(
                "{head}virtual_server {key} {{\n lb_kind {kind}\n real_server 198.18.2.1 {port} {{\n  {inner}weight {weight}\n{check} }}\n}}\n"
            )
        },
    );
    let group = (prop_oneof![Just("G1"), Just("G2")], node.clone())
        .prop_map(|(g, n)| format!("virtual_server_group {g} {{\n {n}198.18.1.9 80\n}}\n"));
    let vrrp = (prop_oneof![Just("VI_1"), Just("VI_2")], node.clone(), node.clone(), 1u8..3).prop_map(
        |(name, n1, n2, vrid)| {
            format!(
                "vrrp_instance {name} {{\n interface ens33\n virtual_router_id 5{vrid}\n {n1}state MASTER\n {n2}priority 120\n virtual_ipaddress {{\n  198.18.116.13{vrid}\n }}\n}}\n"
            )
        },
    );
    let global = node
        .clone()
        .prop_map(|n| format!("global_defs {{\n {n}router_id R\n {n}vrrp_strict\n}}\n"));
    let odd = (
        node,
        prop_oneof![Just("frobnicate 1"), Just("lvs_id X"), Just("}"), Just("{")],
    )
        .prop_map(|(n, l)| format!("{n}{l}\n"));
    prop_oneof![4 => vs, 1 => group, 2 => vrrp, 1 => global, 1 => odd]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_cluster_files_report_the_same(blocks in proptest::collection::vec(block(), 0..12)) {
        let text = blocks.concat();
        for extra in [vec![], vec!["lvs09".to_string()]] {
            let (whole, streamed) = both(&text, &extra);
            prop_assert_eq!(streamed, whole, "extra nodes {:?}, file:\n{}", extra, text);
        }
    }
}

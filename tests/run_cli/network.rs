//! `corral run --net open|none`: the run's own network namespace, built around the run
//! and removed after it; nothing inside can change it. (Reachability and the firewall
//! are tested against the daemon with servers the test creates: tests/daemon/network.rs.)

use crate::common::{ok_stdout, Env};

const SCRIPT: &str = "/usr/sbin/ip -4 -o addr show dev eth0 | awk '{print $4}'; \
    /usr/sbin/ip route show default; \
    /usr/sbin/ip addr add 10.99.0.1/32 dev eth0 2>/dev/null && echo CHANGED; \
    /usr/sbin/ip route del default 2>/dev/null && echo CHANGED; \
    /usr/sbin/ip link set eth0 down 2>/dev/null && echo CHANGED; true";

#[test]
fn open_gets_a_fixed_network_that_is_removed_after_the_run() {
    let env = Env::new();
    let v = env.sh(&["--net", "open", "--user", "root"], SCRIPT);
    let out = ok_stdout(&v);
    assert!(!out.contains("CHANGED"), "{out}");
    let addr = out.lines().next().unwrap().trim();
    assert!(
        addr.starts_with("10.204.") && addr.ends_with("/30"),
        "{out}"
    );
    assert!(out.contains("default via 10.204."), "{out}");
    let o: Vec<u32> = addr
        .trim_end_matches("/30")
        .split('.')
        .map(|x| x.parse().unwrap())
        .collect();
    let slot = (o[2] * 256 + o[3]) / 4;
    assert!(!std::path::Path::new(&format!("/run/netns/crlr{slot}-{slot}")).exists());
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&format!("crlr{slot}h{slot}@")));
}

#[test]
fn none_is_loopback_only_and_unknown_modes_are_refused() {
    let env = Env::new();
    let v = env.sh(
        &[],
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '",
    );
    assert_eq!(ok_stdout(&v).trim(), "lo");
    let (v, code) = env.json(&["--net", "bogus"], &["true"]);
    assert_eq!(code, 125);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--net open"),
        "{v}"
    );
}

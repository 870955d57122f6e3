//! Mounts.

#[allow(unused_imports)]
use super::helpers::*;

#[test]
fn mount_ro_is_readable_and_erofs() {
    let env = Env::new();
    let d = host_dir();
    std::fs::write(d.path().join("in.txt"), "from the host\n").unwrap();
    std::fs::set_permissions(
        d.path().join("in.txt"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let spec = format!("{}:/srv/data", d.path().display());
    let code = "import os\n\
        print(open('/srv/data/in.txt').read(), end='')\n\
        for p, m in (('/srv/data/in.txt', 'a'), ('/srv/data/new.txt', 'w')):\n\
        \x20   try:\n\
        \x20       open(p, m).write('x')\n\
        \x20       print('wrote', p)\n\
        \x20   except OSError as e:\n\
        \x20       print(e.errno)\n";
    let ro = format!("{spec}:ro");
    for m in [spec.as_str(), ro.as_str()] {
        let opts = ["--mount", m];
        let v = env.py(&opts, code);
        assert_eq!(ok_stdout(&v), "from the host\n30\n30", "{opts:?}: {v}");
    }
    assert_eq!(
        std::fs::read_to_string(d.path().join("in.txt")).unwrap(),
        "from the host\n"
    );
    assert!(!d.path().join("new.txt").exists());
    assert!(env.leftover_cgroups().is_empty());
}

#[test]
fn mount_rw_writes_reach_the_host() {
    let env = Env::new();
    let d = host_dir();
    std::fs::write(d.path().join("log"), "host\n").unwrap();
    std::fs::set_permissions(d.path().join("log"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let spec = format!("{}:/srv/rw:rw", d.path().display());
    let v = env.sh(
        &["--mount", &spec],
        "echo sandbox >> /srv/rw/log && echo made > /srv/rw/new && mkdir /srv/rw/sub && echo ok",
    );
    assert_eq!(ok_stdout(&v), "ok");
    assert_eq!(
        std::fs::read_to_string(d.path().join("log")).unwrap(),
        "host\nsandbox\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("new")).unwrap(),
        "made\n"
    );
    assert!(d.path().join("sub").is_dir());
}

#[test]
fn file_mounts_ro_and_rw() {
    let env = Env::new();
    let d = host_dir();
    let f = d.path().join("conf.txt");
    std::fs::write(&f, "v1\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
    let ro = format!("{}:/etc/corral-test.conf", f.display());
    let v = env.sh(
        &["--mount", &ro],
        "cat /etc/corral-test.conf; echo x >> /etc/corral-test.conf 2>/dev/null || echo refused",
    );
    assert_eq!(ok_stdout(&v), "v1\nrefused");
    let v = env.py(
        &["--mount", &ro],
        "import errno\ntry:\n open('/etc/corral-test.conf','a')\n print('opened')\n\
         except OSError as e:\n print(errno.errorcode[e.errno])",
    );
    assert_eq!(ok_stdout(&v), "EROFS");
    let rw = format!("{}:/srv/one/file.txt:rw", f.display());
    let v = env.sh(&["--mount", &rw], "echo v2 >> /srv/one/file.txt && echo ok");
    assert_eq!(ok_stdout(&v), "ok");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "v1\nv2\n");
}

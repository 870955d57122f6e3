//! Host files: nothing of the host's file system is visible or writable.

#[allow(unused_imports)]
use super::probe::*;

const HOST_READS: &str = r#"
    host_file, state, runtime = sys.argv[1:4]
    t('host_file', lambda: open(host_file).read())
    t('host_file_listed', lambda: os.path.basename(host_file) in os.listdir('/tmp'))
    t('etc_shadow', lambda: open('/etc/shadow').read())
    t('etc_gshadow', lambda: open('/etc/gshadow').read())
    t('etc_machine_id', lambda: open('/etc/machine-id').read())
    t('etc_ssh', lambda: os.listdir('/etc/ssh'))
    t('root_home', lambda: os.listdir('/root'))
    t('var_lib', lambda: os.listdir('/var/lib'))
    t('work', lambda: os.listdir('/work'))
    t('state_dir', lambda: os.listdir(state))
    t('runtime_dir', lambda: os.listdir(runtime))
    t('host_root_files', lambda: sorted(os.listdir('/')))
"#;

pub(crate) const SANDBOX_ROOT_LISTING: &str =
    "['bin', 'dev', 'etc', 'home', 'lib', 'lib64', 'mnt', 'opt', 'proc', 'root', 'run', 'sbin', 'tmp', 'usr', 'var']";

fn host_files_probe(env: &Env, opts: &[&str], root_home: &str) {
    let host_file = HostPath(unique_host_path("host-secret"));
    std::fs::write(&host_file.0, "host secret").unwrap();
    let v = py(
        env,
        opts,
        HOST_READS,
        &[
            host_file.0.to_str().unwrap(),
            env.state.path().to_str().unwrap(),
            env.runtime.path().to_str().unwrap(),
        ],
    );
    expect(
        &v,
        &[
            ("host_file", "ENOENT"),
            ("host_file_listed", "False"),
            ("etc_shadow", "ENOENT"),
            ("etc_gshadow", "ENOENT"),
            ("etc_machine_id", "ENOENT"),
            ("etc_ssh", "ENOENT"),
            ("root_home", root_home),
            ("var_lib", "ENOENT"),
            ("work", "ENOENT"),
            ("state_dir", "ENOENT"),
            ("runtime_dir", "ENOENT"),
            ("host_root_files", SANDBOX_ROOT_LISTING),
        ],
    );
}

/// A file the test puts in the host's /tmp, /etc/shadow, the host's /root, /work and
/// corral's own state and runtime dirs are all absent inside (ENOENT); the sandbox's
/// /root is the template's, closed to uid 1000 (EACCES).
#[test]
fn host_files_are_invisible() {
    host_files_probe(&Env::new(), &[], "EACCES");
}

/// The same as root inside: nothing of the host, and the sandbox's own /root is empty.
#[test]
fn host_files_are_invisible_as_root() {
    host_files_probe(&Env::new(), ROOT, "[]");
}

const HOST_WRITE_DIRS: &[&str] = &[
    "/",
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/dev",
    "/proc",
    "/run",
    "/home",
    "/home/sandbox",
    "/root",
    "/mnt",
    "/opt",
    "/etc",
    "/usr",
    "/usr/bin",
    "/usr/local",
    "/lib",
    "/bin",
];

/// Tries to create `name` in every top-level directory and a few more, by open(O_CREAT),
/// mkdir, symlink and mknod(S_IFREG); then checks on the host that no such name appeared
/// anywhere the sandbox's paths could map to (the host's own directories, corral's state
/// dir with the template, its runtime dir).
fn host_writes_probe(opts: &[&str], expected: &[(&str, &str)]) {
    let env = Env::new();
    let name = marker("write");
    let body = r#"
        name = sys.argv[1]
        dirs = sys.argv[2:]
        for d in dirs:
            p = os.path.join(d, name)
            t('create:' + d, lambda: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)))
        t('mkdir:/usr', lambda: os.mkdir('/usr/' + name))
        t('symlink:/usr/bin', lambda: os.symlink('/tmp', '/usr/bin/' + name))
        t('mknod:/etc', lambda: os.mknod('/etc/' + name, 0o100644))
        t('link:/usr', lambda: os.link('/tmp/' + name, '/usr/' + name))
    "#;
    let mut args = vec![name.as_str()];
    args.extend_from_slice(HOST_WRITE_DIRS);
    let v = py(&env, opts, body, &args);

    // On the host: nothing named `name` anywhere.
    let mut leaked: Vec<PathBuf> = [
        "/",
        "/tmp",
        "/var/tmp",
        "/dev/shm",
        "/dev",
        "/run",
        "/home",
        "/root",
        "/mnt",
        "/opt",
        "/etc",
        "/usr",
        "/usr/bin",
        "/usr/local",
        "/usr/lib",
        "/bin",
        "/var/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join(&name))
    .filter(|p| p.symlink_metadata().is_ok())
    .collect();
    leaked.extend(find_named(env.state.path(), &name));
    leaked.extend(find_named(env.runtime.path(), &name));
    for p in &leaked {
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_dir(p);
    }
    assert!(
        leaked.is_empty(),
        "sandbox writes reached the host: {leaked:?}"
    );
    expect(&v, expected);
}

/// uid 1000 can create files only in its own writable places (/tmp, /var/tmp, /dev/shm,
/// its home), none of which is the host's; the template's directories are closed
/// (EACCES), /usr and /dev are read-only mounts (EROFS, also for mkdir, symlink and a
/// hard link into /usr), /proc takes no new files (ENOENT). Nothing appears on the host.
#[test]
fn writes_never_reach_the_host() {
    host_writes_probe(
        &[],
        &[
            ("create:/", "EACCES"),
            ("create:/tmp", "ok"),
            ("create:/var/tmp", "ok"),
            ("create:/dev/shm", "ok"),
            ("create:/dev", "EROFS"),
            ("create:/proc", "ENOENT"),
            ("create:/run", "EACCES"),
            ("create:/home", "EACCES"),
            ("create:/home/sandbox", "ok"),
            ("create:/root", "EACCES"),
            ("create:/mnt", "EACCES"),
            ("create:/opt", "EACCES"),
            ("create:/etc", "EACCES"),
            ("create:/usr", "EROFS"),
            ("create:/usr/bin", "EROFS"),
            ("create:/usr/local", "EROFS"),
            ("create:/lib", "EROFS"),
            ("create:/bin", "EROFS"),
            ("mkdir:/usr", "EROFS"),
            ("symlink:/usr/bin", "EROFS"),
            ("mknod:/etc", "EACCES"),
            ("link:/usr", "EROFS"),
        ],
    );
}

/// The same as root inside: the template's directories belong to the sandbox's root
/// (its mapped host id), so root writes them in the writable layer (the mknod probe
/// then finds the name the create probe made: EEXIST); / itself is closed by Landlock
/// (EACCES); /usr and /dev stay read-only. Nothing appears on the host.
#[test]
fn writes_never_reach_the_host_as_root() {
    host_writes_probe(
        ROOT,
        &[
            ("create:/", "EACCES"),
            ("create:/tmp", "ok"),
            ("create:/var/tmp", "ok"),
            ("create:/dev/shm", "ok"),
            ("create:/dev", "EROFS"),
            ("create:/proc", "ENOENT"),
            ("create:/run", "ok"),
            ("create:/home", "ok"),
            ("create:/home/sandbox", "ok"),
            ("create:/root", "ok"),
            ("create:/mnt", "ok"),
            ("create:/opt", "ok"),
            ("create:/etc", "ok"),
            ("create:/usr", "EROFS"),
            ("create:/usr/bin", "EROFS"),
            ("create:/usr/local", "EROFS"),
            ("create:/lib", "EROFS"),
            ("create:/bin", "EROFS"),
            ("mkdir:/usr", "EROFS"),
            ("symlink:/usr/bin", "EROFS"),
            ("mknod:/etc", "EEXIST"),
            ("link:/usr", "EROFS"),
        ],
    );
}

/// What one run writes into the writable layer is gone in the next run of the same
/// template, and the template on the host never holds it.
#[test]
fn the_template_is_not_modified_by_a_run() {
    let env = Env::new();
    let name = marker("persist");
    let body = r#"
        name = sys.argv[2]
        paths = ['/root/' + name, '/home/sandbox/' + name, '/tmp/' + name, '/var/tmp/' + name]
        if sys.argv[1] == 'write':
            for p in paths:
                t('write:' + p.replace(name, 'X'), lambda: open(p, 'w').write('persist?') and None)
        else:
            for p in paths:
                t('read:' + p.replace(name, 'X'), lambda: open(p).read())
    "#;
    let v = py(&env, ROOT, body, &["write", &name]);
    expect(
        &v,
        &[
            ("write:/root/X", "ok"),
            ("write:/home/sandbox/X", "ok"),
            ("write:/tmp/X", "ok"),
            ("write:/var/tmp/X", "ok"),
        ],
    );
    let v = py(&env, ROOT, body, &["read", &name]);
    expect(
        &v,
        &[
            ("read:/root/X", "ENOENT"),
            ("read:/home/sandbox/X", "ENOENT"),
            ("read:/tmp/X", "ENOENT"),
            ("read:/var/tmp/X", "ENOENT"),
        ],
    );
    let found = find_named(env.state.path(), &name);
    assert!(
        found.is_empty(),
        "the template on the host changed: {found:?}"
    );
}

/// Root inside cannot change the host's /usr by any route: it is a read-only bind
/// (EROFS for chown, chmod, utime, rename, unlink, mkdir, setxattr), the files belong
/// to the unmapped host root (EACCES to open for writing or truncate, whose permission
/// check comes first) and /usr is another mount (EXDEV for a hard link to it from /tmp).
#[test]
fn usr_cannot_be_modified_as_root() {
    let env = Env::new();
    let before = std::fs::metadata("/usr/bin/python3").unwrap();
    let body = r#"
        f = '/usr/bin/python3'
        t('open_write', lambda: os.close(os.open(f, os.O_WRONLY)))
        t('truncate', lambda: os.truncate(f, 0))
        t('chown', lambda: os.chown(f, 0, 0))
        t('chmod', lambda: os.chmod(f, 0o4777))
        t('utime', lambda: os.utime(f, (0, 0)))
        t('rename', lambda: os.rename(f, '/usr/bin/p'))
        t('unlink', lambda: os.unlink(f))
        t('mkdir', lambda: os.mkdir('/usr/newdir'))
        t('setxattr', lambda: os.setxattr(f, 'user.x', b'1'))
        t('link_to_tmp', lambda: os.link(f, '/tmp/py'))
    "#;
    let v = py(&env, ROOT, body, &[]);
    expect(
        &v,
        &[
            ("open_write", "EACCES"),
            ("truncate", "EACCES"),
            ("chown", "EROFS"),
            ("chmod", "EROFS"),
            ("utime", "EROFS"),
            ("rename", "EROFS"),
            ("unlink", "EROFS"),
            ("mkdir", "EROFS"),
            ("setxattr", "EROFS"),
            ("link_to_tmp", "EXDEV"),
        ],
    );
    let after = std::fs::metadata("/usr/bin/python3").unwrap();
    assert_eq!(before.permissions().mode(), after.permissions().mode());
    assert_eq!(before.len(), after.len());
}

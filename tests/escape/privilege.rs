//! Privilege: setuid, uid changes, rlimits, chroot.

#[allow(unused_imports)]
use super::files::SANDBOX_ROOT_LISTING;
use super::probe::*;

/// A host directory mounted in with two setuid copies of `id`: one owned by the host's
/// root (unmapped inside), one setuid+setgid to the host uid that root inside maps to
/// (so root inside, were the bit honoured). Run by uid 1000, both report uid 1000 and
/// no euid: the mount is nosuid and no_new_privs is set.
#[test]
fn setuid_root_binary_on_a_mount_does_not_elevate() {
    let env = Env::new();
    let dir = HostPath(unique_host_path("suid"));
    std::fs::create_dir(&dir.0).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host_root = dir.0.join("id-host-root");
    let sandbox_root = dir.0.join("id-sandbox-root");
    for (p, uid, mode) in [
        (&host_root, 0, 0o4755),
        (&sandbox_root, HOST_UID_ROOT, 0o6755),
    ] {
        std::fs::copy("/usr/bin/id", p).unwrap();
        std::os::unix::fs::chown(p, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mount = format!("{}:/mnt/suid:rw", dir.0.display());
    let body = r#"
        import subprocess
        for n in ('id-host-root', 'id-sandbox-root'):
            p = '/mnt/suid/' + n
            st = os.stat(p)
            print(n + ':mode', oct(st.st_mode & 0o7777), st.st_uid)
            print(n + ':id', subprocess.run([p], capture_output=True, text=True).stdout.strip())
        for l in open('/proc/self/mountinfo'):
            f = l.split()
            if f[4] == '/mnt/suid':
                print('mount_nosuid', 'nosuid' in f[5].split(','))
        print('no_new_privs', [l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0])
    "#;
    let v = py(&env, &["--mount", &mount], body, &[]);
    let id = "uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)";
    expect(
        &v,
        &[
            ("id-host-root:mode", "0o4755 65534"),
            ("id-host-root:id", id),
            ("id-sandbox-root:mode", "0o6755 0"),
            ("id-sandbox-root:id", id),
            ("mount_nosuid", "True"),
            ("no_new_privs", "1"),
        ],
    );
}

/// The host's own setuid-root binaries (in the bound /usr) run without privilege: the
/// bit is there, but `mount` says "must be superuser" (exit 32) and nothing is mounted;
/// setuid/setgid/setgroups to root are EPERM.
#[test]
fn host_setuid_binaries_do_not_elevate() {
    let env = Env::new();
    let mount_is_suid = std::fs::metadata("/usr/bin/mount")
        .map(|m| m.permissions().mode() & 0o4000 != 0)
        .unwrap_or(false);
    let body = r#"
        import subprocess
        before = open('/proc/self/mountinfo').read()
        if os.path.exists('/usr/bin/mount') and os.stat('/usr/bin/mount').st_mode & 0o4000:
            os.makedirs('/tmp/m', exist_ok=True)
            r = subprocess.run(['/usr/bin/mount', '-t', 'tmpfs', 'none', '/tmp/m'], capture_output=True, text=True)
            print('mount_exit', r.returncode)
            print('mount_says_superuser', 'must be superuser' in r.stderr)
        print('mounts_unchanged', open('/proc/self/mountinfo').read() == before)
        t('setuid0', lambda: os.setuid(0))
        t('setresuid0', lambda: os.setresuid(0, 0, 0))
        t('setgid0', lambda: os.setgid(0))
        t('setgroups0', lambda: os.setgroups([0]))
        for l in open('/proc/self/mountinfo'):
            f = l.split()
            if f[4] == '/usr':
                print('usr_nosuid', 'nosuid' in f[5].split(','))
    "#;
    let v = py(&env, &[], body, &[]);
    let mut want = vec![
        ("mounts_unchanged", "True"),
        ("setuid0", "EPERM"),
        ("setresuid0", "EPERM"),
        ("setgid0", "EPERM"),
        ("setgroups0", "EPERM"),
        ("usr_nosuid", "True"),
    ];
    if mount_is_suid {
        want.push(("mount_exit", "32"));
        want.push(("mount_says_superuser", "True"));
    }
    expect(&v, &want);
}

/// Root inside makes setuid-root copies of `id` in /tmp and in the home directory and
/// runs them after dropping to uid 1000: they still report uid 1000 (nosuid mounts,
/// no_new_privs).
#[test]
fn setuid_bit_set_by_sandbox_root_is_ignored() {
    let body = r#"
        import shutil, subprocess
        def drop():
            os.setgroups([])
            os.setgid(1000)
            os.setuid(1000)
        for d in ('/tmp', '/home/sandbox', '/dev/shm'):
            p = d + '/id'
            shutil.copy('/usr/bin/id', p)
            os.chown(p, 0, 0)
            os.chmod(p, 0o6755)
            st = os.stat(p)
            print(d + ':mode', oct(st.st_mode & 0o7777), st.st_uid)
            print(d + ':id', subprocess.run([p], capture_output=True, text=True, preexec_fn=drop).stdout.strip())
    "#;
    let v = py(&Env::new(), ROOT, body, &[]);
    let id = "uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)";
    expect(
        &v,
        &[
            ("/tmp:mode", "0o6755 0"),
            ("/tmp:id", id),
            ("/home/sandbox:mode", "0o6755 0"),
            ("/home/sandbox:id", id),
            ("/dev/shm:mode", "0o6755 0"),
            ("/dev/shm:id", id),
        ],
    );
}

/// Root inside lacks CAP_SYS_RESOURCE: the hard limits corral set (nofile 1024, fsize =
/// --disk, core 0) cannot be raised (EPERM), and core dumps stay off.
#[test]
fn rlimits_cannot_be_raised_as_root() {
    let body = r#"
        def setrl(res, soft, hard):
            lim = (ctypes.c_ulong * 2)(soft, hard)
            ctypes.set_errno(0)
            r = libc.setrlimit(res, lim)
            return 'ok' if r == 0 else en(ctypes.get_errno())
        def getrl(res):
            lim = (ctypes.c_ulong * 2)()
            libc.getrlimit(res, lim)
            return '%d %d' % (lim[0], lim[1])
        INF = (1 << 64) - 1
        print('nofile', setrl(7, 4096, 4096))
        print('fsize', setrl(1, INF, INF))
        print('core', setrl(4, INF, INF))
        print('nofile_now', getrl(7))
        print('core_now', getrl(4))
    "#;
    let v = py(&Env::new(), &["--user", "root", "--disk", "64M"], body, &[]);
    expect(
        &v,
        &[
            ("nofile", "EPERM"),
            ("fsize", "EPERM"),
            ("core", "EPERM"),
            ("nofile_now", "1024 1024"),
            ("core_now", "0 0"),
        ],
    );
}

/// chroot(2) is EPERM for uid 1000 (the filter denies it to the sandbox user).
#[test]
fn chroot_is_denied_for_the_sandbox_user() {
    let body = r#"
        t('chroot_tmp', lambda: os.chroot('/tmp'))
        t('chroot_root', lambda: os.chroot('/'))
        print('chroot_bad', sc(161, 1))
    "#;
    let v = py(&Env::new(), &[], body, &[]);
    expect(
        &v,
        &[
            ("chroot_tmp", "EPERM"),
            ("chroot_root", "EPERM"),
            ("chroot_bad", "EPERM"),
        ],
    );
}

/// Root inside may chroot, and the classic chroot breakout (chroot into a subdir, keep a
/// directory fd outside it, climb `..`) works, but only leads back to the sandbox's own
/// root (pivot_root, not chroot, confines it): the host is not there.
#[test]
fn chroot_breakout_as_root_stays_in_the_sandbox() {
    let env = Env::new();
    let host_file = HostPath(unique_host_path("chroot"));
    std::fs::write(&host_file.0, "host").unwrap();
    let body = r#"
        os.makedirs('/tmp/jail', exist_ok=True)
        out = os.open('/', os.O_RDONLY)
        os.chroot('/tmp/jail')
        print('jailed', os.listdir('/'))
        os.fchdir(out)
        for _ in range(64):
            os.chdir('..')
        os.chroot('.')
        print('root', sorted(os.listdir('/')))
        print('home_sandbox', os.path.isdir('/home/sandbox'))
        t('host_file', lambda: open(sys.argv[1]).read())
        t('work', lambda: os.listdir('/work'))
    "#;
    let v = py(&env, ROOT, body, &[host_file.0.to_str().unwrap()]);
    expect(
        &v,
        &[
            ("jailed", "[]"),
            ("root", SANDBOX_ROOT_LISTING),
            ("home_sandbox", "True"),
            ("host_file", "ENOENT"),
            ("work", "ENOENT"),
        ],
    );
}

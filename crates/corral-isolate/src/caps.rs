//! Linux capabilities: what the command keeps (nothing for the sandbox user; a small,
//! namespace-local set for `--user root`).

use std::io;

use crate::spec::SandboxUser;

/// Capabilities `--user root` keeps, inside its own user namespace only: enough to own
/// and manage files in the writable layer and to switch to other in-sandbox users.
/// Docker's default set minus MKNOD, NET_RAW, AUDIT_WRITE and SETFCAP.
const ROOT_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    18, // CAP_SYS_CHROOT
];

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

pub(crate) const fn mask(caps: &[u32]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < caps.len() {
        m |= 1u64 << caps[i];
        i += 1;
    }
    m
}

/// Sets effective = permitted = `set`, inheritable = none, for the calling thread.
pub(crate) fn capset(set: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let lo = set as u32;
    let hi = (set >> 32) as u32;
    let data = [
        CapData {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        CapData {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    // SAFETY: header and data are live, correctly laid out (#[repr(C)]) v3 structures;
    // data has the two elements the v3 ABI reads.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn prctl(op: libc::c_int, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the PR_CAP_AMBIENT/PR_CAPBSET_DROP/PR_SET_* operations used here take
    // integer arguments only; no memory is passed to the kernel.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::prctl(
            op,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The calling thread's bounding set (from /proc/thread-self/status, CapBnd).
fn current_bounding() -> u64 {
    crate::procfs::read_small("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// Drops the bounding set to `keep`, clears ambient capabilities. Needs CAP_SETPCAP.
/// Only capabilities still in the set are dropped (one prctl each).
pub(crate) fn bound_to(keep: u64) -> io::Result<()> {
    bound_from(current_bounding(), keep)
}

/// [`bound_to`] when the current bounding set is already known to be within `present`.
fn bound_from(present: u64, keep: u64) -> io::Result<()> {
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )
    .or_else(|e| {
        // Kernels without ambient capabilities have nothing to clear.
        if e.raw_os_error() == Some(libc::EINVAL) {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 || present & (1 << cap) == 0 {
            continue;
        }
        match prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
            Ok(()) => {}
            // Past the kernel's last capability.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The capabilities a session's init keeps (bounding, permitted and effective), all of
/// them in the sandbox's own user namespace only: exactly sandbox root's set
/// ([`ROOT_CAPS`]), because init starts processes as sandbox root with that set and as
/// uid 1000 with none. Among them, CAP_SETUID/CAP_SETGID (switching to the requested
/// user), CAP_SETPCAP (narrowing the bounding set of a uid 1000 process), CAP_KILL
/// (signalling and finally killing processes of either user), CAP_CHOWN (giving a pty
/// to its user). Init itself never resolves a path, so CAP_DAC_OVERRIDE and CAP_FOWNER
/// are only there to be handed on to sandbox root's processes.
pub(crate) const SESSION_INIT_CAPS: u64 = mask(ROOT_CAPS);

/// The capabilities a command of `user` keeps.
pub(crate) fn command_set(user: SandboxUser) -> u64 {
    match user {
        SandboxUser::Sandbox => 0,
        SandboxUser::Root => mask(ROOT_CAPS),
    }
}

/// Becomes the sandbox's command identity: gid/uid, supplementary groups cleared,
/// capabilities reduced. Runs as uid 0 of the sandbox's user namespace.
/// `bounding` is the bounding set init holds (so only those are dropped, one prctl
/// each).
pub(crate) fn become_user(user: SandboxUser, bounding: u64) -> io::Result<()> {
    let id = user.id();
    let keep = command_set(user);
    bound_from(bounding, keep)?;
    nix::unistd::setgroups(&[]).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    let gid = nix::unistd::Gid::from_raw(id);
    let uid = nix::unistd::Uid::from_raw(id);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
    // For uid != 0 the kernel already cleared permitted/effective on setresuid; set them
    // explicitly in both cases so the outcome never depends on securebits.
    capset(keep)
}

/// CAP_KILL: init forwards signals to the command, which may run as another uid.
pub(crate) const CAP_KILL: u32 = 5;

/// Drops every capability of the in-sandbox init but CAP_KILL (of the sandbox's own
/// user namespace) once the command is started: from then on it only reaps, forwards
/// signals and reports.
pub(crate) fn drop_to_init_set() -> io::Result<()> {
    let keep = mask(&[CAP_KILL]);
    bound_to(keep)?;
    capset(keep)
}

/// A session's init, once its setup is done, keeps [`SESSION_INIT_CAPS`] only.
pub(crate) fn drop_to_session_set() -> io::Result<()> {
    bound_to(SESSION_INIT_CAPS)?;
    capset(SESSION_INIT_CAPS)
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1): execve can never grant privileges (setuid bits, file
/// capabilities) again.
pub(crate) fn set_no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}

/// prctl(PR_SET_DUMPABLE, 0): no /proc/PID/mem, fd or ptrace access by same-uid code.
pub(crate) fn set_not_dumpable() -> io::Result<()> {
    prctl(libc::PR_SET_DUMPABLE, 0)
}

/// prctl(PR_SET_PDEATHSIG, SIGKILL).
pub(crate) fn die_with_parent() -> io::Result<()> {
    prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_keeps_no_dangerous_capability() {
        let m = mask(ROOT_CAPS);
        for dangerous in [
            21, // CAP_SYS_ADMIN
            19, // CAP_SYS_PTRACE
            16, // CAP_SYS_MODULE
            17, // CAP_SYS_RAWIO
            12, // CAP_NET_ADMIN
            13, // CAP_NET_RAW
            27, // CAP_MKNOD
            2,  // CAP_DAC_READ_SEARCH (open_by_handle_at)
            25, // CAP_SYS_TIME
            22, // CAP_SYS_BOOT
            38, // CAP_PERFMON
            39, // CAP_BPF
        ] {
            assert_eq!(
                m & (1 << dangerous),
                0,
                "capability {dangerous} must not be kept"
            );
        }
        assert_eq!(m.count_ones() as usize, ROOT_CAPS.len());
    }
}

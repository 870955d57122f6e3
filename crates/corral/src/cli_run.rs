//! `corral run`: one command in a fresh sandbox.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use corral_isolate::{
    Bind, Layer, Limits, OutputMode, RunOutcome, SandboxSpec, SandboxUser, StdinMode, Termination,
};
use corral_types::{parse_duration, parse_size, ErrorBody, RunResult};

use crate::{paths, EXIT_CORRAL_ERROR};

/// Options of `corral run`. Every default is the safe one.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: the command's own; 128+N if signal N killed it; 124 on \
timeout; 137 when the memory limit killed it; 127 when CMD is not found in the sandbox; \
126 when CMD is not executable; 125 when corral itself failed."
)]
pub(crate) struct RunArgs {
    /// Root file system template.
    #[arg(long, value_name = "NAME", default_value = "host")]
    template: String,
    /// Memory limit (no swap), e.g. 512M, 2G.
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = size, allow_hyphen_values = true)]
    memory: u64,
    /// CPU limit in CPUs, fractional allowed (0.5 = half a CPU).
    #[arg(long, value_name = "N", default_value = "1", value_parser = cpus, allow_hyphen_values = true)]
    cpus: u64,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N", default_value = "256", allow_hyphen_values = true, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    pids: u64,
    /// Wall-clock limit, e.g. 500ms, 60s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration, allow_hyphen_values = true)]
    timeout: Duration,
    /// Size cap of the writable layer (/, /tmp and /dev/shm together). Held in memory
    /// and charged to the sandbox's memory limit.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = size, allow_hyphen_values = true)]
    disk: u64,
    /// Network mode: `none` (loopback only), `open` (outbound access except to the
    /// host, other sandboxes, link-local/metadata and private deny ranges) or
    /// `allow=NAME[:PORT],...` (only those names, through corral's egress proxy;
    /// `*.NAME` = subdomains; no port = 443 and 80). See docs/network.md.
    #[arg(long, value_name = "MODE", default_value = "none")]
    net: String,
    /// With --net allow=...: the egress proxy resolves NAME to IPV4 instead of asking
    /// the system resolver (repeatable; trusted as given, like curl's --resolve).
    #[arg(long = "egress-resolve", value_name = "NAME=IPV4", value_parser = crate::cli_egress::parse_resolve)]
    egress_resolve: Vec<(String, std::net::Ipv4Addr)>,
    /// Bind a host path into the sandbox, HOST:SANDBOX[:ro|rw]; read-only unless :rw.
    #[arg(long = "mount", value_name = "HOST:SANDBOX[:ro|rw]", value_parser = mount)]
    mounts: Vec<Bind>,
    /// Working directory inside the sandbox (created if missing); default: the
    /// template's WORKDIR, else the home of the user.
    #[arg(long, value_name = "PATH")]
    workdir: Option<PathBuf>,
    /// Set an environment variable (repeatable; over the template's ENV); nothing of
    /// the caller's environment gets in otherwise.
    #[arg(long = "env", value_name = "K=V", value_parser = env_var)]
    env: Vec<(String, String)>,
    /// Identity inside: `sandbox` (uid 1000, no capabilities) or `root` (uid 0 inside
    /// the sandbox's user namespace only); default: the template's USER, else sandbox.
    #[arg(long, value_enum)]
    user: Option<UserArg>,
    /// Forward corral's standard input to the command (otherwise it reads /dev/null).
    #[arg(long)]
    stdin: bool,
    /// Per-stream output cap; the rest is dropped and reported as truncated.
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = size, allow_hyphen_values = true)]
    output_limit: u64,
    /// Print one JSON object with the result on stdout instead of streaming output.
    #[arg(long)]
    json: bool,
    /// Turn off an isolation layer (landlock, landlock-scopes, seccomp, cgroups), e.g.
    /// on a kernel that lacks it. Weakens the sandbox; repeatable; warned on stderr.
    #[arg(long = "dangerously-skip-layer", value_name = "LAYER", value_parser = layer)]
    skip_layers: Vec<Layer>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum UserArg {
    Sandbox,
    Root,
}

fn size(s: &str) -> Result<u64, String> {
    match parse_size(s) {
        Ok(0) => Err("size must be greater than 0".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if d.is_zero() => Err("duration must be greater than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn cpus(s: &str) -> Result<u64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid CPU count {s:?}: use a number such as 1, 2 or 0.5"))?;
    if !v.is_finite() || !(0.01..=1024.0).contains(&v) {
        return Err(format!("CPU count {s:?} out of range: use 0.01 to 1024"));
    }
    Ok((v * 1000.0).round() as u64)
}

fn env_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("invalid --env {s:?}: use NAME=VALUE")),
    }
}

fn layer(s: &str) -> Result<Layer, String> {
    Layer::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.name()).collect();
        format!("unknown layer {s:?}: use one of {}", names.join(", "))
    })
}

fn mount(s: &str) -> Result<Bind, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, sandbox, writable) = match parts.as_slice() {
        [h, t] => (*h, *t, false),
        [h, t, "ro"] => (*h, *t, false),
        [h, t, "rw"] => (*h, *t, true),
        [_, _, mode] => {
            return Err(format!(
                "invalid mount mode {mode:?} in {s:?}: use ro or rw"
            ))
        }
        _ => {
            return Err(format!(
                "invalid mount {s:?}: use HOST:SANDBOX[:ro|rw] with absolute paths"
            ))
        }
    };
    let source = PathBuf::from(host);
    if !source.is_absolute() {
        return Err(format!(
            "mount source {host:?} is relative: give an absolute host path"
        ));
    }
    if !source.exists() {
        return Err(format!(
            "mount source {host} does not exist on the host: give an existing path"
        ));
    }
    let target = PathBuf::from(sandbox);
    corral_isolate::validate_sandbox_path(&target, "mount target").map_err(|e| e.to_string())?;
    Ok(Bind {
        source,
        target,
        writable,
    })
}

fn fail(json: bool, code: &str, message: &str) -> ExitCode {
    let line = message.replace('\n', " ");
    eprintln!("corral: {line}");
    if json {
        let body = ErrorBody::new(code, line);
        if let Ok(s) = serde_json::to_string(&body) {
            println!("{s}");
        }
    }
    ExitCode::from(EXIT_CORRAL_ERROR)
}

pub(crate) fn main(args: RunArgs) -> ExitCode {
    let (open, allow) = match args.net.as_str() {
        "none" => (false, None),
        "open" => (true, None),
        other => match other.strip_prefix("allow=") {
            Some(rules) => match corral_net::parse_egress_rules(rules) {
                Ok(r) if !r.is_empty() => (false, Some(rules.to_string())),
                Ok(_) => {
                    return fail(
                        args.json,
                        "invalid_argument",
                        "--net allow= needs at least one destination, e.g. --net allow=pypi.org,files.pythonhosted.org",
                    )
                }
                Err(e) => return fail(args.json, "invalid_argument", &e.to_string()),
            },
            None => {
                return fail(
                    args.json,
                    "invalid_argument",
                    &format!(
                        "unknown network mode {other:?}; use --net none, --net open or --net allow=NAME[:PORT],..."
                    ),
                )
            }
        },
    };
    if allow.is_none() && !args.egress_resolve.is_empty() {
        return fail(
            args.json,
            "invalid_argument",
            "--egress-resolve is only for --net allow=...",
        );
    }
    // `name` pinned to the version it means now: its files and its config agree.
    let store = corral_sandbox::TemplateStore::new(&paths::state_dir(), paths::ID_MAP_BASE);
    let template = store
        .pin(&args.template)
        .unwrap_or_else(|_| args.template.clone());
    let rootfs = match corral_sandbox::resolve_template(
        &paths::state_dir(),
        &template,
        paths::ID_MAP_BASE,
    ) {
        Ok(r) => r,
        Err(e) => {
            let code = match e {
                corral_sandbox::TemplateError::Unknown(_) => "not_found",
                _ => "internal",
            };
            return fail(args.json, code, &corral_isolate::error_chain(&e));
        }
    };
    // The template's image config (ENV, WORKDIR, USER) is the default under the options.
    let config = match store.get(&template) {
        Ok(t) => t.config,
        Err(e) => return fail(args.json, "internal", &corral_isolate::error_chain(&e)),
    };
    let user = match (args.user, config.user.as_deref()) {
        (Some(UserArg::Root), _) | (None, Some("root")) => SandboxUser::Root,
        _ => SandboxUser::Sandbox,
    };
    let spec = SandboxSpec {
        argv: args.command.clone(),
        env: args.env.clone(),
        workdir: args
            .workdir
            .clone()
            .or_else(|| config.workdir.as_ref().map(PathBuf::from)),
        user,
        rootfs,
        mounts: args.mounts.clone(),
        limits: Limits {
            memory_bytes: args.memory,
            cpu_millis: args.cpus,
            pids: args.pids,
            disk_bytes: args.disk,
            timeout: args.timeout,
            ..Limits::default()
        },
        stdin: if args.stdin {
            StdinMode::Forward
        } else {
            StdinMode::Null
        },
        output: if args.json {
            OutputMode::Capture
        } else {
            OutputMode::Passthrough
        },
        output_limit: args.output_limit,
        hostname: "sandbox".into(),
        skip_layers: args.skip_layers.clone(),
        runtime_dir: paths::runtime_dir(),
        cgroup_parent: paths::cgroup_parent(),
        id_map_base: paths::ID_MAP_BASE,
        upper_dir: None,
        netns: None,
    };
    for l in &spec.skip_layers {
        eprintln!(
            "corral: warning: running without the {} layer (--dangerously-skip-layer)",
            l.name()
        );
    }
    // --net open: a network of the run's own, built here and removed when `net` is
    // dropped after the run (see corral-net's run.rs). --net allow=...: the same, with
    // the egress proxy in a helper process for the run's duration (cli_egress.rs).
    let mut spec = spec;
    let net: Option<Box<dyn std::any::Any>> = if let Some(rules) = &allow {
        match crate::cli_egress::attach_allow(&mut spec, rules, &args.egress_resolve) {
            Ok(n) => Some(Box::new(n)),
            Err(e) => return fail(args.json, "internal", &e),
        }
    } else if open {
        match corral_net::RunNet::create(
            &paths::runtime_dir().join("net"),
            corral_net::Cidr::RUN_DEFAULT,
            Vec::new(),
            None,
        ) {
            Ok(n) => {
                spec.netns = Some(n.lease().netns.clone());
                Some(Box::new(n))
            }
            Err(e) => {
                return fail(
                    args.json,
                    "internal",
                    &format!(
                        "building the run's network (needs root, iproute2 and nftables): {}",
                        corral_isolate::error_chain(&e)
                    ),
                )
            }
        }
    } else {
        None
    };
    // The template's ENV goes under --env and the egress proxy's variables (added above
    // for names not set): a template cannot turn corral's proxy settings off.
    for (k, v) in config.env.iter().filter_map(|e| e.split_once('=')) {
        if !spec.env.iter().any(|(e, _)| e == k) {
            spec.env.push((k.to_string(), v.to_string()));
        }
    }
    let result = corral_isolate::run(&spec);
    drop(net);
    match result {
        Ok(outcome) => report(&args, &outcome),
        Err(e) => {
            let code = match e {
                corral_isolate::RunError::InvalidSpec(_) => "invalid_argument",
                corral_isolate::RunError::LayerMissing { .. } => "layer_missing",
                corral_isolate::RunError::NotRoot => "permission_denied",
                _ => "internal",
            };
            fail(args.json, code, &corral_isolate::error_chain(&e))
        }
    }
}

fn report(args: &RunArgs, o: &RunOutcome) -> ExitCode {
    let code = o.exit_code();
    if args.json {
        let result = RunResult {
            exit_code: code,
            signal: o.signal(),
            timed_out: o.termination == Termination::TimedOut,
            oom_killed: o.oom_killed,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            stdout_truncated: o.stdout_truncated,
            stderr_truncated: o.stderr_truncated,
            duration_ms: o.duration.as_millis() as u64,
            peak_memory_bytes: o.peak_memory_bytes,
            cpu_time_ms: o.cpu_time.as_millis() as u64,
        };
        match serde_json::to_string(&result) {
            Ok(s) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{s}");
            }
            Err(e) => return fail(true, "internal", &format!("encoding the result: {e}")),
        }
    } else {
        let limit = human(args.output_limit);
        for (t, name) in [
            (o.stdout_truncated, "stdout"),
            (o.stderr_truncated, "stderr"),
        ] {
            if t {
                eprintln!("corral: {name} exceeded --output-limit {limit}; the rest was dropped");
            }
        }
        match o.termination {
            Termination::TimedOut => eprintln!(
                "corral: timed out after {:?} (--timeout); the sandbox was killed",
                args.timeout
            ),
            Termination::Interrupted(sig) => {
                eprintln!("corral: interrupted by signal {sig}; the sandbox was removed")
            }
            _ if o.oom_killed && code == 137 => eprintln!(
                "corral: the command hit the memory limit ({}) and was killed; raise --memory",
                human(args.memory)
            ),
            _ => {}
        }
    }
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn human(bytes: u64) -> String {
    for (unit, size) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_specs() {
        let b = mount("/tmp:/data").unwrap();
        assert!(!b.writable);
        assert!(mount("/tmp:/data:rw").unwrap().writable);
        assert!(mount("/tmp:/data:xx").unwrap_err().contains("use ro or rw"));
        assert!(mount("tmp:/data").unwrap_err().contains("relative"));
        assert!(mount("/nonexistent-corral-src:/d")
            .unwrap_err()
            .contains("does not exist"));
        assert!(mount("/tmp:data").unwrap_err().contains("relative"));
        assert!(mount("/tmp:/a/../b").unwrap_err().contains(".."));
        assert!(mount("/tmp").unwrap_err().contains("HOST:SANDBOX"));
    }

    #[test]
    fn cpu_and_env_values() {
        assert_eq!(cpus("0.5").unwrap(), 500);
        assert_eq!(cpus("2").unwrap(), 2000);
        assert!(cpus("0").is_err());
        assert!(cpus("x").is_err());
        assert_eq!(env_var("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(env_var("=x").is_err());
        assert!(env_var("novalue").is_err());
        assert_eq!(human(512 << 20), "512M");
    }
}

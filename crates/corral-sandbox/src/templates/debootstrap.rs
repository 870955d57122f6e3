//! Debian base templates built with debootstrap.
//!
//! `debootstrap` runs on the host, as root, into a work directory of the store, then
//! the tree is imported like a directory source (owners shifted into the sandbox id
//! range, device nodes skipped) and the work directory removed, on every path.
//!
//! It runs as `setpriv --pdeathsig KILL -- unshare --mount --propagation private --pid
//! --fork --kill-child --mount-proc -- debootstrap ...`:
//! - the mounts debootstrap makes in the target (/proc, /sys, /dev/pts) live in a
//!   private mount namespace and vanish with it, so a build cut short never leaves a
//!   mount on the host nor a mounted /proc under the store's work directory;
//! - it is pid 1 of a pid namespace of its own: when it dies, so does every dpkg and
//!   maintainer script it started; and if corral dies, the parent-death signal ends
//!   `unshare`, whose `--kill-child` ends debootstrap.
//!
//! Packages are verified by debootstrap against the host's Debian archive keyring
//! (the default); `--unpack-tarball` uses a tarball made earlier with
//! `debootstrap --make-tarball` (offline builds, and the tests).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::build::BuildEvent;
use super::TemplateStoreError;

/// What to bootstrap.
#[derive(Debug, Clone)]
pub struct Debootstrap {
    /// The Debian suite, e.g. `bookworm`.
    pub suite: String,
    /// The archive's URL; `None`: the host's own Debian mirror for `suite` (from
    /// /etc/apt/sources.list and sources.list.d). Unused with `tarball`.
    pub mirror: Option<String>,
    /// debootstrap's variant (`minbase` by default: required packages and apt).
    pub variant: String,
    /// Extra packages.
    pub include: Vec<String>,
    /// A tarball of the packages from `debootstrap --make-tarball` (no download).
    pub tarball: Option<PathBuf>,
}

/// The debootstrap binary.
const DEBOOTSTRAP: &str = "/usr/sbin/debootstrap";

impl Debootstrap {
    /// Checks every field before anything runs.
    pub(crate) fn validate(&self) -> Result<(), TemplateStoreError> {
        let word = |what: &str, v: &str, extra: &str| {
            let ok = !v.is_empty()
                && v.len() <= 64
                && v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c));
            if ok {
                Ok(())
            } else {
                Err(TemplateStoreError::InvalidName(format!(
                    "{what} {v:?}: use lowercase letters, digits and {extra:?} (e.g. bookworm, minbase, python3-numpy)"
                )))
            }
        };
        word("suite", &self.suite, "-")?;
        word("variant", &self.variant, "-")?;
        for p in &self.include {
            word("package", p, "+-.")?;
        }
        if let Some(m) = &self.mirror {
            let scheme_ok = ["http://", "https://", "file:///"]
                .iter()
                .any(|s| m.starts_with(s));
            if !scheme_ok || m.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(TemplateStoreError::InvalidName(format!(
                    "mirror {m:?}: give an http://, https:// or file:/// URL of a Debian archive"
                )));
            }
        }
        if let Some(t) = &self.tarball {
            if !t.is_file() {
                return Err(TemplateStoreError::BadSource {
                    path: t.clone(),
                    why: "no such file (make one with `debootstrap --make-tarball`)".into(),
                });
            }
        }
        Ok(())
    }

    /// The manifest's `source`.
    pub(crate) fn describe(&self, mirror: Option<&str>) -> String {
        let mut s = format!("debootstrap:{} variant={}", self.suite, self.variant);
        if !self.include.is_empty() {
            s.push_str(&format!(" include={}", self.include.join(",")));
        }
        match (&self.tarball, mirror) {
            (Some(t), _) => s.push_str(&format!(" tarball={}", t.display())),
            (None, Some(m)) => s.push_str(&format!(" mirror={m}")),
            (None, None) => {}
        }
        s
    }
}

/// The URL of the Debian archive that serves `suite` in the host's apt sources
/// (deb822 `*.sources` files and one-line `*.list` files), if any.
pub(crate) fn host_mirror(suite: &str) -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files.iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        if f.extension().is_some_and(|e| e == "sources") {
            mirror_in_deb822(&text, suite)
        } else {
            mirror_in_list(&text, suite)
        }
    })
}

/// A one-line `deb [opts] URL SUITE COMPONENTS` entry naming `suite`.
fn mirror_in_list(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace().peekable();
        if words.next()? != "deb" {
            return None;
        }
        if words.peek()?.starts_with('[') {
            // Options: `[arch=amd64 signed-by=...]`, possibly several words.
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        let url = words.next()?;
        (words.next()? == suite).then(|| url.to_string())
    })
}

/// A deb822 stanza with `Types: deb` whose `Suites` name `suite`.
fn mirror_in_deb822(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let types = field("Types")?;
        let suites = field("Suites")?;
        if !types.split_whitespace().any(|t| t == "deb")
            || !suites.split_whitespace().any(|s| s == suite)
        {
            return None;
        }
        field("URIs")?.split_whitespace().next().map(String::from)
    })
}

/// Runs debootstrap into `target` (which must not exist), reporting each line it
/// prints; on failure the error carries the end of its output and log.
pub(crate) fn bootstrap(
    spec: &Debootstrap,
    mirror: Option<&str>,
    target: &Path,
    progress: &mut dyn FnMut(BuildEvent),
) -> Result<(), TemplateStoreError> {
    if !Path::new(DEBOOTSTRAP).exists() {
        return Err(TemplateStoreError::BadSource {
            path: DEBOOTSTRAP.into(),
            why: "debootstrap is not installed (apt-get install debootstrap)".into(),
        });
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", "unshare"])
        .args(["--mount", "--propagation", "private", "--pid", "--fork"])
        .args(["--kill-child", "--mount-proc", "--", DEBOOTSTRAP])
        .arg(format!("--variant={}", spec.variant));
    if !spec.include.is_empty() {
        cmd.arg(format!("--include={}", spec.include.join(",")));
    }
    if let Some(t) = &spec.tarball {
        // debootstrap takes only an absolute path.
        let t = t
            .canonicalize()
            .map_err(|e| TemplateStoreError::BadSource {
                path: t.clone(),
                why: e.to_string(),
            })?;
        cmd.arg(format!("--unpack-tarball={}", t.display()));
    }
    cmd.arg(&spec.suite).arg(target);
    if spec.tarball.is_none() {
        if let Some(m) = mirror {
            cmd.arg(m);
        }
    }
    // debootstrap and dpkg need a plain environment: no locale or proxy settings of
    // the caller's leak into the template's maintainer scripts.
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C");
    let (reader, writer) =
        std::io::pipe().map_err(TemplateStoreError::io("creating a pipe for debootstrap"))?;
    let writer2 = writer
        .try_clone()
        .map_err(TemplateStoreError::io("creating a pipe for debootstrap"))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2));
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(TemplateStoreError::io(
        "starting debootstrap (needs util-linux's setpriv and unshare)",
    ))?;
    // The Command still holds the pipe's write ends: drop it so EOF comes when
    // debootstrap's side closes.
    drop(cmd);
    let mut tail: Vec<String> = Vec::new();
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        progress(BuildEvent::Output(format!("{line}\n").into_bytes()));
        tail.push(line);
        if tail.len() > 20 {
            tail.remove(0);
        }
    }
    let status = child
        .wait()
        .map_err(TemplateStoreError::io("waiting for debootstrap"))?;
    if status.success() {
        progress(BuildEvent::Done {
            step: 1,
            elapsed: started.elapsed(),
        });
        return Ok(());
    }
    let log = std::fs::read_to_string(target.join("debootstrap/debootstrap.log"))
        .map(|l| {
            let lines: Vec<&str> = l.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        })
        .unwrap_or_default();
    Err(TemplateStoreError::BadSource {
        path: target.to_path_buf(),
        why: format!(
            "debootstrap failed ({status}); nothing was imported. Its last lines:\n{}{}",
            tail.join("\n"),
            if log.is_empty() {
                String::new()
            } else {
                format!("\ndebootstrap.log:\n{log}")
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Debootstrap {
        Debootstrap {
            suite: "bookworm".into(),
            mirror: None,
            variant: "minbase".into(),
            include: vec!["python3-numpy".into(), "libstdc++6".into()],
            tarball: None,
        }
    }

    #[test]
    fn fields_are_checked_before_anything_runs() {
        assert!(spec().validate().is_ok());
        for bad in ["", "Bookworm", "../x", "a b", "-x", "bookworm;rm"] {
            let mut s = spec();
            s.suite = bad.into();
            assert!(s.validate().is_err(), "{bad:?}");
        }
        let mut s = spec();
        s.include = vec!["--foreign".into()];
        assert!(s.validate().is_err());
        for bad in ["ftp://x", "http://a b", "/srv/mirror", "file://relative"] {
            let mut s = spec();
            s.mirror = Some(bad.into());
            assert!(s.validate().is_err(), "{bad:?}");
        }
        let mut s = spec();
        s.mirror = Some("file:///srv/debian".into());
        assert!(s.validate().is_ok());
        s.tarball = Some("/nonexistent/x.tgz".into());
        assert!(s.validate().is_err());
    }

    #[test]
    fn the_hosts_mirror_is_found_in_both_formats() {
        let deb822 = "Types: deb\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in_deb822(deb822, "bookworm").as_deref(),
            Some("http://mirror.test/debian")
        );
        assert_eq!(
            mirror_in_deb822(deb822, "bookworm-security").as_deref(),
            Some("http://mirror.test/debian-security")
        );
        assert_eq!(mirror_in_deb822(deb822, "trixie"), None);
        assert_eq!(
            mirror_in_deb822(
                "Types: deb-src\nURIs: http://x/\nSuites: bookworm\n",
                "bookworm"
            ),
            None
        );
        let list = "# comment\ndeb-src http://src.test/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://list.test/debian bookworm main\n";
        assert_eq!(
            mirror_in_list(list, "bookworm").as_deref(),
            Some("http://list.test/debian")
        );
        assert_eq!(mirror_in_list(list, "trixie"), None);
    }

    #[test]
    fn the_source_says_how_it_was_built() {
        let s = spec();
        assert_eq!(
            s.describe(Some("http://m.test/debian")),
            "debootstrap:bookworm variant=minbase include=python3-numpy,libstdc++6 mirror=http://m.test/debian"
        );
    }
}

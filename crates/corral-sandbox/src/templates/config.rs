//! A template's image config: the environment, working directory and user that every
//! process started in its sandboxes begins with (a recipe's final ENV, WORKDIR and
//! USER; an OCI image's Env, WorkingDir and User). Checked once, when the template is
//! made, so a sandbox never meets a config it cannot apply.
//!
//! Users: a sandbox can be only `root` (uid 0) or `sandbox` (uid 1000); an OCI `User`
//! (`name`, `uid`, `name:group`, `uid:gid`) is resolved against the image's own
//! /etc/passwd and /etc/group and refused when it is anything else, rather than run as
//! someone the image did not ask for.

use std::fs;
use std::path::Path;

use corral_isolate::SandboxUser;
use corral_types::api::TemplateConfig;

use super::{TemplateSource, TemplateStoreError};

/// What a template contributes to the processes started in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ImageDefaults {
    /// `(KEY, value)` in the image's order (a later key wins).
    pub env: Vec<(String, String)>,
    /// Absolute working directory.
    pub workdir: Option<String>,
    /// The default user, when the image names one.
    pub user: Option<SandboxUser>,
}

impl ImageDefaults {
    /// From a manifest's recorded fields (already checked when it was written).
    pub(crate) fn from_recorded(env: &[String], workdir: Option<&str>, user: Option<u32>) -> Self {
        ImageDefaults {
            env: env
                .iter()
                .filter_map(|e| e.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workdir: workdir.map(str::to_string),
            user: user.map(sandbox_user),
        }
    }
}

/// The sandbox user of a uid corral maps (0 or 1000; the manifest holds no other).
fn sandbox_user(uid: u32) -> SandboxUser {
    if uid == 0 {
        SandboxUser::Root
    } else {
        SandboxUser::Sandbox
    }
}

/// The wire form of a manifest's recorded config.
pub(crate) fn to_api(env: &[String], workdir: Option<&str>, user: Option<u32>) -> TemplateConfig {
    TemplateConfig {
        env: env.to_vec(),
        workdir: workdir.map(str::to_string),
        user: user.map(|u| sandbox_user(u).name().to_string()),
    }
}

/// Why an image's config cannot be used (the import adds the source's path).
fn refuse(why: String) -> String {
    why
}

/// Checks an image's `Env`: every entry `KEY=value`, KEY non-empty, no NUL.
pub(crate) fn check_env(env: &[String]) -> Result<(), String> {
    for e in env {
        let ok = e
            .split_once('=')
            .is_some_and(|(k, _)| !k.is_empty() && !e.contains('\0'));
        if !ok {
            return Err(refuse(format!(
                "its Env entry {e:?} is not KEY=value (a non-empty name, no NUL)"
            )));
        }
    }
    Ok(())
}

/// Checks an image's `WorkingDir` and returns it as an absolute, normalized path
/// (`.` and empty components dropped; a relative one is taken from `/`, as Docker
/// does). `..` and NUL are refused.
pub(crate) fn check_workdir(w: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for c in w.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(refuse(format!(
                    "its WorkingDir {w:?} contains \"..\"; use an absolute path without it"
                )))
            }
            c if c.contains('\0') => {
                return Err(refuse(format!("its WorkingDir {w:?} contains a NUL byte")))
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Looks a name up in passwd- or group-style text: the id in the third field.
fn lookup(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name))
            .then(|| f.get(2).and_then(|id| id.parse().ok()))
            .flatten()
    })
}

/// Resolves an OCI `User` (`name`, `uid`, `name:group`, `uid:gid`) against the image's
/// /etc/passwd and /etc/group to the uid a sandbox runs as: 0 or 1000. The group, when
/// given, must be the user's own (0 for root, 1000 for sandbox).
pub(crate) fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<u32, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(passwd, user).ok_or_else(|| {
            refuse(format!(
                "its User {spec:?} names {user:?}, who is not in the image's /etc/passwd"
            ))
        })?,
    };
    if uid != 0 && uid != 1000 {
        return Err(refuse(format!(
            "its User {spec:?} is uid {uid}, but a corral sandbox runs only as root (uid 0) or \
             sandbox (uid 1000); rebuild the image with USER 1000 (or a user of uid 1000)"
        )));
    }
    if let Some(g) = grp {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(group, g).ok_or_else(|| {
                refuse(format!(
                    "its User {spec:?} names group {g:?}, which is not in the image's /etc/group"
                ))
            })?,
        };
        if gid != uid {
            return Err(refuse(format!(
                "its User {spec:?} asks for gid {gid}, but uid {uid} runs with gid {uid} in a \
                 corral sandbox; drop the group or use {uid}:{uid}"
            )));
        }
    }
    Ok(uid)
}

/// An imported image's WorkingDir, checked, and User, resolved against the /etc/passwd
/// and /etc/group of corral's layer `corral_layer` (the image's own, plus root and
/// sandbox). A config corral cannot apply refuses the import.
pub(super) fn image_config(
    source: &TemplateSource,
    image: &super::oci::Image,
    corral_layer: &Path,
) -> Result<(Option<String>, Option<u32>), TemplateStoreError> {
    let path = match source {
        TemplateSource::Dir(p) | TemplateSource::Oci(p) => p.clone(),
    };
    let bad = |why| TemplateStoreError::BadSource {
        path: path.clone(),
        why,
    };
    let workdir = image
        .workdir
        .as_deref()
        .map(check_workdir)
        .transpose()
        .map_err(bad)?;
    let user = match image.user.as_deref() {
        None => None,
        Some(spec) => {
            let read = |rel: &str| fs::read_to_string(corral_layer.join(rel)).unwrap_or_default();
            let uid = resolve_user(spec, &read("etc/passwd"), &read("etc/group")).map_err(bad)?;
            Some(uid)
        }
    };
    Ok((workdir, user))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n\
                          www:x:33:33::/var/www:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nnode:x:1000:\nwww:x:33:\n";

    #[test]
    fn users_resolve_by_name_or_number_and_only_to_mapped_ids() {
        assert_eq!(resolve_user("0", PASSWD, GROUP).unwrap(), 0);
        assert_eq!(resolve_user("root", PASSWD, GROUP).unwrap(), 0);
        assert_eq!(resolve_user("node", PASSWD, GROUP).unwrap(), 1000);
        assert_eq!(resolve_user("1000:1000", PASSWD, GROUP).unwrap(), 1000);
        assert_eq!(resolve_user("node:node", PASSWD, GROUP).unwrap(), 1000);
        let e = resolve_user("www", PASSWD, GROUP).unwrap_err();
        assert!(e.contains("uid 33") && e.contains("1000"), "{e}");
        let e = resolve_user("65532:65532", PASSWD, GROUP).unwrap_err();
        assert!(e.contains("uid 65532"), "{e}");
        let e = resolve_user("ghost", PASSWD, GROUP).unwrap_err();
        assert!(e.contains("not in the image's /etc/passwd"), "{e}");
        let e = resolve_user("1000:33", PASSWD, GROUP).unwrap_err();
        assert!(e.contains("gid 33"), "{e}");
        let e = resolve_user("node:nogroup", PASSWD, GROUP).unwrap_err();
        assert!(e.contains("/etc/group"), "{e}");
    }

    #[test]
    fn workdirs_are_normalized_and_dotdot_refused() {
        assert_eq!(check_workdir("/srv/app/").unwrap(), "/srv/app");
        assert_eq!(check_workdir("srv//./app").unwrap(), "/srv/app");
        assert_eq!(check_workdir("/").unwrap(), "/");
        assert!(check_workdir("/srv/../etc").is_err());
    }

    #[test]
    fn env_entries_must_be_key_value() {
        assert!(check_env(&["A=1".into(), "B=".into(), "C=x=y".into()]).is_ok());
        assert!(check_env(&["NOEQUALS".into()]).is_err());
        assert!(check_env(&["=v".into()]).is_err());
    }

    #[test]
    fn recorded_fields_become_defaults_and_wire_config() {
        let d =
            ImageDefaults::from_recorded(&["A=1".into(), "B=x=y".into()], Some("/w"), Some(1000));
        assert_eq!(
            d.env,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(d.workdir.as_deref(), Some("/w"));
        assert_eq!(d.user, Some(SandboxUser::Sandbox));
        let c = to_api(&["A=1".into()], None, Some(0));
        assert_eq!(c.user.as_deref(), Some("root"));
        assert_eq!(c.workdir, None);
        assert_eq!(
            ImageDefaults::from_recorded(&[], None, None),
            ImageDefaults::default()
        );
    }
}

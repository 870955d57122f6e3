//! Recipes: the subset of the Dockerfile syntax corral builds templates from
//! (docs/templates.md, "Recipes"). Parsing is pure: text in, steps out, every error
//! names its line.
//!
//! Supported: FROM (a template: `name`, `name:version` or `host`; once, first, only
//! ARGs before it), RUN (shell form, run as `/bin/sh -c`, or exec form, a JSON array),
//! COPY and ADD (local sources relative to the build context, optional `--chown=U[:G]`
//! with numeric ids or `root`/`sandbox`; ADD also unpacks local tar archives), ENV
//! (`K=V ...` or legacy `K V`), WORKDIR, USER (`root`/`0` or `sandbox`/`1000`), ARG
//! (`NAME[=default]`, set with `--build-arg`), comments, `\` line continuations and
//! `$VAR` / `${VAR}` / `${VAR:-default}` in FROM, COPY, ADD, ENV, WORKDIR and USER.
//! The directive `# corral: allow HOST[:PORT] ...` names the registries RUN steps may
//! reach once per-build egress exists (today every RUN is offline).

use std::collections::BTreeMap;

/// A recipe that cannot be built as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recipe line {line}: {message}")]
pub struct RecipeError {
    /// 1-based line of the instruction (its first line when continued).
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> RecipeError {
    RecipeError {
        line,
        message: message.into(),
    }
}

/// A RUN command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunCmd {
    /// Shell form: `/bin/sh -c TEXT`.
    Shell(String),
    /// Exec form: argv as written.
    Exec(Vec<String>),
}

impl RunCmd {
    pub(crate) fn argv(&self) -> Vec<String> {
        match self {
            RunCmd::Shell(t) => vec!["/bin/sh".into(), "-c".into(), t.clone()],
            RunCmd::Exec(a) => a.clone(),
        }
    }
}

/// One instruction, variables already substituted where the syntax allows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Instr {
    From(String),
    Run(RunCmd),
    Copy {
        add: bool,
        srcs: Vec<String>,
        dest: String,
        chown: Option<(u32, u32)>,
    },
    Env(Vec<(String, String)>),
    Workdir(String),
    User(u32),
    /// An ARG after FROM: (name, value in effect).
    Arg(String, String),
}

/// One step with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub line: usize,
    /// The instruction as written (continuations joined), for progress and errors.
    pub text: String,
    pub instr: Instr,
}

/// A parsed recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recipe {
    /// FROM first.
    pub steps: Vec<Step>,
    /// Hosts named by `# corral: allow` directives.
    pub allow: Vec<String>,
}

const SUPPORTED: &str = "FROM, RUN, COPY, ADD, ENV, WORKDIR, USER, ARG";

/// (first line, text) of each instruction.
type Lines = Vec<(usize, String)>;

/// Joins continuations, drops comments; returns each instruction and the hosts of the
/// allow directives.
fn logical_lines(text: &str) -> Result<(Lines, Vec<String>), RecipeError> {
    let mut out = Vec::new();
    let mut allow = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let t = raw.trim();
        if let Some(c) = t.strip_prefix('#') {
            let c = c.trim();
            if let Some(d) = c.strip_prefix("corral:") {
                let mut words = d.split_whitespace();
                match words.next() {
                    Some("allow") => {
                        let hosts: Vec<String> = words.map(str::to_string).collect();
                        if hosts.is_empty() {
                            return Err(err(n, "`# corral: allow` needs at least one host, e.g. `# corral: allow deb.debian.org`"));
                        }
                        for h in &hosts {
                            check_host(n, h)?;
                        }
                        allow.extend(hosts);
                    }
                    other => {
                        return Err(err(
                            n,
                            format!(
                                "unknown corral directive {:?}; the only one is `# corral: allow HOST ...`",
                                other.unwrap_or("")
                            ),
                        ))
                    }
                }
            }
            continue;
        }
        if t.is_empty() && cur.is_none() {
            continue;
        }
        let (body, more) = match t.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (t, false),
        };
        let entry = cur.get_or_insert_with(|| (n, String::new()));
        if !entry.1.is_empty() && !body.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body.trim());
        if !more {
            if let Some(e) = cur.take() {
                if !e.1.is_empty() {
                    out.push(e);
                }
            }
        }
    }
    if let Some((n, t)) = cur {
        if !t.is_empty() {
            out.push((n, t));
        }
    }
    Ok((out, allow))
}

fn check_host(line: usize, h: &str) -> Result<(), RecipeError> {
    let (host, port) = match h.rsplit_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (h, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        && !host.starts_with(['.', '-']);
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(err(
            line,
            format!("{h:?} is not a host name (optionally with :PORT) for `# corral: allow`"),
        ))
    }
}

/// Splits words honouring double and single quotes and backslash escapes.
fn words(line: usize, s: &str) -> Result<Vec<String>, RecipeError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err(err(line, "a trailing backslash escapes nothing")),
                }
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(err(line, "an unterminated quote"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `$VAR`, `${VAR}`, `${VAR:-default}`; `\$` is a literal `$`. Unknown names expand to
/// nothing, as in Docker.
fn substitute(
    line: usize,
    s: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, RecipeError> {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < b.len() {
        match b[i] {
            '\\' if b.get(i + 1) == Some(&'$') => {
                out.push('$');
                i += 2;
            }
            '$' if b.get(i + 1) == Some(&'{') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or_else(|| err(line, "`${` without its closing `}`"))?;
                let inner: String = b[i + 2..i + end].iter().collect();
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n.to_string(), Some(d.to_string())),
                    None => (inner.clone(), None),
                };
                if name.is_empty() || !name.chars().all(name_char) {
                    return Err(err(line, format!("`${{{inner}}}` is not a variable reference corral understands (use ${{NAME}} or ${{NAME:-default}})")));
                }
                match (vars.get(&name), default) {
                    (Some(v), _) if !v.is_empty() => out.push_str(v),
                    (_, Some(d)) => out.push_str(&d),
                    (Some(v), None) => out.push_str(v),
                    (None, None) => {}
                }
                i += end + 1;
            }
            '$' if b
                .get(i + 1)
                .is_some_and(|&c| name_char(c) && !c.is_ascii_digit()) =>
            {
                let mut j = i + 1;
                while j < b.len() && name_char(b[j]) {
                    j += 1;
                }
                let name: String = b[i + 1..j].iter().collect();
                if let Some(v) = vars.get(&name) {
                    out.push_str(v);
                }
                i = j;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.as_bytes()[0].is_ascii_digit()
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn parse_user(line: usize, s: &str) -> Result<u32, RecipeError> {
    match s {
        "root" | "0" | "0:0" => Ok(0),
        "sandbox" | "1000" | "1000:1000" => Ok(1000),
        other => Err(err(
            line,
            format!("USER {other:?}: corral builds run as root (0) or sandbox (1000) only"),
        )),
    }
}

fn parse_chown(line: usize, s: &str) -> Result<(u32, u32), RecipeError> {
    let id = |p: &str| -> Result<u32, RecipeError> {
        match p {
            "root" => Ok(0),
            "sandbox" => Ok(1000),
            n => n.parse::<u32>().ok().filter(|&n| n < 65536).ok_or_else(|| {
                err(
                    line,
                    format!("--chown={s}: give numeric ids below 65536, or root or sandbox"),
                )
            }),
        }
    };
    match s.split_once(':') {
        Some((u, g)) => Ok((id(u)?, id(g)?)),
        None => {
            let u = id(s)?;
            Ok((u, u))
        }
    }
}

/// A JSON array of strings, when `rest` looks like one.
fn json_form(line: usize, rest: &str) -> Result<Option<Vec<String>>, RecipeError> {
    if !rest.starts_with('[') {
        return Ok(None);
    }
    serde_json::from_str::<Vec<String>>(rest)
        .map(Some)
        .map_err(|e| {
            err(
                line,
                format!("bad JSON array ({e}); write [\"cmd\", \"arg\"] with double quotes, or drop the brackets for the shell form"),
            )
        })
}

/// Parses `text` with `build_args` (`--build-arg`, each must be declared by an ARG).
pub(crate) fn parse(
    text: &str,
    build_args: &BTreeMap<String, String>,
) -> Result<Recipe, RecipeError> {
    let (lines, allow) = logical_lines(text)?;
    let mut steps = Vec::new();
    // Variables visible to substitution: ARGs and ENVs in effect.
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut declared: Vec<String> = Vec::new();
    // ARGs declared before FROM: usable in FROM, and as defaults of the same ARG after.
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_from = false;
    for (n, t) in &lines {
        let n = *n;
        let (kw, rest) = match t.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim()),
            None => (t.as_str(), ""),
        };
        let kw = kw.to_ascii_uppercase();
        let need_rest = |what: &str| -> Result<(), RecipeError> {
            if rest.is_empty() {
                Err(err(n, format!("{kw} needs {what}")))
            } else {
                Ok(())
            }
        };
        if !seen_from && kw != "FROM" && kw != "ARG" {
            let known = ["RUN", "COPY", "ADD", "ENV", "WORKDIR", "USER"].contains(&kw.as_str());
            if known {
                return Err(err(n, format!("{kw} before FROM; a recipe starts with FROM TEMPLATE (a template name, name:version, or host)")));
            }
        }
        let instr = match kw.as_str() {
            "FROM" => {
                if seen_from {
                    return Err(err(
                        n,
                        "a second FROM: multi-stage recipes are not supported",
                    ));
                }
                need_rest("a template (name, name:version or host)")?;
                let w = words(n, rest)?;
                if w.len() != 1 {
                    return Err(err(
                        n,
                        "FROM takes one template and no options (no AS, no --platform)",
                    ));
                }
                seen_from = true;
                let from = substitute(n, &w[0], &vars)?;
                global = std::mem::take(&mut vars);
                Instr::From(from)
            }
            "RUN" => {
                need_rest("a command")?;
                if rest.starts_with("--") {
                    return Err(err(
                        n,
                        "RUN options (--mount, --network...) are not supported",
                    ));
                }
                match json_form(n, rest)? {
                    Some(argv) if argv.is_empty() => {
                        return Err(err(n, "RUN [] runs nothing; name a command"))
                    }
                    Some(argv) => Instr::Run(RunCmd::Exec(argv)),
                    None => Instr::Run(RunCmd::Shell(rest.to_string())),
                }
            }
            "COPY" | "ADD" => {
                need_rest("a source and a destination")?;
                let mut rest = rest;
                let mut chown = None;
                while let Some(opt) = rest.strip_prefix("--") {
                    let (o, r) = opt.split_once(char::is_whitespace).unwrap_or((opt, ""));
                    match o.split_once('=') {
                        Some(("chown", v)) => {
                            chown = Some(parse_chown(n, &substitute(n, v, &vars)?)?)
                        }
                        _ => {
                            return Err(err(
                                n,
                                format!(
                                    "{kw} option --{o} is not supported (only --chown=UID[:GID])"
                                ),
                            ))
                        }
                    }
                    rest = r.trim_start();
                }
                let parts = match json_form(n, rest)? {
                    Some(p) => p,
                    None => words(n, rest)?,
                };
                let parts = parts
                    .iter()
                    .map(|p| substitute(n, p, &vars))
                    .collect::<Result<Vec<_>, _>>()?;
                if parts.len() < 2 {
                    return Err(err(
                        n,
                        format!("{kw} needs at least one source and a destination"),
                    ));
                }
                let (dest, srcs) = parts.split_last().ok_or_else(|| err(n, "empty"))?;
                for s in srcs {
                    if s.contains("://") {
                        return Err(err(n, format!("{kw} {s}: URLs are not supported; download the file into the build context first")));
                    }
                    if s.contains(['*', '?', '[']) {
                        return Err(err(
                            n,
                            format!(
                                "{kw} {s}: wildcards are not supported; name files or a directory"
                            ),
                        ));
                    }
                }
                Instr::Copy {
                    add: kw == "ADD",
                    srcs: srcs.to_vec(),
                    dest: dest.clone(),
                    chown,
                }
            }
            "ENV" => {
                need_rest("NAME=VALUE")?;
                let w = words(n, rest)?;
                let mut pairs = Vec::new();
                if w.first().is_some_and(|f| !f.contains('=')) {
                    // Legacy form: ENV NAME VALUE...
                    let (k, v) = rest
                        .split_once(char::is_whitespace)
                        .ok_or_else(|| err(n, "ENV needs NAME=VALUE"))?;
                    pairs.push((k.to_string(), substitute(n, v.trim(), &vars)?));
                } else {
                    for p in &w {
                        let (k, v) = p.split_once('=').ok_or_else(|| {
                            err(
                                n,
                                format!("ENV {p:?}: write NAME=VALUE (quote values with spaces)"),
                            )
                        })?;
                        pairs.push((k.to_string(), substitute(n, v, &vars)?));
                    }
                }
                for (k, v) in &pairs {
                    if !valid_env_name(k) {
                        return Err(err(
                            n,
                            format!("ENV {k:?} is not a variable name (letters, digits, _)"),
                        ));
                    }
                    vars.insert(k.clone(), v.clone());
                }
                Instr::Env(pairs)
            }
            "WORKDIR" => {
                need_rest("a directory")?;
                let d = substitute(n, rest, &vars)?;
                Instr::Workdir(d)
            }
            "USER" => {
                need_rest("a user")?;
                Instr::User(parse_user(n, &substitute(n, rest, &vars)?)?)
            }
            "ARG" => {
                need_rest("NAME[=default]")?;
                let w = words(n, rest)?;
                if w.len() != 1 {
                    return Err(err(n, "ARG takes one NAME[=default]"));
                }
                let (k, default) = match w[0].split_once('=') {
                    Some((k, d)) => (k.to_string(), Some(d.to_string())),
                    None => (w[0].clone(), None),
                };
                if !valid_env_name(&k) {
                    return Err(err(
                        n,
                        format!("ARG {k:?} is not a variable name (letters, digits, _)"),
                    ));
                }
                declared.push(k.clone());
                let v = build_args
                    .get(&k)
                    .cloned()
                    .or(default)
                    .or_else(|| global.get(&k).cloned())
                    .unwrap_or_default();
                vars.insert(k.clone(), v.clone());
                if !seen_from {
                    continue;
                }
                Instr::Arg(k, v)
            }
            "CMD" | "ENTRYPOINT" | "EXPOSE" | "LABEL" | "VOLUME" | "HEALTHCHECK" | "SHELL"
            | "STOPSIGNAL" | "ONBUILD" | "MAINTAINER" => {
                return Err(err(
                    n,
                    format!("{kw} is not supported in corral recipes (supported: {SUPPORTED})"),
                ))
            }
            other => {
                return Err(err(
                    n,
                    format!("unknown instruction {other:?} (supported: {SUPPORTED})"),
                ))
            }
        };
        steps.push(Step {
            line: n,
            text: t.clone(),
            instr,
        });
    }
    if !seen_from {
        return Err(err(
            lines.last().map(|l| l.0).unwrap_or(1),
            "missing FROM; a recipe starts with FROM TEMPLATE (a template name, name:version, or host)",
        ));
    }
    for k in build_args.keys() {
        if !declared.contains(k) {
            return Err(err(
                1,
                format!("--build-arg {k} is not declared by an ARG in the recipe"),
            ));
        }
    }
    Ok(Recipe { steps, allow })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: &str) -> Result<Recipe, RecipeError> {
        parse(t, &BTreeMap::new())
    }

    #[test]
    fn a_full_recipe_parses() {
        let r = parse(
            "# a comment\n# corral: allow deb.debian.org pypi.org:443\nARG BASE=host\nFROM $BASE\nARG V=1\n\
             ENV A=1 B=\"two words\"\nENV C ${A}x\nWORKDIR /app\nUSER sandbox\n\
             RUN echo a \\\n  && echo b\nRUN [\"/bin/true\", \"x\"]\nCOPY --chown=1000 a.txt dir/ /dst/\nADD x.tar /opt\n",
            &BTreeMap::from([("V".to_string(), "2".to_string())]),
        )
        .unwrap();
        assert_eq!(r.allow, vec!["deb.debian.org", "pypi.org:443"]);
        let i: Vec<_> = r.steps.iter().map(|s| (s.line, s.instr.clone())).collect();
        assert_eq!(i[0], (4, Instr::From("host".into())));
        assert_eq!(i[1], (5, Instr::Arg("V".into(), "2".into())));
        assert_eq!(
            i[2].1,
            Instr::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into())
            ])
        );
        assert_eq!(i[3].1, Instr::Env(vec![("C".into(), "1x".into())]));
        assert_eq!(i[4].1, Instr::Workdir("/app".into()));
        assert_eq!(i[5].1, Instr::User(1000));
        assert_eq!(
            i[6],
            (10, Instr::Run(RunCmd::Shell("echo a && echo b".into())))
        );
        assert_eq!(
            i[7].1,
            Instr::Run(RunCmd::Exec(vec!["/bin/true".into(), "x".into()]))
        );
        assert_eq!(
            i[8].1,
            Instr::Copy {
                add: false,
                srcs: vec!["a.txt".into(), "dir/".into()],
                dest: "/dst/".into(),
                chown: Some((1000, 1000))
            }
        );
        assert!(matches!(i[9].1, Instr::Copy { add: true, .. }));
    }

    #[test]
    fn errors_name_their_line() {
        let line = |t: &str| p(t).unwrap_err().line;
        assert_eq!(line("FROM host\n\nFROB x\n"), 3);
        assert_eq!(line("FROM host\nRUN [\"a\",\n"), 2);
        assert_eq!(line("# c\nRUN true\n"), 2);
        assert_eq!(line("FROM host\nRUN true \\\n  more\nCMD x\n"), 4);
        assert_eq!(line("FROM host\nFROM host\n"), 2);
        assert_eq!(line("FROM host\nCOPY http://x/y /y\n"), 2);
        assert_eq!(line("FROM host\nUSER bob\n"), 2);
        assert_eq!(line("FROM host\n# corral: deny x\n"), 2);
        let e = p("ARG X\n").unwrap_err();
        assert!(e.message.contains("missing FROM"), "{e}");
        let e = p("FROM host\nFROB x\n").unwrap_err();
        assert_eq!(e.to_string(), "recipe line 2: unknown instruction \"FROB\" (supported: FROM, RUN, COPY, ADD, ENV, WORKDIR, USER, ARG)");
        let e = parse("FROM host\n", &BTreeMap::from([("Z".into(), "1".into())])).unwrap_err();
        assert!(e.message.contains("not declared"), "{e}");
    }

    #[test]
    fn the_shipped_recipes_parse() {
        for text in [
            include_str!("../../../../resources/templates/python/Recipe"),
            include_str!("../../../../resources/templates/node/Recipe"),
        ] {
            let r = p(text).unwrap();
            assert_eq!(r.steps[0].instr, Instr::From("debian".into()));
            assert!(r.allow.contains(&"deb.debian.org".to_string()));
        }
    }

    #[test]
    fn substitution_follows_docker() {
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(
            substitute(1, "$A/${A}/${B:-d}/\\$A/$", &vars).unwrap(),
            "x/x/d/$A/$"
        );
    }
}

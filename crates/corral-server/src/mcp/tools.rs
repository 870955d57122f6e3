//! The builtin sandbox tools: their typed inputs (JSON Schema from the Rust types),
//! their side-effect classes (fixed here, never taken from a client or an upstream),
//! and the MCP annotations derived from those classes.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_types::api::{NetworkMode, RunCodeLanguage, SideEffect};
use rmcp::model::{JsonObject, MetaObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The builtin tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    CreateSandbox,
    RunCode,
    ExecCommand,
    ReadFile,
    WriteFile,
    ListFiles,
    KillSandbox,
}

pub(crate) const BUILTINS: [Builtin; 7] = [
    Builtin::CreateSandbox,
    Builtin::RunCode,
    Builtin::ExecCommand,
    Builtin::ReadFile,
    Builtin::WriteFile,
    Builtin::ListFiles,
    Builtin::KillSandbox,
];

impl Builtin {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Builtin::CreateSandbox => "create_sandbox",
            Builtin::RunCode => "run_code",
            Builtin::ExecCommand => "exec_command",
            Builtin::ReadFile => "read_file",
            Builtin::WriteFile => "write_file",
            Builtin::ListFiles => "list_files",
            Builtin::KillSandbox => "kill_sandbox",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Builtin> {
        BUILTINS.into_iter().find(|b| b.name() == name)
    }

    /// Fixed in code: the class governance decides on.
    pub(crate) fn side_effect(self) -> SideEffect {
        match self {
            Builtin::ReadFile | Builtin::ListFiles => SideEffect::ReadOnly,
            Builtin::CreateSandbox
            | Builtin::RunCode
            | Builtin::ExecCommand
            | Builtin::WriteFile
            | Builtin::KillSandbox => SideEffect::WriteLimited,
        }
    }

    /// Calling it twice with the same arguments has no effect beyond the first call.
    fn idempotent(self) -> bool {
        matches!(self, Builtin::WriteFile | Builtin::KillSandbox)
    }

    fn description(self) -> &'static str {
        match self {
            Builtin::CreateSandbox => {
                "Create an isolated Linux sandbox (its own filesystem, processes and, by \
                 default, no network). Returns the sandbox, whose `id` the other tools take. \
                 It is removed when its timeout expires or by kill_sandbox."
            }
            Builtin::RunCode => {
                "Run a program in a sandbox: Python (python3 -c), JavaScript (node -e) or \
                 bash (bash -c). Returns exit_code, stdout and stderr."
            }
            Builtin::ExecCommand => {
                "Run a command in a sandbox, as an argv list (no shell) or as one shell \
                 string (sh -c). Returns exit_code, stdout and stderr."
            }
            Builtin::ReadFile => {
                "Read a file in a sandbox as text (invalid UTF-8 is replaced; at most \
                 max_bytes, default 256 KiB)."
            }
            Builtin::WriteFile => {
                "Write text to a file in a sandbox, creating or replacing it (parent \
                 directories must exist)."
            }
            Builtin::ListFiles => "List a directory in a sandbox.",
            Builtin::KillSandbox => {
                "Kill a sandbox and remove it with its files. Killing one that is already \
                 gone succeeds."
            }
        }
    }

    fn schema(self) -> JsonObject {
        match self {
            Builtin::CreateSandbox => schema_of::<CreateSandboxInput>(),
            Builtin::RunCode => schema_of::<RunCodeInput>(),
            Builtin::ExecCommand => schema_of::<ExecCommandInput>(),
            Builtin::ReadFile => schema_of::<ReadFileInput>(),
            Builtin::WriteFile => schema_of::<WriteFileInput>(),
            Builtin::ListFiles => schema_of::<ListFilesInput>(),
            Builtin::KillSandbox => schema_of::<KillSandboxInput>(),
        }
    }

    /// Its tools/list entry.
    pub(crate) fn tool(self) -> Tool {
        Tool::new(self.name(), self.description(), Arc::new(self.schema()))
            .with_annotations(annotations(self.side_effect(), self.idempotent()))
            .with_meta(class_meta(self.side_effect()))
    }
}

/// MCP hints from corral's class: read_only → readOnlyHint; write_limited →
/// destructiveHint false; privileged → destructiveHint true. idempotentHint only where
/// it holds (and only meaningful for tools that write).
pub(crate) fn annotations(class: SideEffect, idempotent: bool) -> ToolAnnotations {
    let a = ToolAnnotations::new();
    match class {
        SideEffect::ReadOnly => a.read_only(true),
        SideEffect::WriteLimited => {
            let a = a.read_only(false).destructive(false);
            if idempotent {
                a.idempotent(true)
            } else {
                a
            }
        }
        SideEffect::Privileged => {
            let a = a.read_only(false).destructive(true);
            if idempotent {
                a.idempotent(true)
            } else {
                a
            }
        }
    }
}

/// `_meta` of a tool: corral's own class, which the annotations are derived from.
pub(crate) fn class_meta(class: SideEffect) -> MetaObject {
    let mut m = JsonObject::new();
    m.insert("corral/side_effect".into(), class.as_str().into());
    MetaObject(m)
}

fn schema_of<T: JsonSchema>() -> JsonObject {
    let mut v = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    match v.as_object_mut() {
        Some(obj) => {
            // Clients show the tool's own name; the Rust type's name is noise.
            obj.remove("title");
            std::mem::take(obj)
        }
        None => JsonObject::new(),
    }
}

/// Arguments into the tool's input type; a violation names the field and is answered
/// as a JSON-RPC invalid-params error.
fn parse<T: DeserializeOwned>(args: Option<&JsonObject>) -> Result<T, String> {
    let v = serde_json::Value::Object(args.cloned().unwrap_or_default());
    serde_json::from_value(v).map_err(|e| format!("invalid arguments: {e}"))
}

/// A builtin call with its arguments checked and typed.
#[derive(Debug)]
pub(crate) enum BuiltinCall {
    CreateSandbox(CreateSandboxInput),
    RunCode(RunCodeInput),
    ExecCommand(ExecCommandInput),
    ReadFile(ReadFileInput),
    WriteFile(WriteFileInput),
    ListFiles(ListFilesInput),
    KillSandbox(KillSandboxInput),
}

/// `read_file` returns at most this much unless asked for less.
pub(crate) const READ_DEFAULT_BYTES: u64 = 256 << 10;
/// ... and never more than this: a tool result goes into a model's context.
pub(crate) const READ_MAX_BYTES: u64 = 1 << 20;

/// Checks `args` against `tool`'s input type (and the limits a schema cannot say);
/// the reason is answered as a JSON-RPC invalid-params error, before governance.
pub(crate) fn parse_call(tool: Builtin, args: Option<&JsonObject>) -> Result<BuiltinCall, String> {
    Ok(match tool {
        Builtin::CreateSandbox => BuiltinCall::CreateSandbox(parse(args)?),
        Builtin::RunCode => BuiltinCall::RunCode(parse(args)?),
        Builtin::ExecCommand => {
            let i: ExecCommandInput = parse(args)?;
            if matches!(&i.cmd, CommandLine::Argv(v) if v.is_empty()) {
                return Err("invalid arguments: cmd is an empty list".into());
            }
            BuiltinCall::ExecCommand(i)
        }
        Builtin::ReadFile => {
            let i: ReadFileInput = parse(args)?;
            if i.max_bytes.is_some_and(|n| n == 0 || n > READ_MAX_BYTES) {
                return Err(format!(
                    "invalid arguments: max_bytes must be from 1 to {READ_MAX_BYTES}"
                ));
            }
            BuiltinCall::ReadFile(i)
        }
        Builtin::WriteFile => BuiltinCall::WriteFile(parse(args)?),
        Builtin::ListFiles => BuiltinCall::ListFiles(parse(args)?),
        Builtin::KillSandbox => BuiltinCall::KillSandbox(parse(args)?),
    })
}

/// `create_sandbox`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSandboxInput {
    /// Template name (default `host`: the host's read-only system).
    pub(crate) template: Option<String>,
    /// Time to live in seconds (default 300, at most 28800).
    #[schemars(range(min = 1, max = 28800))]
    pub(crate) timeout_s: Option<u64>,
    /// Memory limit, e.g. "512M" or "2G" (default 512M).
    pub(crate) memory: Option<String>,
    /// CPUs, e.g. "1" or "0.5" (default 1).
    pub(crate) cpus: Option<String>,
    /// Network: `none` (loopback only, the default) or `open` (outbound internet, never
    /// the host, other sandboxes or cloud metadata).
    pub(crate) network: Option<NetworkMode>,
    /// Environment for every command run in the sandbox.
    #[serde(default)]
    pub(crate) env: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub(crate) metadata: BTreeMap<String, String>,
}

/// `run_code`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunCodeInput {
    /// The sandbox (`sb-...`, from create_sandbox).
    pub(crate) sandbox_id: String,
    /// python, javascript or bash.
    pub(crate) language: RunCodeLanguage,
    /// The program text.
    pub(crate) code: String,
    /// Kill it after this many seconds (default 60).
    pub(crate) timeout_s: Option<u64>,
    /// Working directory (absolute; default the template's WORKDIR, else the sandbox
    /// user's home).
    pub(crate) cwd: Option<String>,
    /// Extra environment.
    #[serde(default)]
    pub(crate) env: BTreeMap<String, String>,
}

/// A command: argv, or one shell string.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum CommandLine {
    /// Program and arguments, run without a shell.
    Argv(Vec<String>),
    /// A shell command line, run with `sh -c`.
    Shell(String),
}

/// `exec_command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecCommandInput {
    /// The sandbox (`sb-...`).
    pub(crate) sandbox_id: String,
    /// `["ls", "-l", "/"]` (no shell) or `"ls -l / | head"` (sh -c).
    pub(crate) cmd: CommandLine,
    /// Kill it after this many seconds (default 60).
    pub(crate) timeout_s: Option<u64>,
    /// Working directory (absolute).
    pub(crate) cwd: Option<String>,
    /// Extra environment.
    #[serde(default)]
    pub(crate) env: BTreeMap<String, String>,
    /// Text given to its standard input.
    pub(crate) stdin: Option<String>,
}

/// `read_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadFileInput {
    /// The sandbox (`sb-...`).
    pub(crate) sandbox_id: String,
    /// Absolute path inside the sandbox.
    pub(crate) path: String,
    /// Read at most this many bytes (default 262144, at most 1048576).
    #[schemars(range(min = 1, max = 1048576))]
    pub(crate) max_bytes: Option<u64>,
}

/// `write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteFileInput {
    /// The sandbox (`sb-...`).
    pub(crate) sandbox_id: String,
    /// Absolute path inside the sandbox.
    pub(crate) path: String,
    /// The file's new content (text).
    pub(crate) content: String,
}

/// `list_files`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListFilesInput {
    /// The sandbox (`sb-...`).
    pub(crate) sandbox_id: String,
    /// Absolute path of the directory (default `/`).
    pub(crate) path: Option<String>,
}

/// `kill_sandbox`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KillSandboxInput {
    /// The sandbox (`sb-...`).
    pub(crate) sandbox_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_and_class_derived_hints() {
        for b in BUILTINS {
            let t = b.tool();
            assert_eq!(
                t.input_schema.get("type").and_then(|v| v.as_str()),
                Some("object")
            );
            assert_eq!(Builtin::from_name(b.name()), Some(b));
            let a = t.annotations.unwrap();
            match b.side_effect() {
                SideEffect::ReadOnly => assert_eq!(a.read_only_hint, Some(true)),
                SideEffect::WriteLimited => {
                    assert_eq!(a.read_only_hint, Some(false));
                    assert_eq!(a.destructive_hint, Some(false));
                }
                SideEffect::Privileged => panic!("no builtin is privileged"),
            }
        }
        let p = annotations(SideEffect::Privileged, false);
        assert_eq!(p.destructive_hint, Some(true));
        assert_eq!(p.idempotent_hint, None);
        assert_eq!(
            Builtin::KillSandbox
                .tool()
                .annotations
                .unwrap()
                .idempotent_hint,
            Some(true)
        );
        assert_eq!(
            Builtin::RunCode.tool().annotations.unwrap().idempotent_hint,
            None
        );
    }

    #[test]
    fn arguments_are_checked_against_the_type() {
        let args = |v: serde_json::Value| v.as_object().cloned();
        let ok: ExecCommandInput =
            parse(args(serde_json::json!({"sandbox_id": "sb-1", "cmd": "ls | wc"})).as_ref())
                .unwrap();
        assert!(matches!(ok.cmd, CommandLine::Shell(_)));
        let ok: ExecCommandInput =
            parse(args(serde_json::json!({"sandbox_id": "sb-1", "cmd": ["ls"]})).as_ref()).unwrap();
        assert!(matches!(ok.cmd, CommandLine::Argv(_)));
        let e = parse::<RunCodeInput>(
            args(serde_json::json!({"sandbox_id": "sb-1", "language": "cobol", "code": ""}))
                .as_ref(),
        )
        .unwrap_err();
        assert!(e.contains("cobol"), "{e}");
        assert!(parse::<KillSandboxInput>(None).is_err());
        assert!(parse::<KillSandboxInput>(
            args(serde_json::json!({"sandbox_id": "x", "extra": 1})).as_ref()
        )
        .is_err());
    }
}

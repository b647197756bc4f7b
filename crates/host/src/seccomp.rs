//! Seccomp policies: which system calls a program may make, compiled on the
//! host into the classic BPF program that init installs last before exec
//! ([`ExecSpec::seccomp`](crate::ExecSpec::seccomp)).
//!
//! ```no_run
//! use hutch_host::{ContainerBuilder, ExecSpec, SeccompPolicy};
//!
//! let program = SeccompPolicy::default_policy().compile()?;
//! let mut container = ContainerBuilder::new().build()?;
//! let result = container.exec(&ExecSpec::new(["true"]).seccomp(program))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A policy is a default action and an ordered list of rules; the first rule
//! that matches a call decides what happens to it. Whatever the policy, a
//! call made through another architecture's entry point (`int 0x80`, the
//! i386 ABI) or with an x32 number (bit 30 set) kills the process, and
//! `exit` and `exit_group` are allowed. The policy file format, the default
//! policy and the layout of the compiled program are described in
//! `docs/seccomp.md` of the repository.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use hutch_protocol::{BpfInstruction, MAX_BPF_INSTRUCTIONS};
use libc::c_long;
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompRule,
};
use serde::Deserialize;
use serde_json::Value;

/// The default policy, in the policy file format: everything is allowed
/// except the calls listed, which kill the process, and `clone3`, which
/// fails with `ENOSYS` so that the C library falls back to `clone`, whose
/// flags the filter can see.
pub const DEFAULT_SECCOMP_POLICY: &str = r#"{
  "comment": "hutch's default policy: allow everything but what can reach past the container or the kernel's hardening",
  "default_action": "allow",
  "rules": [
    {
      "comment": "clone without a namespace flag (CLONE_NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWCGROUP, NEWTIME); any other clone falls through to the kill rule below",
      "syscall": "clone",
      "action": "allow",
      "args": [{ "arg": 0, "width": 32, "op": "masked_eq", "mask": "0x7e020080", "value": 0 }]
    },
    {
      "comment": "clone3 takes its flags in memory the filter cannot read: make it look absent, and the C library uses clone",
      "syscall": "clone3",
      "action": { "errno": 38 }
    },
    {
      "comment": "RLIMIT_CORE (4) stays at the 1 init sets, at which the kernel starts no core_pattern pipe helper (as root, on the host, for every crash): a change of it succeeds without taking effect",
      "syscall": "prlimit64",
      "action": { "errno": 0 },
      "args": [{ "arg": 1, "width": 32, "op": "eq", "value": 4 }, { "arg": 2, "op": "ne", "value": 0 }]
    },
    {
      "syscall": "setrlimit",
      "action": { "errno": 0 },
      "args": [{ "arg": 0, "width": 32, "op": "eq", "value": 4 }]
    },
    {
      "comment": "a process may change its own resource limits (pid 0)...",
      "syscall": "prlimit64",
      "action": "allow",
      "args": [{ "arg": 0, "op": "eq", "value": 0 }]
    },
    {
      "comment": "...but not another's: unprivileged, programs share init's uid, and prlimit checks no more than that",
      "syscall": "prlimit64",
      "action": { "errno": 1 }
    },
    {
      "comment": "sockets of the families programs use: Unix (1), IPv4 (2), IPv6 (10)...",
      "syscall": "socket",
      "action": "allow",
      "args": [{ "arg": 0, "width": 32, "op": "ge", "value": 1 }, { "arg": 0, "width": 32, "op": "le", "value": 2 }]
    },
    {
      "syscall": "socket",
      "action": "allow",
      "args": [{ "arg": 0, "width": 32, "op": "eq", "value": 10 }]
    },
    {
      "syscall": "socketpair",
      "action": "allow",
      "args": [{ "arg": 0, "width": 32, "op": "eq", "value": 1 }]
    },
    {
      "comment": "...and no other (EAFNOSUPPORT): netlink queues hold memory no cgroup counts, vsock reaches past the network namespace",
      "syscall": ["socket", "socketpair"],
      "action": { "errno": 97 }
    },
    {
      "comment": "file watches (ENOSYS: tools poll instead): their quotas are per user, shared by every container, and a watch on a bound system file sees every container's use of it, and the host's",
      "syscall": ["inotify_init", "inotify_init1", "fanotify_init"],
      "action": { "errno": 38 }
    },
    {
      "comment": "sync and syncfs write back the host's dirty data, on kernel threads no cgroup charges, and cannot be killed meanwhile; a container's own files are in memory: succeed without doing it",
      "syscall": ["sync", "syncfs"],
      "action": { "errno": 0 }
    },
    {
      "comment": "namespaces, mounts, tracing, kernel interfaces, the clock and the machine",
      "syscall": [
        "clone", "unshare", "setns",
        "mount", "umount2", "pivot_root", "mount_setattr",
        "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "open_tree_attr",
        "ptrace", "process_vm_readv", "process_vm_writev",
        "bpf", "perf_event_open", "userfaultfd",
        "io_uring_setup", "io_uring_enter", "io_uring_register",
        "keyctl", "add_key", "request_key",
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
        "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "vhangup",
        "syslog", "lookup_dcookie", "iopl", "ioperm",
        "clock_settime", "clock_adjtime", "settimeofday", "adjtimex",
        "memfd_secret", "open_by_handle_at", "name_to_handle_at"
      ],
      "action": "kill"
    }
  ]
}"#;

/// Where the default policy came from, for error messages.
const DEFAULT_ORIGIN: &str = "the built-in default seccomp policy";

/// `AUDIT_ARCH_X86_64` of `<linux/audit.h>`: `EM_X86_64`, 64-bit, little
/// endian.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Bit 30 of a system call number marks the x32 ABI on x86_64.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// The largest errno a filter can return (the kernel's `MAX_ERRNO`).
const MAX_ERRNO: u32 = 4095;

// Classic BPF opcodes (`<linux/bpf_common.h>`).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// Offsets of `nr` and `arch` in `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

/// What went wrong reading, checking or compiling a seccomp policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    /// The policy file cannot be read.
    #[error("cannot read the seccomp policy file {}", .path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The policy is not JSON, or not of the policy's shape.
    #[error("{origin} is not a valid policy")]
    Syntax {
        /// Where the policy came from ("the seccomp policy file …").
        origin: String,
        /// The JSON error, with its line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A rule names a system call that x86_64 does not have.
    #[error("unknown system call {name:?} in {place} of {origin}")]
    UnknownSyscall {
        /// Where the policy came from.
        origin: String,
        /// The rule (`rules[3]`).
        place: String,
        /// The name as written.
        name: String,
    },
    /// A rule or the default action is well-formed JSON but makes no sense.
    #[error("{place} of {origin}: {reason}")]
    Invalid {
        /// Where the policy came from.
        origin: String,
        /// `default_action`, or the rule (`rules[3] (ptrace)`).
        place: String,
        /// What is wrong.
        reason: String,
    },
    /// The BPF compiler refused the policy.
    #[error("cannot compile {origin}")]
    Compile {
        /// Where the policy came from.
        origin: String,
        /// The compiler's error.
        #[source]
        source: BackendError,
    },
    /// The compiled program is longer than the kernel accepts.
    #[error(
        "{origin} compiles to {instructions} BPF instructions; the kernel accepts at most {MAX_BPF_INSTRUCTIONS}"
    )]
    TooLarge {
        /// Where the policy came from.
        origin: String,
        /// The program's length.
        instructions: usize,
    },
}

/// A seccomp policy: none, the built-in default, or one read from a policy
/// file or text. [`compile`](Self::compile) turns it into the program for
/// [`ExecSpec::seccomp`](crate::ExecSpec::seccomp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompPolicy {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    None,
    Default,
    Custom(Box<Policy>),
}

impl SeccompPolicy {
    /// The built-in default policy ([`DEFAULT_SECCOMP_POLICY`]): a deny
    /// list whose calls kill the process (verdict `disallowed-syscall`).
    /// Its program is compiled once per process and cached.
    pub fn default_policy() -> Self {
        Self {
            kind: Kind::Default,
        }
    }

    /// No filter at all: [`compile`](Self::compile) returns an empty
    /// program.
    pub fn none() -> Self {
        Self { kind: Kind::None }
    }

    /// Reads and checks a policy file (JSON; see `docs/seccomp.md`). Errors
    /// name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SeccompError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SeccompError::Read {
            path: path.to_owned(),
            source,
        })?;
        let origin = format!("the seccomp policy file {}", path.display());
        Ok(Self::custom(Policy::parse(&text, origin)?))
    }

    /// Checks a policy given as text; `origin` says where it came from in
    /// error messages. [`FromStr`] does the same with a generic origin.
    pub fn from_text(text: &str, origin: &str) -> Result<Self, SeccompError> {
        Ok(Self::custom(Policy::parse(text, origin.to_owned())?))
    }

    fn custom(policy: Policy) -> Self {
        Self {
            kind: Kind::Custom(Box::new(policy)),
        }
    }

    /// Whether this is the empty policy, which installs no filter.
    pub fn is_none(&self) -> bool {
        matches!(self.kind, Kind::None)
    }

    /// The classic BPF program of this policy, for
    /// [`ExecSpec::seccomp`](crate::ExecSpec::seccomp); empty for
    /// [`none`](Self::none). The default policy's program is compiled on
    /// first use and copied from a cache afterwards.
    pub fn compile(&self) -> Result<Vec<BpfInstruction>, SeccompError> {
        match &self.kind {
            Kind::None => Ok(Vec::new()),
            Kind::Default => Ok(default_program().to_vec()),
            Kind::Custom(policy) => policy.compile(),
        }
    }
}

impl Default for SeccompPolicy {
    /// The built-in default policy, as [`SeccompPolicy::default_policy`].
    fn default() -> Self {
        Self::default_policy()
    }
}

impl FromStr for SeccompPolicy {
    type Err = SeccompError;

    /// Checks a policy given as JSON text.
    fn from_str(text: &str) -> Result<Self, SeccompError> {
        Self::from_text(text, "the seccomp policy")
    }
}

/// The default policy's program, compiled once per process.
fn default_program() -> &'static [BpfInstruction] {
    static PROGRAM: OnceLock<Vec<BpfInstruction>> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        Policy::parse(DEFAULT_SECCOMP_POLICY, DEFAULT_ORIGIN.to_owned())
            .and_then(|policy| policy.compile())
            .expect("the built-in default seccomp policy compiles (a unit test checks it)")
    })
}

/// What a filter does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    /// `SECCOMP_RET_KILL_PROCESS`: the whole process dies of `SIGSYS`.
    Kill,
    /// Allowed, and logged to the audit log.
    Log,
    /// The call fails with this errno without running.
    Errno(u32),
}

impl Action {
    fn to_seccompiler(self) -> SeccompAction {
        match self {
            Action::Allow => SeccompAction::Allow,
            Action::Kill => SeccompAction::KillProcess,
            Action::Log => SeccompAction::Log,
            Action::Errno(errno) => SeccompAction::Errno(errno),
        }
    }

    /// The filter's return value.
    fn ret(self) -> u32 {
        self.to_seccompiler().into()
    }
}

/// One comparison of a system call argument; every comparison is unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Condition {
    arg: u8,
    /// Compare all 64 bits, not only the low 32.
    wide: bool,
    op: Op,
    value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

impl Condition {
    fn to_seccompiler(self) -> Result<SeccompCondition, BackendError> {
        let width = if self.wide {
            SeccompCmpArgLen::Qword
        } else {
            SeccompCmpArgLen::Dword
        };
        let op = match self.op {
            Op::Eq => SeccompCmpOp::Eq,
            Op::Ne => SeccompCmpOp::Ne,
            Op::Lt => SeccompCmpOp::Lt,
            Op::Le => SeccompCmpOp::Le,
            Op::Gt => SeccompCmpOp::Gt,
            Op::Ge => SeccompCmpOp::Ge,
            Op::MaskedEq(mask) => SeccompCmpOp::MaskedEq(mask),
        };
        SeccompCondition::new(self.arg, width, op, self.value)
    }
}

/// One rule: these calls, when every condition holds, get this action.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    syscalls: Vec<c_long>,
    action: Action,
    conditions: Vec<Condition>,
}

/// A checked policy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Policy {
    /// Where it came from, for error messages.
    origin: String,
    default_action: Action,
    rules: Vec<Rule>,
}

// The file format, as serde reads it. Values whose shape varies (actions,
// names, numbers) stay JSON values and are checked by hand, for error
// messages that say what was expected.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    default_action: Value,
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    syscall: Value,
    action: Value,
    #[serde(default)]
    errno: Option<Value>,
    #[serde(default)]
    args: Vec<ConditionFile>,
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionFile {
    arg: u8,
    #[serde(default)]
    width: Option<u32>,
    op: String,
    value: Value,
    #[serde(default)]
    mask: Option<Value>,
}

impl Policy {
    fn parse(text: &str, origin: String) -> Result<Self, SeccompError> {
        let file: PolicyFile = match serde_json::from_str(text) {
            Ok(file) => file,
            Err(source) => return Err(SeccompError::Syntax { origin, source }),
        };
        let invalid = |place: String, reason: String| SeccompError::Invalid {
            origin: origin.clone(),
            place,
            reason,
        };
        let default_action = parse_action(&file.default_action, None)
            .map_err(|reason| invalid("default_action".into(), reason))?;
        let mut rules = Vec::with_capacity(file.rules.len());
        for (index, rule) in file.rules.iter().enumerate() {
            let names = parse_names(&rule.syscall)
                .map_err(|reason| invalid(format!("rules[{index}]"), reason))?;
            let place = format!("rules[{index}] ({})", names.join(", "));
            let mut syscalls = Vec::with_capacity(names.len());
            for name in &names {
                match syscall_number(name) {
                    Some(nr) => syscalls.push(nr),
                    None => {
                        return Err(SeccompError::UnknownSyscall {
                            origin,
                            place: format!("rules[{index}]"),
                            name: name.clone(),
                        });
                    }
                }
            }
            let action = parse_action(&rule.action, rule.errno.as_ref())
                .map_err(|reason| invalid(place.clone(), reason))?;
            let always_allowed = names
                .iter()
                .zip(&syscalls)
                .find_map(|(name, nr)| ALWAYS_ALLOWED.contains(nr).then_some(name));
            if let (Some(name), true) = (always_allowed, action != Action::Allow) {
                return Err(invalid(
                    place,
                    format!(
                        "{name} is always allowed, so that a process can always end; \
                         only \"allow\" may name it"
                    ),
                ));
            }
            let conditions = rule
                .args
                .iter()
                .map(parse_condition)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|reason| invalid(place.clone(), reason))?;
            rules.push(Rule {
                syscalls,
                action,
                conditions,
            });
        }
        Ok(Policy {
            origin,
            default_action,
            rules,
        })
    }

    /// The program (see [`Assembler`] for its layout).
    fn compile(&self) -> Result<Vec<BpfInstruction>, SeccompError> {
        let compile_error = |source| SeccompError::Compile {
            origin: self.origin.clone(),
            source,
        };
        // Per call, the rules naming it in order, up to the first that
        // names it unconditionally: the ones that can decide.
        let mut calls: BTreeMap<c_long, Vec<&Rule>> = BTreeMap::new();
        for rule in &self.rules {
            for &nr in &rule.syscalls {
                let rules = calls.entry(nr).or_default();
                let decided = rules.last().is_some_and(|r| r.conditions.is_empty());
                if !decided && !rules.iter().any(|r| std::ptr::eq(*r, rule)) {
                    rules.push(rule);
                }
            }
        }
        let mut asm = Assembler::default();
        for instruction in prologue() {
            asm.fixed(instruction);
        }
        // Dispatch entries: a call and where it goes, either a shared
        // return of one action or a block of its own.
        let mut entries: Vec<(u32, Label)> = Vec::new();
        let mut returns: BTreeMap<u32, Label> = BTreeMap::new();
        let mut blocks: Vec<(Label, Vec<BpfInstruction>)> = Vec::new();
        for (&nr, rules) in &calls {
            if ALWAYS_ALLOWED.contains(&nr)
                || rules.iter().all(|rule| rule.action == self.default_action)
            {
                continue;
            }
            if rules[0].conditions.is_empty() {
                let label = *returns
                    .entry(rules[0].action.ret())
                    .or_insert_with(|| asm.label());
                entries.push((nr as u32, label));
                continue;
            }
            let mut code = Vec::new();
            let mut decided = false;
            for rule in rules {
                if !rule.conditions.is_empty() {
                    let conditions = rule
                        .conditions
                        .iter()
                        .map(|condition| condition.to_seccompiler())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(compile_error)?;
                    let rule = SeccompRule::new(conditions).map_err(compile_error)?;
                    // Falls through when every condition holds; otherwise
                    // jumps to just past the return that follows it.
                    // (Two unreachable jumps in it aim one further.)
                    let bpf: BpfProgram = rule.into();
                    code.extend(bpf.iter().map(|i| instruction(i.code, i.jt, i.jf, i.k)));
                } else {
                    decided = true;
                }
                code.push(ret(rule.action.ret()));
            }
            if !decided {
                code.push(ret(self.default_action.ret()));
            }
            let label = asm.label();
            blocks.push((label, code));
            entries.push((nr as u32, label));
        }
        if self.default_action != Action::Allow {
            let label = *returns
                .entry(Action::Allow.ret())
                .or_insert_with(|| asm.label());
            entries.extend(ALWAYS_ALLOWED.iter().map(|&nr| (nr as u32, label)));
        }
        entries.sort_unstable_by_key(|&(nr, _)| nr);
        asm.dispatch(&entries, ret(self.default_action.ret()));
        for (label, code) in blocks {
            asm.mark(label);
            for instruction in code {
                asm.fixed(instruction);
            }
        }
        if returns.is_empty() {
            // seccompiler's rule code holds unreachable jumps to one past
            // the return after the rule; the kernel checks that every jump,
            // reachable or not, stays inside the program.
            asm.fixed(ret(self.default_action.ret()));
        }
        for (value, label) in returns {
            asm.mark(label);
            asm.fixed(ret(value));
        }
        let program = asm.finish();
        if program.len() > MAX_BPF_INSTRUCTIONS {
            return Err(SeccompError::TooLarge {
                origin: self.origin.clone(),
                instructions: program.len(),
            });
        }
        Ok(program)
    }
}

fn parse_names(value: &Value) -> Result<Vec<String>, String> {
    let names = match value {
        Value::String(name) => vec![name.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(name) => Ok(name.clone()),
                other => Err(format!("\"syscall\" lists {other}, not a name")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(format!(
                "\"syscall\" must be a name or a list of names, not {other}"
            ));
        }
    };
    if names.is_empty() {
        return Err("\"syscall\" lists no system call".into());
    }
    Ok(names)
}

const ACTIONS: &str = r#""allow", "kill", "log", "errno" (with "errno": N) or {"errno": N}"#;

/// An action: `"allow"`, `"kill"`, `"log"`, `{"errno": N}`, or (in a rule)
/// `"errno"` with the number in the rule's `errno` field.
fn parse_action(value: &Value, errno_field: Option<&Value>) -> Result<Action, String> {
    let action = match value {
        Value::String(word) => match word.as_str() {
            "allow" => Action::Allow,
            "kill" => Action::Kill,
            "log" => Action::Log,
            "errno" => {
                let errno = errno_field.ok_or(r#"action "errno" needs an "errno": N field"#)?;
                return parse_errno(errno);
            }
            other => return Err(format!("unknown action {other:?}; expected {ACTIONS}")),
        },
        Value::Object(map) if map.len() == 1 && map.contains_key("errno") => {
            if errno_field.is_some() {
                return Err(
                    r#"give the errno once: {"errno": N} or "errno" with "errno": N"#.into(),
                );
            }
            return parse_errno(&map["errno"]);
        }
        other => return Err(format!("the action {other} is not one of {ACTIONS}")),
    };
    if errno_field.is_some() {
        return Err(r#"an "errno" field goes only with action "errno""#.into());
    }
    Ok(action)
}

fn parse_errno(value: &Value) -> Result<Action, String> {
    match value.as_u64() {
        Some(errno) if errno <= u64::from(MAX_ERRNO) => Ok(Action::Errno(errno as u32)),
        _ => Err(format!(
            "the errno {value} is not a number from 0 to {MAX_ERRNO}"
        )),
    }
}

fn parse_condition(condition: &ConditionFile) -> Result<Condition, String> {
    if condition.arg > 5 {
        return Err(format!(
            "argument {} does not exist (system calls have arguments 0 to 5)",
            condition.arg
        ));
    }
    let wide = match condition.width {
        None | Some(64) => true,
        Some(32) => false,
        Some(other) => return Err(format!("the width {other} is not 32 or 64")),
    };
    let value = parse_number("value", &condition.value, wide)?;
    let mask = condition
        .mask
        .as_ref()
        .map(|mask| parse_number("mask", mask, wide))
        .transpose()?;
    let op = match (condition.op.as_str(), mask) {
        ("masked_eq", Some(mask)) => {
            if value & !mask != 0 {
                return Err(format!(
                    "the value {value:#x} has bits outside the mask {mask:#x}, so it never matches"
                ));
            }
            Op::MaskedEq(mask)
        }
        ("masked_eq", None) => return Err(r#"op "masked_eq" needs a "mask""#.into()),
        (_, Some(_)) => return Err(r#"a "mask" goes only with op "masked_eq""#.into()),
        ("eq", None) => Op::Eq,
        ("ne", None) => Op::Ne,
        ("lt", None) => Op::Lt,
        ("le", None) => Op::Le,
        ("gt", None) => Op::Gt,
        ("ge", None) => Op::Ge,
        (other, None) => {
            return Err(format!(
                "unknown op {other:?}; expected eq, ne, lt, le, gt, ge or masked_eq"
            ));
        }
    };
    Ok(Condition {
        arg: condition.arg,
        wide,
        op,
        value,
    })
}

/// A number for a comparison: a JSON integer, or a string in decimal or
/// `0x` hexadecimal; negative numbers are two's complement at the width.
fn parse_number(what: &str, value: &Value, wide: bool) -> Result<u64, String> {
    let number: Option<i128> = match value {
        Value::Number(number) => number
            .as_u64()
            .map(i128::from)
            .or_else(|| number.as_i64().map(i128::from)),
        Value::String(text) => {
            let (negative, digits) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text.as_str()),
            };
            let magnitude = match digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0X"))
            {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => digits.parse::<u64>().ok(),
            };
            magnitude.map(|m| {
                if negative {
                    -i128::from(m)
                } else {
                    i128::from(m)
                }
            })
        }
        _ => None,
    };
    let Some(number) = number else {
        return Err(format!(
            "the {what} {value} is not an integer (a JSON number, or a string in decimal or 0x hexadecimal)"
        ));
    };
    let (min, max) = if wide {
        (i128::from(i64::MIN), i128::from(u64::MAX))
    } else {
        (i128::from(i32::MIN), i128::from(u32::MAX))
    };
    if number < min || number > max {
        let bits = if wide { 64 } else { 32 };
        return Err(format!("the {what} {value} does not fit in {bits} bits"));
    }
    // Two's complement at the width: -1 is 0xffffffff at 32 bits.
    Ok(if wide {
        number as i64 as u64
    } else {
        u64::from(number as i32 as u32)
    })
}

fn instruction(code: u16, jt: u8, jf: u8, k: u32) -> BpfInstruction {
    BpfInstruction { code, jt, jf, k }
}

fn ret(value: u32) -> BpfInstruction {
    instruction(BPF_RET_K, 0, 0, value)
}

/// What every program starts with: kill a call made through any ABI but
/// x86_64's, another architecture (`int 0x80` reaches the kernel as i386,
/// with i386 numbers) or x32 (the x86_64 architecture with bit 30 of the
/// number set, where numbers mean other calls). seccompiler checks the
/// architecture but not x32. Leaves the call's number in the accumulator.
fn prologue() -> [BpfInstruction; 6] {
    [
        instruction(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        instruction(BPF_JMP_JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
        instruction(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        instruction(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
    ]
}

/// Calls every program allows whatever the policy says: a process that
/// cannot end spins until something kills it, and the filter is installed
/// before `execve`, so a policy refusing everything would trap the exec's
/// own failure path that way.
const ALWAYS_ALLOWED: [c_long; 2] = [libc::SYS_exit, libc::SYS_exit_group];

/// Calls per leaf of the dispatch tree.
const LEAF_CALLS: usize = 4;

/// A place in the program, resolved by [`Assembler::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

#[derive(Debug, Clone, Copy)]
enum Item {
    /// An instruction whose jumps, if any, stay inside its block.
    Fixed(BpfInstruction),
    /// `if A == k` (or `A >= k`) `goto target`, else on.
    Branch {
        code: u16,
        k: u32,
        target: Label,
    },
    Mark(Label),
}

/// Lays the program out: the [`prologue`]; a binary search on the call's
/// number over every call some rule decides; a block per call with
/// argument conditions, whose rules seccompiler compiles; and one shared
/// return per action that some call gets unconditionally.
///
/// seccompiler's own filters test call numbers one after another, five
/// instructions per call. That costs every exec twice: the kernel compiles
/// the program when the filter is installed, and runs it once for every
/// call number to find the calls it can allow without running the filter
/// again (the seccomp action cache). A search tree keeps both short.
///
/// A conditional jump reaches at most 255 instructions ahead; a branch
/// further than that becomes a conditional jump over an unconditional one
/// (`ja` takes 32 bits), decided by relaxation in [`finish`](Self::finish).
#[derive(Debug, Default)]
struct Assembler {
    items: Vec<Item>,
    labels: usize,
}

impl Assembler {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    fn fixed(&mut self, instruction: BpfInstruction) {
        self.items.push(Item::Fixed(instruction));
    }

    fn mark(&mut self, label: Label) {
        self.items.push(Item::Mark(label));
    }

    fn branch(&mut self, code: u16, k: u32, target: Label) {
        self.items.push(Item::Branch { code, k, target });
    }

    /// Binary search over `entries` (sorted by number) on the number in the
    /// accumulator; a number not among them gets `otherwise`.
    fn dispatch(&mut self, entries: &[(u32, Label)], otherwise: BpfInstruction) {
        if entries.len() <= LEAF_CALLS {
            for &(nr, target) in entries {
                self.branch(BPF_JMP_JEQ_K, nr, target);
            }
            self.fixed(otherwise);
            return;
        }
        let (low, high) = entries.split_at(entries.len() / 2);
        let upper = self.label();
        self.branch(BPF_JMP_JGE_K, high[0].0, upper);
        self.dispatch(low, otherwise);
        self.mark(upper);
        self.dispatch(high, otherwise);
    }

    /// The instructions, every branch resolved.
    fn finish(self) -> Vec<BpfInstruction> {
        let mut long = vec![false; self.items.len()];
        let mut at = vec![0usize; self.items.len()];
        let mut labels = vec![0usize; self.labels];
        loop {
            // Lay out with the current choice of short and long branches.
            let mut pc = 0;
            for (index, item) in self.items.iter().enumerate() {
                at[index] = pc;
                match item {
                    Item::Fixed(_) => pc += 1,
                    Item::Branch { .. } => pc += if long[index] { 2 } else { 1 },
                    Item::Mark(label) => labels[label.0] = pc,
                }
            }
            // Lengthen every short branch that cannot reach; moving code
            // only ever lengthens jumps, so this ends.
            let mut changed = false;
            for (index, item) in self.items.iter().enumerate() {
                if let Item::Branch { target, .. } = item {
                    if !long[index] && labels[target.0] - at[index] - 1 > usize::from(u8::MAX) {
                        long[index] = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let mut program = Vec::new();
        for (index, item) in self.items.iter().enumerate() {
            match *item {
                Item::Fixed(instruction) => program.push(instruction),
                Item::Mark(_) => {}
                Item::Branch { code, k, target } => {
                    let distance = labels[target.0] - at[index] - 1;
                    if long[index] {
                        program.push(instruction(code, 0, 1, k));
                        program.push(instruction(BPF_JMP_JA, 0, 0, (distance - 1) as u32));
                    } else {
                        program.push(instruction(code, distance as u8, 0, k));
                    }
                }
            }
        }
        program
    }
}

/// The x86_64 number of a system call, by its kernel name (`"openat"`,
/// `"clone3"`, `"umount2"`), or `None` for a name x86_64 does not have.
pub fn syscall_number(name: &str) -> Option<c_long> {
    LIBC_SYSCALLS
        .iter()
        .chain(NEWER_SYSCALLS)
        .find(|(symbol, _)| symbol.strip_prefix("SYS_").unwrap_or(symbol) == name)
        .map(|&(_, nr)| nr)
}

macro_rules! libc_syscalls {
    ($($symbol:ident)*) => {
        &[$((stringify!($symbol), libc::$symbol)),*]
    };
}

/// Every x86_64 system call the `libc` crate names.
const LIBC_SYSCALLS: &[(&str, c_long)] = libc_syscalls![
    SYS_read SYS_write SYS_open SYS_close SYS_stat SYS_fstat SYS_lstat SYS_poll SYS_lseek
    SYS_mmap SYS_mprotect SYS_munmap SYS_brk SYS_rt_sigaction SYS_rt_sigprocmask
    SYS_rt_sigreturn SYS_ioctl SYS_pread64 SYS_pwrite64 SYS_readv SYS_writev SYS_access SYS_pipe
    SYS_select SYS_sched_yield SYS_mremap SYS_msync SYS_mincore SYS_madvise SYS_shmget SYS_shmat
    SYS_shmctl SYS_dup SYS_dup2 SYS_pause SYS_nanosleep SYS_getitimer SYS_alarm SYS_setitimer
    SYS_getpid SYS_sendfile SYS_socket SYS_connect SYS_accept SYS_sendto SYS_recvfrom
    SYS_sendmsg SYS_recvmsg SYS_shutdown SYS_bind SYS_listen SYS_getsockname SYS_getpeername
    SYS_socketpair SYS_setsockopt SYS_getsockopt SYS_clone SYS_fork SYS_vfork SYS_execve
    SYS_exit SYS_wait4 SYS_kill SYS_uname SYS_semget SYS_semop SYS_semctl SYS_shmdt SYS_msgget
    SYS_msgsnd SYS_msgrcv SYS_msgctl SYS_fcntl SYS_flock SYS_fsync SYS_fdatasync SYS_truncate
    SYS_ftruncate SYS_getdents SYS_getcwd SYS_chdir SYS_fchdir SYS_rename SYS_mkdir SYS_rmdir
    SYS_creat SYS_link SYS_unlink SYS_symlink SYS_readlink SYS_chmod SYS_fchmod SYS_chown
    SYS_fchown SYS_lchown SYS_umask SYS_gettimeofday SYS_getrlimit SYS_getrusage SYS_sysinfo
    SYS_times SYS_ptrace SYS_getuid SYS_syslog SYS_getgid SYS_setuid SYS_setgid SYS_geteuid
    SYS_getegid SYS_setpgid SYS_getppid SYS_getpgrp SYS_setsid SYS_setreuid SYS_setregid
    SYS_getgroups SYS_setgroups SYS_setresuid SYS_getresuid SYS_setresgid SYS_getresgid
    SYS_getpgid SYS_setfsuid SYS_setfsgid SYS_getsid SYS_capget SYS_capset SYS_rt_sigpending
    SYS_rt_sigtimedwait SYS_rt_sigqueueinfo SYS_rt_sigsuspend SYS_sigaltstack SYS_utime
    SYS_mknod SYS_uselib SYS_personality SYS_ustat SYS_statfs SYS_fstatfs SYS_sysfs
    SYS_getpriority SYS_setpriority SYS_sched_setparam SYS_sched_getparam SYS_sched_setscheduler
    SYS_sched_getscheduler SYS_sched_get_priority_max SYS_sched_get_priority_min
    SYS_sched_rr_get_interval SYS_mlock SYS_munlock SYS_mlockall SYS_munlockall SYS_vhangup
    SYS_modify_ldt SYS_pivot_root SYS__sysctl SYS_prctl SYS_arch_prctl SYS_adjtimex
    SYS_setrlimit SYS_chroot SYS_sync SYS_acct SYS_settimeofday SYS_mount SYS_umount2 SYS_swapon
    SYS_swapoff SYS_reboot SYS_sethostname SYS_setdomainname SYS_iopl SYS_ioperm SYS_init_module
    SYS_delete_module SYS_quotactl SYS_nfsservctl SYS_getpmsg SYS_putpmsg SYS_afs_syscall
    SYS_tuxcall SYS_security SYS_gettid SYS_readahead SYS_setxattr SYS_lsetxattr SYS_fsetxattr
    SYS_getxattr SYS_lgetxattr SYS_fgetxattr SYS_listxattr SYS_llistxattr SYS_flistxattr
    SYS_removexattr SYS_lremovexattr SYS_fremovexattr SYS_tkill SYS_time SYS_futex
    SYS_sched_setaffinity SYS_sched_getaffinity SYS_set_thread_area SYS_io_setup SYS_io_destroy
    SYS_io_getevents SYS_io_submit SYS_io_cancel SYS_get_thread_area SYS_lookup_dcookie
    SYS_epoll_create SYS_epoll_ctl_old SYS_epoll_wait_old SYS_remap_file_pages SYS_getdents64
    SYS_set_tid_address SYS_restart_syscall SYS_semtimedop SYS_fadvise64 SYS_timer_create
    SYS_timer_settime SYS_timer_gettime SYS_timer_getoverrun SYS_timer_delete SYS_clock_settime
    SYS_clock_gettime SYS_clock_getres SYS_clock_nanosleep SYS_exit_group SYS_epoll_wait
    SYS_epoll_ctl SYS_tgkill SYS_utimes SYS_vserver SYS_mbind SYS_set_mempolicy
    SYS_get_mempolicy SYS_mq_open SYS_mq_unlink SYS_mq_timedsend SYS_mq_timedreceive
    SYS_mq_notify SYS_mq_getsetattr SYS_kexec_load SYS_waitid SYS_add_key SYS_request_key
    SYS_keyctl SYS_ioprio_set SYS_ioprio_get SYS_inotify_init SYS_inotify_add_watch
    SYS_inotify_rm_watch SYS_migrate_pages SYS_openat SYS_mkdirat SYS_mknodat SYS_fchownat
    SYS_futimesat SYS_newfstatat SYS_unlinkat SYS_renameat SYS_linkat SYS_symlinkat
    SYS_readlinkat SYS_fchmodat SYS_faccessat SYS_pselect6 SYS_ppoll SYS_unshare
    SYS_set_robust_list SYS_get_robust_list SYS_splice SYS_tee SYS_sync_file_range SYS_vmsplice
    SYS_move_pages SYS_utimensat SYS_epoll_pwait SYS_signalfd SYS_timerfd_create SYS_eventfd
    SYS_fallocate SYS_timerfd_settime SYS_timerfd_gettime SYS_accept4 SYS_signalfd4 SYS_eventfd2
    SYS_epoll_create1 SYS_dup3 SYS_pipe2 SYS_inotify_init1 SYS_preadv SYS_pwritev
    SYS_rt_tgsigqueueinfo SYS_perf_event_open SYS_recvmmsg SYS_fanotify_init SYS_fanotify_mark
    SYS_prlimit64 SYS_name_to_handle_at SYS_open_by_handle_at SYS_clock_adjtime SYS_syncfs
    SYS_sendmmsg SYS_setns SYS_getcpu SYS_process_vm_readv SYS_process_vm_writev SYS_kcmp
    SYS_finit_module SYS_sched_setattr SYS_sched_getattr SYS_renameat2 SYS_seccomp SYS_getrandom
    SYS_memfd_create SYS_kexec_file_load SYS_bpf SYS_execveat SYS_userfaultfd SYS_membarrier
    SYS_mlock2 SYS_copy_file_range SYS_preadv2 SYS_pwritev2 SYS_pkey_mprotect SYS_pkey_alloc
    SYS_pkey_free SYS_statx SYS_rseq SYS_pidfd_send_signal SYS_io_uring_setup SYS_io_uring_enter
    SYS_io_uring_register SYS_open_tree SYS_move_mount SYS_fsopen SYS_fsconfig SYS_fsmount
    SYS_fspick SYS_pidfd_open SYS_clone3 SYS_close_range SYS_openat2 SYS_pidfd_getfd
    SYS_faccessat2 SYS_process_madvise SYS_epoll_pwait2 SYS_mount_setattr SYS_quotactl_fd
    SYS_landlock_create_ruleset SYS_landlock_add_rule SYS_landlock_restrict_self
    SYS_memfd_secret SYS_process_mrelease SYS_futex_waitv SYS_set_mempolicy_home_node
    SYS_fchmodat2 SYS_mseal
];

/// x86_64 system calls newer than the `libc` crate's list (or missing from
/// it), with their numbers from the kernel's `syscall_64.tbl`.
const NEWER_SYSCALLS: &[(&str, c_long)] = &[
    ("io_pgetevents", 333),
    ("uretprobe", 335),
    ("cachestat", 451),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("statmount", 457),
    ("listmount", 458),
    ("lsm_get_self_attr", 459),
    ("lsm_set_self_attr", 460),
    ("lsm_list_modules", 461),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("open_tree_attr", 467),
    ("file_getattr", 468),
    ("file_setattr", 469),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `AUDIT_ARCH_I386`: what `int 0x80` reports.
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const LOG: u32 = libc::SECCOMP_RET_LOG;

    fn errno(errno: u32) -> u32 {
        libc::SECCOMP_RET_ERRNO | errno
    }

    /// Runs a classic BPF seccomp program the way the kernel does, for the
    /// instructions the compiler emits, checking as it goes what the kernel
    /// checks when the filter is installed (jumps in range, a return at the
    /// end of every path).
    fn run(program: &[BpfInstruction], arch: u32, nr: i32, args: [u64; 6]) -> u32 {
        run_counting(program, arch, nr, args).0
    }

    /// What the kernel checks when a filter is installed (`bpf_check_classic`
    /// and `seccomp_check_filter`), for the opcodes the compiler emits:
    /// every jump, reachable or not, lands inside the program; loads are
    /// aligned words of `struct seccomp_data`; the last instruction returns.
    fn check(program: &[BpfInstruction]) {
        assert!(!program.is_empty() && program.len() <= MAX_BPF_INSTRUCTIONS);
        let len = program.len();
        for (pc, i) in program.iter().enumerate() {
            match i.code {
                BPF_LD_W_ABS => assert!(i.k % 4 == 0 && i.k < 64, "load {} at {pc}", i.k),
                0x54 | BPF_RET_K => {}
                BPF_JMP_JA => assert!(pc + 1 + (i.k as usize) < len, "ja {} at {pc}", i.k),
                BPF_JMP_JEQ_K | 0x25 | BPF_JMP_JGE_K | 0x45 => {
                    assert!(pc + 1 + usize::from(i.jt) < len, "jt {} at {pc}", i.jt);
                    assert!(pc + 1 + usize::from(i.jf) < len, "jf {} at {pc}", i.jf);
                }
                other => panic!("opcode {other:#x} at {pc}"),
            }
        }
        assert_eq!(
            program[len - 1].code,
            BPF_RET_K,
            "the program ends in a return"
        );
    }

    /// [`run`], also counting the instructions executed.
    fn run_counting(
        program: &[BpfInstruction],
        arch: u32,
        nr: i32,
        args: [u64; 6],
    ) -> (u32, usize) {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for arg in args {
            data.extend_from_slice(&arg.to_ne_bytes());
        }
        let mut a: u32 = 0;
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            let i = program
                .get(pc)
                .unwrap_or_else(|| panic!("ran off the end at {pc}"));
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    let at = i.k as usize;
                    assert!(at % 4 == 0 && at + 4 <= data.len(), "load at {at}");
                    a = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x54 => a &= i.k, // BPF_ALU | BPF_AND | BPF_K
                BPF_JMP_JA => pc += i.k as usize,
                BPF_JMP_JEQ_K | 0x25 | BPF_JMP_JGE_K | 0x45 => {
                    let taken = match i.code {
                        BPF_JMP_JEQ_K => a == i.k,
                        0x25 => a > i.k,
                        BPF_JMP_JGE_K => a >= i.k,
                        _ => a & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                BPF_RET_K => return (i.k, steps),
                other => panic!("unexpected opcode {other:#x} at {}", pc - 1),
            }
        }
    }

    fn call(program: &[BpfInstruction], nr: c_long, args: [u64; 6]) -> u32 {
        run(program, AUDIT_ARCH_X86_64, nr as i32, args)
    }

    fn nr(name: &str) -> c_long {
        syscall_number(name).unwrap_or_else(|| panic!("{name} is not in the table"))
    }

    fn compile(text: &str) -> Vec<BpfInstruction> {
        let program = text
            .parse::<SeccompPolicy>()
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .compile()
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        check(&program);
        program
    }

    fn default_kill_list() -> Vec<String> {
        let value: Value = serde_json::from_str(DEFAULT_SECCOMP_POLICY).unwrap();
        value["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|rule| rule["action"] == "kill")
            .flat_map(|rule| rule["syscall"].as_array().unwrap().clone())
            .map(|name| name.as_str().unwrap().to_owned())
            .collect()
    }

    /// `docs/seccomp.md` explains every call the default policy denies,
    /// and every policy example in it compiles.
    #[test]
    fn docs_match_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/seccomp.md");
        let docs = std::fs::read_to_string(path).expect("docs/seccomp.md");
        let start = docs.find("## The default policy").unwrap();
        let end = start + docs[start..].find("### `clone` and `clone3`").unwrap();
        let table = &docs[start..end];
        for name in default_kill_list().iter().chain(&["clone3".to_owned()]) {
            assert!(
                table.contains(&format!("`{name}`")),
                "the default policy table does not list {name}"
            );
        }
        let examples: Vec<&str> = docs
            .split("```json\n")
            .skip(1)
            .map(|rest| &rest[..rest.find("```").unwrap()])
            .collect();
        assert!(examples.len() >= 4, "{} examples", examples.len());
        for example in examples {
            compile(example);
        }
    }

    #[test]
    fn table_is_consistent() {
        let all: Vec<(&str, c_long)> = LIBC_SYSCALLS
            .iter()
            .map(|&(symbol, nr)| (symbol.strip_prefix("SYS_").unwrap(), nr))
            .chain(NEWER_SYSCALLS.iter().copied())
            .collect();
        assert!(all.len() > 370, "{} entries", all.len());
        let mut names = std::collections::HashSet::new();
        let mut numbers = std::collections::HashSet::new();
        for (name, nr) in &all {
            assert!(names.insert(*name), "{name} twice");
            assert!(numbers.insert(*nr), "{nr} twice ({name})");
            assert!(
                (0..c_long::from(X32_SYSCALL_BIT)).contains(nr),
                "{name} = {nr}"
            );
            assert_eq!(syscall_number(name), Some(*nr));
        }
        assert_eq!(syscall_number("read"), Some(0));
        assert_eq!(syscall_number("clone3"), Some(435));
        assert_eq!(syscall_number("SYS_read"), None);
        assert_eq!(syscall_number("stime"), None, "x86_64 has no stime");
    }

    #[test]
    fn default_policy_compiles_and_is_cached() {
        let program = SeccompPolicy::default_policy().compile().unwrap();
        check(&program);
        assert_eq!(program, SeccompPolicy::default().compile().unwrap());
        assert!(std::ptr::eq(default_program(), default_program()));
        assert_eq!(
            program,
            compile(DEFAULT_SECCOMP_POLICY),
            "the cache holds the default policy's program"
        );
        assert!(SeccompPolicy::none().compile().unwrap().is_empty());
        assert!(SeccompPolicy::none().is_none());
        assert!(!SeccompPolicy::default_policy().is_none());
    }

    #[test]
    fn default_policy_kills_its_list_and_allows_the_rest() {
        let program = default_program();
        let kill = default_kill_list();
        for name in [
            "ptrace",
            "mount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "bpf",
            "keyctl",
            "io_uring_setup",
            "perf_event_open",
            "userfaultfd",
            "kexec_load",
            "init_module",
            "reboot",
            "fsopen",
            "mount_setattr",
        ] {
            assert!(kill.iter().any(|k| k == name), "{name} is not denied");
        }
        for (symbol, number) in LIBC_SYSCALLS.iter().copied() {
            let name = symbol.strip_prefix("SYS_").unwrap();
            let expected = match name {
                "clone" => KILL, // with no arguments: flags 0 → see below
                "clone3" | "inotify_init" | "inotify_init1" | "fanotify_init" => errno(38),
                // Family 0: none of those allowed.
                "socket" | "socketpair" => errno(97),
                "sync" | "syncfs" => errno(0),
                name if kill.iter().any(|k| k == name) => KILL,
                _ => ALLOW,
            };
            if name == "clone" {
                continue;
            }
            assert_eq!(call(program, number, [0; 6]), expected, "{name}");
        }
        for (name, number) in NEWER_SYSCALLS.iter().copied() {
            let expected = if kill.iter().any(|k| k == name) {
                KILL
            } else {
                ALLOW
            };
            assert_eq!(call(program, number, [0; 6]), expected, "{name}");
        }
        assert_eq!(call(program, 999, [0; 6]), ALLOW, "unknown numbers: ENOSYS");
    }

    #[test]
    fn default_policy_allows_unix_and_internet_sockets_only_and_keeps_the_core_limit() {
        let program = default_program();
        let (socket, socketpair) = (nr("socket"), nr("socketpair"));
        let family = |nr, family: i32| call(program, nr, [family as u64, 1, 0, 0, 0, 0]);
        for allowed in [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6] {
            assert_eq!(family(socket, allowed), ALLOW, "socket({allowed})");
        }
        for refused in [
            libc::AF_NETLINK,
            libc::AF_PACKET,
            libc::AF_VSOCK,
            libc::AF_ALG,
            3,
            46,
            -1,
        ] {
            assert_eq!(family(socket, refused), errno(97), "socket({refused})");
        }
        assert_eq!(family(socketpair, libc::AF_UNIX), ALLOW);
        assert_eq!(family(socketpair, libc::AF_INET), errno(97));
        // RLIMIT_CORE (4): reading it is allowed, a change succeeds
        // without taking effect; other limits as before.
        let prlimit = nr("prlimit64");
        assert_eq!(call(program, prlimit, [0, 4, 0, 0x1000, 0, 0]), ALLOW);
        assert_eq!(call(program, prlimit, [0, 4, 0x1000, 0, 0, 0]), errno(0));
        assert_eq!(call(program, prlimit, [0, 7, 0x1000, 0, 0, 0]), ALLOW);
        assert_eq!(call(program, prlimit, [1, 7, 0x1000, 0, 0, 0]), errno(1));
        assert_eq!(
            call(program, nr("setrlimit"), [4, 0x1000, 0, 0, 0, 0]),
            errno(0)
        );
        assert_eq!(
            call(program, nr("setrlimit"), [7, 0x1000, 0, 0, 0, 0]),
            ALLOW
        );
    }

    /// The kernel runs the filter once per call number when it is
    /// installed (the seccomp action cache), and every exec installs it:
    /// the path for any number must stay short.
    #[test]
    fn default_policy_decides_every_call_in_few_steps() {
        let program = default_program();
        assert!(program.len() < 160, "{} instructions", program.len());
        let longest = (0..512)
            .map(|nr| run_counting(program, AUDIT_ARCH_X86_64, nr, [0; 6]).1)
            .max()
            .unwrap();
        assert!(longest <= 24, "{longest} steps");
    }

    #[test]
    fn default_policy_checks_clone_flags() {
        let program = default_program();
        let clone = nr("clone");
        let namespaces = [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWCGROUP,
            0x80, // CLONE_NEWTIME
        ];
        let mask = namespaces.iter().fold(0, |m, f| m | *f as u64);
        assert_eq!(mask, 0x7e02_0080);
        assert!(DEFAULT_SECCOMP_POLICY.contains(&format!("\"{mask:#x}\"")));
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
        let vfork = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
        for flags in [0, thread, fork, vfork, libc::SIGCHLD as u64] {
            assert_eq!(
                call(program, clone, [flags, 1, 2, 3, 4, 5]),
                ALLOW,
                "{flags:#x}"
            );
        }
        for flag in namespaces {
            for base in [0, thread, fork] {
                let flags = base | flag as u64;
                assert_eq!(
                    call(program, clone, [flags, 0, 0, 0, 0, 0]),
                    KILL,
                    "{flags:#x}"
                );
            }
        }
        // The kernel reads the low 32 bits of clone's flags.
        assert_eq!(call(program, clone, [fork | 1 << 40, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            call(program, nr("clone3"), [0; 6]),
            errno(libc::ENOSYS as u32)
        );
    }

    #[test]
    fn other_abis_are_killed() {
        let none_denied = compile(r#"{"default_action": "allow"}"#);
        for program in [default_program(), &none_denied] {
            // i386 getpid through int 0x80, and any i386 number at all.
            assert_eq!(run(program, AUDIT_ARCH_I386, 20, [0; 6]), KILL);
            assert_eq!(run(program, AUDIT_ARCH_I386, 0, [0; 6]), KILL);
            // aarch64 and a made-up architecture.
            assert_eq!(run(program, 0xc000_00b7, 172, [0; 6]), KILL);
            assert_eq!(run(program, 0, 0, [0; 6]), KILL);
            // x32: getpid and ptrace with bit 30, and the top of the range.
            for number in [0x4000_0000 | 39, 0x4000_0000 | 101, 0x4000_0000, -1] {
                assert_eq!(
                    run(program, AUDIT_ARCH_X86_64, number, [0; 6]),
                    KILL,
                    "{number:#x}"
                );
            }
            assert_eq!(call(program, nr("getpid"), [0; 6]), ALLOW);
        }
    }

    #[test]
    fn exit_is_always_allowed() {
        let program = compile(r#"{"default_action": {"errno": 38}}"#);
        assert_eq!(call(&program, nr("exit_group"), [0; 6]), ALLOW);
        assert_eq!(call(&program, nr("exit"), [0; 6]), ALLOW);
        assert_eq!(call(&program, nr("execve"), [0; 6]), errno(38));
        for program in [default_program(), &compile(r#"{"default_action": "kill"}"#)] {
            assert_eq!(call(program, nr("exit_group"), [0; 6]), ALLOW);
            assert_eq!(call(program, nr("exit"), [0; 6]), ALLOW);
        }
        let allowed = compile(
            r#"{"default_action": "kill", "rules": [{"syscall": ["exit", "read"], "action": "allow"}]}"#,
        );
        assert_eq!(call(&allowed, nr("exit"), [0; 6]), ALLOW);
        assert_eq!(call(&allowed, nr("read"), [0; 6]), ALLOW);
        for action in [r#""kill""#, r#""log""#, r#"{"errno": 1}"#] {
            let message = error(&format!(
                r#"{{"default_action": "allow", "rules": [{{"syscall": ["read", "exit_group"], "action": {action}}}]}}"#
            ));
            assert!(
                message.contains("rules[0] (read, exit_group) of the seccomp policy file p.json: exit_group is always allowed"),
                "{message}"
            );
        }
    }

    #[test]
    fn allow_list_with_kill_default() {
        let program = compile(
            r#"{"default_action": "kill",
                "rules": [{"syscall": ["read", "write", "exit_group"], "action": "allow"}]}"#,
        );
        assert_eq!(call(&program, nr("read"), [0; 6]), ALLOW);
        assert_eq!(call(&program, nr("exit_group"), [0; 6]), ALLOW);
        assert_eq!(call(&program, nr("openat"), [0; 6]), KILL);
        assert_eq!(call(&program, nr("getpid"), [0; 6]), KILL);
    }

    #[test]
    fn errno_forms_and_log() {
        let program = compile(
            r#"{"default_action": {"errno": 1},
                "rules": [
                  {"syscall": "ptrace", "action": "errno", "errno": 13},
                  {"syscall": "getpid", "action": {"errno": 0}},
                  {"syscall": "getppid", "action": "log"},
                  {"syscall": "read", "action": "allow"},
                  {"syscall": "write", "action": "kill"}
                ]}"#,
        );
        assert_eq!(call(&program, nr("ptrace"), [0; 6]), errno(13));
        assert_eq!(call(&program, nr("getpid"), [0; 6]), errno(0));
        assert_eq!(call(&program, nr("getppid"), [0; 6]), LOG);
        assert_eq!(call(&program, nr("read"), [0; 6]), ALLOW);
        assert_eq!(call(&program, nr("write"), [0; 6]), KILL);
        assert_eq!(call(&program, nr("openat"), [0; 6]), errno(1));
    }

    #[test]
    fn first_matching_rule_decides() {
        let program = compile(
            r#"{"default_action": "allow",
                "rules": [
                  {"syscall": "openat", "action": {"errno": 2}, "args": [{"arg": 2, "op": "eq", "value": 0}]},
                  {"syscall": "openat", "action": "kill", "args": [{"arg": 2, "op": "le", "value": 1}]},
                  {"syscall": ["openat", "read"], "action": {"errno": 5}},
                  {"syscall": "read", "action": "kill"}
                ]}"#,
        );
        let openat = nr("openat");
        assert_eq!(call(&program, openat, [0, 0, 0, 0, 0, 0]), errno(2));
        assert_eq!(call(&program, openat, [0, 0, 1, 0, 0, 0]), KILL);
        assert_eq!(call(&program, openat, [0, 0, 2, 0, 0, 0]), errno(5));
        assert_eq!(call(&program, nr("read"), [0; 6]), errno(5));
        assert_eq!(call(&program, nr("write"), [0; 6]), ALLOW);
    }

    #[test]
    fn rules_that_change_nothing_cost_nothing() {
        let short = compile(
            r#"{"default_action": "allow", "rules": [{"syscall": "ptrace", "action": "kill"}]}"#,
        );
        let long = compile(
            r#"{"default_action": "allow", "rules": [{"syscall": "ptrace", "action": "kill"},
                {"syscall": "read", "action": "allow"},
                {"syscall": "ptrace", "action": {"errno": 1}},
                {"syscall": "write", "action": "allow", "args": [{"arg": 0, "op": "eq", "value": 1}]}]}"#,
        );
        assert_eq!(short, long);
        let bare = compile(r#"{"default_action": "kill"}"#);
        let same = compile(
            r#"{"default_action": "kill", "rules": [{"syscall": "read", "action": "kill"}]}"#,
        );
        assert_eq!(bare, same);
        assert_eq!(call(&same, nr("read"), [0; 6]), KILL);
    }

    /// Every comparison at both widths, against the same comparison done
    /// in Rust, for values around the edges.
    #[test]
    fn argument_comparisons() {
        let values: [u64; 9] = [
            0,
            1,
            41,
            42,
            43,
            0xffff_ffff,
            0x1_0000_002a,
            0xffff_ffff_ffff_ffd6, // -42
            u64::MAX,
        ];
        for wide in [false, true] {
            let width = if wide { 64 } else { 32 };
            for op in ["eq", "ne", "lt", "le", "gt", "ge", "masked_eq"] {
                for arg in [0u8, 3, 5] {
                    let mask = if op == "masked_eq" {
                        r#", "mask": "0xff0000ff""#
                    } else {
                        ""
                    };
                    let value = if op == "masked_eq" { "\"0x2a\"" } else { "42" };
                    let program = compile(&format!(
                        r#"{{"default_action": "allow", "rules": [{{"syscall": "read", "action": "kill",
                             "args": [{{"arg": {arg}, "width": {width}, "op": "{op}", "value": {value}{mask}}}]}}]}}"#
                    ));
                    for &x in &values {
                        let seen = if wide { x } else { x & 0xffff_ffff };
                        let holds = match op {
                            "eq" => seen == 42,
                            "ne" => seen != 42,
                            "lt" => seen < 42,
                            "le" => seen <= 42,
                            "gt" => seen > 42,
                            "ge" => seen >= 42,
                            _ => seen & 0xff00_00ff == 0x2a,
                        };
                        let mut args = [7u64; 6];
                        args[usize::from(arg)] = x;
                        let expected = if holds { KILL } else { ALLOW };
                        assert_eq!(
                            call(&program, nr("read"), args),
                            expected,
                            "width {width} arg{arg} {x:#x} {op} 42"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn conditions_of_one_rule_all_hold_and_rules_alternate() {
        let program = compile(
            r#"{"default_action": "allow", "rules": [
                {"syscall": "mmap", "action": "kill", "args": [
                    {"arg": 2, "op": "masked_eq", "mask": 4, "value": 4},
                    {"arg": 3, "op": "masked_eq", "mask": 32, "value": 32}]},
                {"syscall": "mmap", "action": "kill", "args": [{"arg": 0, "op": "eq", "value": "-1"}]}
            ]}"#,
        );
        let mmap = nr("mmap");
        assert_eq!(call(&program, mmap, [0, 0, 7, 0x22, 0, 0]), KILL);
        assert_eq!(call(&program, mmap, [0, 0, 3, 0x22, 0, 0]), ALLOW);
        assert_eq!(call(&program, mmap, [0, 0, 7, 0x02, 0, 0]), ALLOW);
        assert_eq!(call(&program, mmap, [u64::MAX, 0, 0, 0, 0, 0]), KILL);
    }

    /// Rules with enough conditions that seccompiler's jumps to the next
    /// rule need its intermediate hops.
    #[test]
    fn rules_with_many_conditions() {
        let conditions: Vec<String> = (0..60)
            .map(|i| format!(r#"{{"arg": {}, "op": "ne", "value": {i}}}"#, i % 6))
            .collect();
        let program = compile(&format!(
            r#"{{"default_action": "allow", "rules": [
                {{"syscall": "openat", "action": "kill", "args": [{}]}},
                {{"syscall": "openat", "action": {{"errno": 9}}, "args": [{}]}}]}}"#,
            conditions.join(","),
            conditions[..50].join(",")
        ));
        let openat = nr("openat");
        assert_eq!(call(&program, openat, [100; 6]), KILL);
        for i in 0..60u64 {
            let mut args = [100; 6];
            args[(i % 6) as usize] = i;
            let expected = if i < 50 { ALLOW } else { errno(9) };
            assert_eq!(
                call(&program, openat, args),
                expected,
                "condition {i} fails"
            );
        }
    }

    /// Many segments, long enough that jumps over them need more than the
    /// 8-bit conditional offsets.
    #[test]
    fn long_programs_jump_correctly() {
        let names: Vec<&str> = LIBC_SYSCALLS
            .iter()
            .map(|(symbol, _)| symbol.strip_prefix("SYS_").unwrap())
            .filter(|name| !matches!(*name, "exit" | "exit_group"))
            .take(300)
            .collect();
        let rules: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let action = if i % 2 == 0 {
                    format!("{{\"errno\": {}}}", i + 1)
                } else {
                    "\"allow\"".into()
                };
                format!(
                    r#"{{"syscall": "{name}", "action": {action}, "args": [{{"arg": 1, "op": "ne", "value": {i}}}]}}"#
                )
            })
            .collect();
        let text = format!(
            r#"{{"default_action": "kill", "rules": [{}]}}"#,
            rules.join(",")
        );
        let program = compile(&text);
        assert!(program.len() > 2000, "{} instructions", program.len());
        assert!(
            program
                .iter()
                .any(|i| i.code == BPF_JMP_JA && i.k > u32::from(u8::MAX)),
            "no branch needed the long form"
        );
        for (i, name) in names.iter().enumerate() {
            let expected = if i % 2 == 0 {
                errno(i as u32 + 1)
            } else {
                ALLOW
            };
            assert_eq!(
                call(&program, nr(name), [0, 9999, 0, 0, 0, 0]),
                expected,
                "{name}"
            );
            assert_eq!(
                call(&program, nr(name), [0, i as u64, 0, 0, 0, 0]),
                KILL,
                "{name}"
            );
        }
    }

    #[test]
    fn too_large_policies_are_refused() {
        let rules: Vec<String> = (0..1500)
            .map(|i| format!(r#"{{"syscall": "read", "action": "kill", "args": [{{"arg": 0, "op": "eq", "value": {i}}}]}}"#))
            .collect();
        let text = format!(
            r#"{{"default_action": "allow", "rules": [{}]}}"#,
            rules.join(",")
        );
        let error = text
            .parse::<SeccompPolicy>()
            .unwrap()
            .compile()
            .unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(
                error,
                SeccompError::TooLarge { .. } | SeccompError::Compile { .. }
            ),
            "{message}"
        );
        assert!(message.contains("the seccomp policy"), "{message}");
    }

    fn error(text: &str) -> String {
        let error = SeccompPolicy::from_text(text, "the seccomp policy file p.json").unwrap_err();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        assert!(message.contains("p.json"), "{message}");
        message
    }

    #[test]
    fn errors_say_what_and_where() {
        let cases: &[(&str, &str)] = &[
            ("", "is not a valid policy: EOF while parsing"),
            ("{", "is not a valid policy"),
            (r#"{"rules": []}"#, "missing field `default_action`"),
            (
                r#"{"default_action": "allow", "extra": 1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"default_action": "deny"}"#,
                r#"default_action of the seccomp policy file p.json: unknown action "deny""#,
            ),
            (
                r#"{"default_action": "errno"}"#,
                r#"action "errno" needs an "errno": N field"#,
            ),
            (
                r#"{"default_action": {"errno": 4096}}"#,
                "the errno 4096 is not a number from 0 to 4095",
            ),
            (
                r#"{"default_action": {"errno": -1}}"#,
                "the errno -1 is not",
            ),
            (
                r#"{"default_action": {"errno": 1, "x": 2}}"#,
                "is not one of",
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "ptrace", "action": "kill"}, {"syscall": "fork_bomb", "action": "kill"}]}"#,
                r#"unknown system call "fork_bomb" in rules[1] of the seccomp policy file p.json"#,
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": [], "action": "kill"}]}"#,
                r#"rules[0] of the seccomp policy file p.json: "syscall" lists no system call"#,
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": 101, "action": "kill"}]}"#,
                "must be a name or a list of names",
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "ptrace", "action": "kill", "errno": 1}]}"#,
                r#"rules[0] (ptrace) of the seccomp policy file p.json: an "errno" field goes only with action "errno""#,
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "ptrace", "action": {"errno": 1}, "errno": 1}]}"#,
                "give the errno once",
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "read", "action": "kill", "args": [{"arg": 6, "op": "eq", "value": 0}]}]}"#,
                "argument 6 does not exist",
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "read", "action": "kill", "args": [{"arg": 0, "width": 16, "op": "eq", "value": 0}]}]}"#,
                "the width 16 is not 32 or 64",
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "read", "action": "kill", "args": [{"arg": 0, "op": "approx", "value": 0}]}]}"#,
                r#"unknown op "approx""#,
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "read", "action": "kill", "args": [{"arg": 0, "op": "masked_eq", "value": 0}]}]}"#,
                r#"op "masked_eq" needs a "mask""#,
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "read", "action": "kill", "args": [{"arg": 0, "op": "eq", "mask": 1, "value": 0}]}]}"#,
                r#"a "mask" goes only with op "masked_eq""#,
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "read", "action": "kill", "args": [{"arg": 0, "op": "masked_eq", "mask": 1, "value": 2}]}]}"#,
                "has bits outside the mask",
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "read", "action": "kill", "args": [{"arg": 0, "width": 32, "op": "eq", "value": "0x100000000"}]}]}"#,
                "does not fit in 32 bits",
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "read", "action": "kill", "args": [{"arg": 0, "op": "eq", "value": "ten"}]}]}"#,
                r#"the value "ten" is not an integer"#,
            ),
            (
                r#"{"default_action": "allow", "rules": [{"syscall": "read", "action": "kill", "args": [{"arg": 0, "op": "eq", "value": 1.5}]}]}"#,
                "the value 1.5 is not an integer",
            ),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(
                message.contains(expected),
                "{text}\n  gave {message}\n  expected {expected}"
            );
        }
    }

    #[test]
    fn numbers_in_every_spelling() {
        let parse = |value: &str, width: u32| {
            let text = format!(
                r#"{{"default_action": "allow", "rules": [{{"syscall": "read", "action": "kill",
                    "args": [{{"arg": 0, "width": {width}, "op": "eq", "value": {value}}}]}}]}}"#
            );
            match text.parse::<SeccompPolicy>().unwrap().kind {
                Kind::Custom(policy) => policy.rules[0].conditions[0].value,
                _ => unreachable!(),
            }
        };
        assert_eq!(parse("42", 64), 42);
        assert_eq!(parse("\"42\"", 64), 42);
        assert_eq!(parse("\"0x2A\"", 64), 42);
        assert_eq!(parse("-100", 64), (-100i64) as u64);
        assert_eq!(parse("-100", 32), u64::from((-100i32) as u32));
        assert_eq!(parse("\"-0x1\"", 32), 0xffff_ffff);
        assert_eq!(parse("18446744073709551615", 64), u64::MAX);
        assert_eq!(parse("4294967295", 32), 0xffff_ffff);
    }

    #[test]
    fn files_are_named_in_errors() {
        let missing = SeccompPolicy::from_file("/nonexistent/policy.json").unwrap_err();
        assert!(matches!(missing, SeccompError::Read { .. }));
        assert_eq!(
            missing.to_string(),
            "cannot read the seccomp policy file /nonexistent/policy.json"
        );
        let dir = std::env::temp_dir().join(format!("hutch-seccomp-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.json");
        std::fs::write(
            &path,
            r#"{"default_action": "allow", "rules": [{"syscall": "nosuch", "action": "kill"}]}"#,
        )
        .unwrap();
        let message = SeccompPolicy::from_file(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            message,
            format!(
                "unknown system call \"nosuch\" in rules[0] of the seccomp policy file {}",
                path.display()
            )
        );
    }
}

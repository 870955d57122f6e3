//! A small classic-BPF compiler for seccomp allowlists.
//!
//! The kernel's cost of installing a filter grows with its length (about 1.7 µs per
//! instruction on our 2-core reference machine; see the seccomp section of
//! BENCHMARKS.md), and every syscall the sandbox makes runs it. So instead of one
//! compare per allowed syscall, the program compares the syscall number against the
//! boundaries of runs of consecutive numbers that share an action ("segments"): about
//! 124 instructions for the default policy, against ~2300 for seccompiler's stacked
//! per-section filters.
//!
//! Layout: arch check (foreign ABI -> kill process), load the syscall number, one
//! `JGT hi` per segment jumping to that segment's action, the shared return
//! instructions, then one block per syscall with argument conditions.

use std::collections::BTreeMap;

/// seccomp return values.
pub(super) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
pub(super) const RET_ALLOW: u32 = 0x7fff_0000;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const ALU_AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

/// offsetof(struct seccomp_data, ...).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// A comparison of one syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// arg == val
    Eq,
    /// arg != val
    Ne,
    /// (arg & mask) == val
    MaskedEq(u64),
}

/// One argument condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cond {
    /// Argument index, 0-5.
    pub index: u8,
    /// Compare all 64 bits (true) or only the low 32 ("dword", for int arguments the
    /// kernel truncates, so high bits cannot slip past).
    pub qword: bool,
    pub op: Op,
    pub val: u64,
}

/// What the filter answers for one syscall number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    Allow,
    Errno(u16),
    /// Allowed when any rule's conditions all hold; EPERM otherwise.
    Conditional(Vec<Vec<Cond>>),
}

/// The program could not be laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TooLong(pub usize);

#[derive(Debug, Clone, Copy)]
enum Jump {
    Next,
    To(usize),
}

#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u16,
    jt: Jump,
    jf: Jump,
    k: u32,
}

/// Emits instructions with symbolic jump targets (label ids), then resolves them.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.insns.len());
    }
    fn emit(&mut self, code: u16, k: u32, jt: Jump, jf: Jump) {
        self.insns.push(Insn { code, jt, jf, k });
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.emit(code, k, Jump::Next, Jump::Next);
    }
    fn finish(self) -> Result<Vec<libc::sock_filter>, TooLong> {
        let len = self.insns.len();
        if len > u16::MAX as usize {
            return Err(TooLong(len));
        }
        let target = |i: usize, j: Jump| -> Result<u32, TooLong> {
            match j {
                Jump::Next => Ok(0),
                Jump::To(l) => {
                    let at = self.labels[l].ok_or(TooLong(len))?;
                    at.checked_sub(i + 1).map(|d| d as u32).ok_or(TooLong(len))
                }
            }
        };
        let mut out = Vec::with_capacity(len);
        for (i, insn) in self.insns.iter().enumerate() {
            let (jt, jf, k) = if insn.code == JMP_JA {
                (0, 0, target(i, insn.jt)?)
            } else {
                let jt = target(i, insn.jt)?;
                let jf = target(i, insn.jf)?;
                if jt > 255 || jf > 255 {
                    return Err(TooLong(len));
                }
                (jt as u8, jf as u8, insn.k)
            };
            out.push(libc::sock_filter {
                code: insn.code,
                jt,
                jf,
                k,
            });
        }
        Ok(out)
    }
}

/// Compiles `actions` (syscall number -> action; every other number gets
/// `default`) for the audit architecture `arch`.
pub(super) fn compile(
    arch: u32,
    actions: &BTreeMap<u32, Action>,
    default: &Action,
) -> Result<Vec<libc::sock_filter>, TooLong> {
    // Segments: (last number, action), ascending, covering 0..=u32::MAX.
    let mut segments: Vec<(u32, &Action)> = Vec::new();
    let mut next = 0u32;
    for (&nr, action) in actions {
        if nr > next {
            push_segment(&mut segments, nr - 1, default);
        }
        push_segment(&mut segments, nr, action);
        next = nr.saturating_add(1);
    }
    if segments.last().map(|s| s.0) != Some(u32::MAX) {
        push_segment(&mut segments, u32::MAX, default);
    }

    let mut asm = Asm::default();
    let arch_ok = asm.label();
    asm.stmt(LD_W_ABS, OFF_ARCH);
    asm.emit(JMP_JEQ_K, arch, Jump::To(arch_ok), Jump::Next);
    asm.stmt(RET_K, RET_KILL_PROCESS);
    asm.bind(arch_ok);
    asm.stmt(LD_W_ABS, OFF_NR);

    // Shared return instructions and conditional blocks get labels now, code later.
    let mut returns: BTreeMap<u32, usize> = BTreeMap::new();
    let mut blocks: Vec<(usize, &Vec<Vec<Cond>>)> = Vec::new();
    let mut target_of = |asm: &mut Asm, action: &'_ Action| -> usize {
        match action {
            Action::Allow => *returns.entry(RET_ALLOW).or_insert_with(|| asm.label()),
            Action::Errno(e) => *returns
                .entry(RET_ERRNO | *e as u32)
                .or_insert_with(|| asm.label()),
            Action::Conditional(_) => usize::MAX,
        }
    };
    let mut targets = Vec::with_capacity(segments.len());
    for (_, action) in &segments {
        let t = match action {
            Action::Conditional(rules) => {
                let l = asm.label();
                blocks.push((l, rules));
                l
            }
            other => target_of(&mut asm, other),
        };
        targets.push(t);
    }
    for (i, (hi, _)) in segments.iter().enumerate() {
        if *hi == u32::MAX {
            asm.emit(JMP_JA, 0, Jump::To(targets[i]), Jump::Next);
        } else {
            asm.emit(JMP_JGT_K, *hi, Jump::Next, Jump::To(targets[i]));
        }
    }
    for (ret, label) in &returns {
        asm.bind(*label);
        asm.stmt(RET_K, *ret);
    }
    for (label, rules) in blocks {
        asm.bind(label);
        if let Some((index, mask, values)) = same_word_alternatives(rules) {
            // mknod-like "(arg & mask) == v1 || == v2 || ...": one load, one compare
            // per alternative.
            let allow = asm.label();
            asm.stmt(LD_W_ABS, OFF_ARGS + 8 * index as u32);
            if let Some(m) = mask {
                asm.stmt(ALU_AND_K, m);
            }
            for v in values {
                asm.emit(JMP_JEQ_K, v, Jump::To(allow), Jump::Next);
            }
            asm.stmt(RET_K, RET_ERRNO | libc::EPERM as u32);
            asm.bind(allow);
            asm.stmt(RET_K, RET_ALLOW);
            continue;
        }
        for rule in rules {
            let fail = asm.label();
            let mut loaded = None;
            for c in rule {
                loaded = emit_cond(&mut asm, c, fail, loaded);
            }
            asm.stmt(RET_K, RET_ALLOW);
            asm.bind(fail);
        }
        asm.stmt(RET_K, RET_ERRNO | libc::EPERM as u32);
    }
    asm.finish()
}

/// When every rule is one 32-bit `Eq`/`MaskedEq` test of the same argument with the
/// same mask, returns (arg index, mask, the values any of which allows the call).
fn same_word_alternatives(rules: &[Vec<Cond>]) -> Option<(u8, Option<u32>, Vec<u32>)> {
    let mut shape: Option<(u8, Option<u32>)> = None;
    let mut values = Vec::new();
    for rule in rules {
        let [c] = rule.as_slice() else { return None };
        if c.qword {
            return None;
        }
        let mask = match c.op {
            Op::Eq => None,
            Op::MaskedEq(m) => Some(m as u32),
            Op::Ne => return None,
        };
        match shape {
            None => shape = Some((c.index, mask)),
            Some(s) if s == (c.index, mask) => {}
            Some(_) => return None,
        }
        values.push(c.val as u32);
    }
    shape.map(|(i, m)| (i, m, values))
}

fn push_segment<'a>(segments: &mut Vec<(u32, &'a Action)>, hi: u32, action: &'a Action) {
    if let Some(last) = segments.last_mut() {
        if last.1 == action && !matches!(action, Action::Conditional(_)) {
            last.0 = hi;
            return;
        }
    }
    segments.push((hi, action));
}

/// Falls through when the condition holds, jumps to `fail` otherwise. `loaded` is the
/// argument word the accumulator already holds unmodified (its offset), if any; the
/// return value is what it holds afterwards. Saves reloading the same word for
/// consecutive tests of one argument (ioctl's two `!=`).
fn emit_cond(asm: &mut Asm, c: &Cond, fail: usize, loaded: Option<u32>) -> Option<u32> {
    let lo = OFF_ARGS + 8 * c.index as u32;
    let hi = lo + 4;
    let (vlo, vhi) = (c.val as u32, (c.val >> 32) as u32);
    let load_lo = |asm: &mut Asm, loaded: Option<u32>| {
        if loaded != Some(lo) {
            asm.stmt(LD_W_ABS, lo);
        }
    };
    match c.op {
        Op::Eq | Op::MaskedEq(_) => {
            let (mlo, mhi) = match c.op {
                Op::MaskedEq(m) => (Some(m as u32), Some((m >> 32) as u32)),
                _ => (None, None),
            };
            let mut loaded = loaded;
            if c.qword {
                asm.stmt(LD_W_ABS, hi);
                if let Some(m) = mhi {
                    asm.stmt(ALU_AND_K, m);
                }
                asm.emit(JMP_JEQ_K, vhi, Jump::Next, Jump::To(fail));
                loaded = None;
            }
            load_lo(asm, loaded);
            if let Some(m) = mlo {
                asm.stmt(ALU_AND_K, m);
            }
            asm.emit(JMP_JEQ_K, vlo, Jump::Next, Jump::To(fail));
            mlo.is_none().then_some(lo)
        }
        Op::Ne => {
            let pass = asm.label();
            let mut loaded = loaded;
            if c.qword {
                asm.stmt(LD_W_ABS, hi);
                asm.emit(JMP_JEQ_K, vhi, Jump::Next, Jump::To(pass));
                loaded = None;
            }
            load_lo(asm, loaded);
            asm.emit(JMP_JEQ_K, vlo, Jump::To(fail), Jump::Next);
            asm.bind(pass);
            // After the qword form, a jump to `pass` arrives with the high word loaded.
            (!c.qword).then_some(lo)
        }
    }
}

/// A classic-BPF interpreter for seccomp programs, used by the tests to check what a
/// program answers without installing it.
#[cfg(test)]
pub(super) fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let f = prog[pc];
        pc += 1;
        match f.code {
            0x20 => {
                let o = f.k as usize;
                acc = u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
            }
            0x54 => acc &= f.k,
            0x05 => pc += f.k as usize,
            0x15 => pc += if acc == f.k { f.jt } else { f.jf } as usize,
            0x25 => pc += if acc > f.k { f.jt } else { f.jf } as usize,
            0x35 => pc += if acc >= f.k { f.jt } else { f.jf } as usize,
            0x45 => pc += if acc & f.k != 0 { f.jt } else { f.jf } as usize,
            0x06 => return f.k,
            other => panic!("unsupported BPF opcode {other:#x} at {}", pc - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARCH: u32 = 0xC000_003E;

    fn eperm() -> u32 {
        RET_ERRNO | libc::EPERM as u32
    }

    #[test]
    fn segments_merge_and_everything_else_is_denied() {
        let mut a = BTreeMap::new();
        for nr in [0, 1, 2, 3, 7, 8] {
            a.insert(nr, Action::Allow);
        }
        a.insert(10, Action::Errno(38));
        let p = compile(ARCH, &a, &Action::Errno(1)).unwrap();
        for nr in 0..20u32 {
            let want = match nr {
                0..=3 | 7 | 8 => RET_ALLOW,
                10 => RET_ERRNO | 38,
                _ => eperm(),
            };
            assert_eq!(run(&p, ARCH, nr, [0; 6]), want, "nr {nr}");
        }
        assert_eq!(run(&p, ARCH, 0x4000_0000, [0; 6]), eperm(), "x32 numbers");
        assert_eq!(run(&p, ARCH, u32::MAX, [0; 6]), eperm());
        assert_eq!(
            run(&p, 0x4000_0003, 0, [0; 6]),
            RET_KILL_PROCESS,
            "foreign arch"
        );
        // 3 arch + 1 load + 6 segments + 3 returns
        assert!(p.len() <= 13, "{}", p.len());
    }

    #[test]
    fn conditions_and_or_and_dword_truncation() {
        let mut a = BTreeMap::new();
        // ioctl-like: arg1 != 0x5412 && arg1 != 0x541C (dword)
        a.insert(
            16,
            Action::Conditional(vec![vec![
                Cond {
                    index: 1,
                    qword: false,
                    op: Op::Ne,
                    val: 0x5412,
                },
                Cond {
                    index: 1,
                    qword: false,
                    op: Op::Ne,
                    val: 0x541C,
                },
            ]]),
        );
        // mknod-like: (arg1 & S_IFMT) == S_IFIFO || == S_IFREG
        a.insert(
            133,
            Action::Conditional(vec![
                vec![Cond {
                    index: 1,
                    qword: false,
                    op: Op::MaskedEq(0o170000),
                    val: 0o010000,
                }],
                vec![Cond {
                    index: 1,
                    qword: false,
                    op: Op::MaskedEq(0o170000),
                    val: 0o100000,
                }],
            ]),
        );
        // qword eq and ne
        a.insert(
            200,
            Action::Conditional(vec![vec![Cond {
                index: 0,
                qword: true,
                op: Op::Eq,
                val: 1 << 33,
            }]]),
        );
        a.insert(
            201,
            Action::Conditional(vec![vec![Cond {
                index: 0,
                qword: true,
                op: Op::Ne,
                val: 1 << 33,
            }]]),
        );
        let p = compile(ARCH, &a, &Action::Errno(1)).unwrap();
        let args = |i: usize, v: u64| {
            let mut x = [0u64; 6];
            x[i] = v;
            x
        };
        assert_eq!(run(&p, ARCH, 16, args(1, 0x5401)), RET_ALLOW);
        assert_eq!(run(&p, ARCH, 16, args(1, 0x5412)), eperm());
        assert_eq!(
            run(&p, ARCH, 16, args(1, 0x1_0000_5412)),
            eperm(),
            "high bits ignored"
        );
        assert_eq!(run(&p, ARCH, 16, args(1, 0x541C)), eperm());
        assert_eq!(run(&p, ARCH, 133, args(1, 0o010644)), RET_ALLOW);
        assert_eq!(run(&p, ARCH, 133, args(1, 0o100644)), RET_ALLOW);
        assert_eq!(
            run(&p, ARCH, 133, args(1, 0o020644)),
            eperm(),
            "char device"
        );
        assert_eq!(run(&p, ARCH, 200, args(0, 1 << 33)), RET_ALLOW);
        assert_eq!(run(&p, ARCH, 200, args(0, 1 << 32)), eperm());
        assert_eq!(run(&p, ARCH, 200, args(0, (1 << 33) | 1)), eperm());
        assert_eq!(run(&p, ARCH, 201, args(0, 1 << 33)), eperm());
        assert_eq!(run(&p, ARCH, 201, args(0, 1 << 32)), RET_ALLOW);
        assert_eq!(run(&p, ARCH, 201, args(0, (1 << 33) | 1)), RET_ALLOW);
        assert_eq!(run(&p, ARCH, 17, [0; 6]), eperm());
    }
}

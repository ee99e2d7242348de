package seccomp

import (
	"fmt"
	"runtime"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/urun-dev/urun/capability"
)

// The layout of struct seccomp_data: the filter's input.
const (
	offNr   = 0  // int nr
	offArch = 4  // __u32 arch
	offArgs = 16 // __u64 args[6], little-endian on x86_64
)

// x32Bit marks the x32 ABI's system call numbers (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

// maxInsns is the kernel's limit on a filter's length (BPF_MAXINSNS).
const maxInsns = 4096

// Config says what a profile is compiled for.
type Config struct {
	// Caps is the container's resolved capability set (its bounding set):
	// profile rules with includes/excludes "caps" are decided by it.
	Caps capability.Set
	// KernelRelease decides rules with "minKernel"; empty means the
	// running kernel's (uname -r).
	KernelRelease string
}

// Program is a compiled filter and the seccomp(2) flags its profile asks
// for.
type Program struct {
	Filter []unix.SockFilter
	Flags  uint // SECCOMP_FILTER_FLAG_*, from the profile's "flags"
}

// Compile turns p into a classic BPF filter for x86_64 processes with the
// capabilities cfg.Caps. The filter
//
//   - kills the process (SECCOMP_RET_KILL_PROCESS) for a system call of
//     another architecture (i386 through int 0x80) or of the x32 ABI;
//   - for a system call the profile names, returns the action of the first
//     rule (in profile order) whose argument conditions all hold, or the
//     default action when none does;
//   - returns ENOSYS for a number above every system call the profile
//     names (a system call newer than the profile, so that libc falls back
//     as on an older kernel), and the default action for the others.
func Compile(p *Profile, cfg Config) (*Program, error) {
	if len(syscallNumbers) == 0 {
		return nil, fmt.Errorf("seccomp: filters are compiled for linux/amd64 only, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	release := cfg.KernelRelease
	if release == "" {
		var err error
		if release, err = runningKernel(); err != nil {
			return nil, err
		}
	}
	pl, err := newPlan(p.p, cfg.Caps, release)
	if err != nil {
		return nil, err
	}
	filter, err := pl.assemble()
	if err != nil {
		return nil, err
	}
	return &Program{Filter: filter, Flags: pl.flags}, nil
}

// segment is a run of system call numbers from lo up to the next segment's
// lo: either all with one return value, or one number with rules.
type segment struct {
	lo    uint32
	ret   uint32
	rules []rule // non-nil: the rules of number lo alone
}

// segments cuts the numbers 0..2^32-1 into runs.
func (pl *plan) segments() []segment {
	var segs []segment
	add := func(s segment) {
		if n := len(segs); n > 0 && s.rules == nil && segs[n-1].rules == nil && segs[n-1].ret == s.ret {
			return // extends the previous run
		}
		segs = append(segs, s)
	}
	for nr := 0; nr <= pl.maxKnown; nr++ {
		rs := pl.rules[nr]
		switch {
		case len(rs) == 0:
			add(segment{lo: uint32(nr), ret: pl.defaultRet})
		case len(rs[0].conds) == 0:
			add(segment{lo: uint32(nr), ret: rs[0].ret})
		default:
			add(segment{lo: uint32(nr), rules: rs})
		}
	}
	add(segment{lo: uint32(pl.maxKnown + 1), ret: pl.unknownRet})
	return segs
}

// assemble writes the filter: architecture check, x32 check, then a binary
// search over the segments on the system call number.
func (pl *plan) assemble() ([]unix.SockFilter, error) {
	var a asm
	high := a.newLabel()
	a.load(offArch)
	a.jumpIf(unix.BPF_JEQ, unix.AUDIT_ARCH_X86_64, a.skip(1))
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	a.load(offNr)
	a.jumpIf(unix.BPF_JGE, x32Bit, high)
	a.search(pl.segments(), pl)
	a.place(high)
	// -1 is no system call (a tracer's way to skip one): the kernel answers
	// ENOSYS; everything else up here is x32.
	a.jumpIf(unix.BPF_JEQ, 0xffffffff, a.skip(1))
	a.ret(unix.SECCOMP_RET_KILL_PROCESS)
	a.ret(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	out, err := a.link()
	if err != nil {
		return nil, err
	}
	if len(out) > maxInsns {
		return nil, fmt.Errorf("%w: %d instructions, the kernel takes at most %d", ErrTooLarge, len(out), maxInsns)
	}
	return out, nil
}

// search emits the binary search over segs; the accumulator holds the
// system call number on entry, and every path ends in a return.
func (a *asm) search(segs []segment, pl *plan) {
	if len(segs) == 1 {
		a.leaf(segs[0], pl)
		return
	}
	mid := len(segs) / 2
	right := a.newLabel()
	a.jumpIf(unix.BPF_JGE, segs[mid].lo, right)
	a.search(segs[:mid], pl)
	a.place(right)
	a.search(segs[mid:], pl)
}

func (a *asm) leaf(s segment, pl *plan) {
	if s.rules == nil {
		a.ret(s.ret)
		return
	}
	for _, r := range s.rules {
		if len(r.conds) == 0 {
			a.ret(r.ret)
			return
		}
		next := a.newLabel()
		for _, c := range r.conds {
			a.cond(c, next)
		}
		a.ret(r.ret)
		a.place(next)
	}
	a.ret(pl.defaultRet)
}

// cond emits the 64-bit comparison c of an argument, jumping to fail when
// it does not hold and falling through when it does.
func (a *asm) cond(c cond, fail label) {
	lo := uint32(offArgs + 8*c.index)
	hi := lo + 4
	vLo, vHi := uint32(c.value), uint32(c.value>>32)
	switch c.op {
	case specs.OpEqualTo:
		a.load(hi)
		a.jumpUnless(unix.BPF_JEQ, vHi, fail)
		a.load(lo)
		a.jumpUnless(unix.BPF_JEQ, vLo, fail)
	case specs.OpNotEqual:
		ok := a.newLabel()
		a.load(hi)
		a.jumpUnless(unix.BPF_JEQ, vHi, ok)
		a.load(lo)
		a.jumpIf(unix.BPF_JEQ, vLo, fail)
		a.place(ok)
	case specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpLessThan, specs.OpLessEqual:
		// The high words decide unless they are equal; then the low ones.
		ok := a.newLabel()
		a.load(hi)
		if c.op == specs.OpGreaterThan || c.op == specs.OpGreaterEqual {
			a.jumpIf(unix.BPF_JGT, vHi, ok)
		} else {
			a.jumpUnless(unix.BPF_JGE, vHi, ok)
		}
		a.jumpUnless(unix.BPF_JEQ, vHi, fail)
		a.load(lo)
		switch c.op {
		case specs.OpGreaterThan:
			a.jumpUnless(unix.BPF_JGT, vLo, fail)
		case specs.OpGreaterEqual:
			a.jumpUnless(unix.BPF_JGE, vLo, fail)
		case specs.OpLessThan:
			a.jumpIf(unix.BPF_JGE, vLo, fail)
		default: // OpLessEqual
			a.jumpIf(unix.BPF_JGT, vLo, fail)
		}
		a.place(ok)
	case specs.OpMaskedEqual:
		mask, want := c.value, c.valueTwo
		a.load(hi)
		a.and(uint32(mask >> 32))
		a.jumpUnless(unix.BPF_JEQ, uint32(want>>32), fail)
		a.load(lo)
		a.and(uint32(mask))
		a.jumpUnless(unix.BPF_JEQ, uint32(want), fail)
	}
}

package seccomp

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	mobyseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/urun-dev/urun/capability"
)

// nativeArch is the libseccomp name of the one architecture we filter, as
// profiles name it in includes/excludes "arches".
const nativeArch = "amd64"

// cond is one argument comparison of a rule.
type cond struct {
	index    uint
	op       specs.LinuxSeccompOperator
	value    uint64
	valueTwo uint64
}

// rule is one profile rule for one system call: its conditions all hold,
// it returns ret.
type rule struct {
	ret   uint32
	conds []cond
}

// plan is a profile resolved for one container: which rules apply to each
// system call number, after the capability, architecture and kernel
// conditions have been decided.
type plan struct {
	defaultRet uint32         // a system call the profile knows but no rule allows
	unknownRet uint32         // a number above every system call the profile names
	maxKnown   int            // the highest number the profile names
	rules      map[int][]rule // by number, in profile order
	flags      uint
}

// kernelVersion is a kernel's "major.minor", the precision of a profile's
// minKernel.
type kernelVersion struct{ major, minor uint64 }

func (k kernelVersion) atLeast(m *mobyseccomp.KernelVersion) bool {
	return k.major > m.Kernel || k.major == m.Kernel && k.minor >= m.Major
}

func parseKernel(release string) (kernelVersion, error) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return kernelVersion{}, fmt.Errorf("kernel release %q: want MAJOR.MINOR[.PATCH]", release)
	}
	major, err1 := strconv.ParseUint(parts[0], 10, 32)
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(parts[1])
	}
	minor, err2 := strconv.ParseUint(parts[1][:digits], 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return kernelVersion{}, fmt.Errorf("kernel release %q: want MAJOR.MINOR[.PATCH]: %w", release, err)
	}
	return kernelVersion{major, minor}, nil
}

func runningKernel() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("kernel version: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// retValue turns a profile action into the filter's return value.
func retValue(action specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := func() (uint32, error) {
		e := uint(unix.EPERM)
		if errnoRet != nil {
			e = *errnoRet
		}
		if e > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("%w: errno %d of action %s does not fit in 16 bits", ErrProfile, e, action)
		}
		return uint32(e), nil
	}
	switch action {
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActErrno:
		e, err := data()
		return unix.SECCOMP_RET_ERRNO | e, err
	case specs.ActTrace:
		e, err := data()
		return unix.SECCOMP_RET_TRACE | e, err
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return 0, fmt.Errorf("%w: action %s needs a seccomp agent, which urun does not support", ErrProfile, action)
	}
	return 0, fmt.Errorf("%w: unknown action %q (want one of SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_TRACE, SCMP_ACT_LOG)", ErrProfile, action)
}

var filterFlags = map[specs.LinuxSeccompFlag]uint{
	specs.LinuxSeccompFlagLog:                           unix.SECCOMP_FILTER_FLAG_LOG,
	specs.LinuxSeccompFlagSpecAllow:                     unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
	specs.LinuxSeccompFlagWaitKillableRecv:              unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
	specs.LinuxSeccompFlag("SECCOMP_FILTER_FLAG_TSYNC"): unix.SECCOMP_FILTER_FLAG_TSYNC,
}

var operators = []specs.LinuxSeccompOperator{specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan,
	specs.OpLessEqual, specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual}

// hasCaps reports whether caps holds every capability named (all) or any
// of them (!all). A name the running kernel lacks is never held.
func hasCaps(caps capability.Set, names []string, all bool) (bool, error) {
	for _, n := range names {
		c, err := capability.Parse(n)
		held := err == nil && caps.Has(c)
		if err != nil && !errors.Is(err, capability.ErrUnsupported) {
			return false, fmt.Errorf("%w: %w", ErrProfile, err)
		}
		if held != all {
			return held, nil
		}
	}
	return all, nil
}

// applies decides a rule's includes and excludes for this container.
func applies(s *mobyseccomp.Syscall, caps capability.Set, kern kernelVersion) (bool, error) {
	if in := s.Includes; in != nil {
		if len(in.Arches) > 0 && !slices.Contains(in.Arches, nativeArch) {
			return false, nil
		}
		if ok, err := hasCaps(caps, in.Caps, true); err != nil || !ok {
			return false, err
		}
		if in.MinKernel != nil && !kern.atLeast(in.MinKernel) {
			return false, nil
		}
	}
	if ex := s.Excludes; ex != nil {
		if slices.Contains(ex.Arches, nativeArch) {
			return false, nil
		}
		if len(ex.Caps) > 0 {
			if held, err := hasCaps(caps, ex.Caps, false); err != nil || held {
				return false, err
			}
		}
		if ex.MinKernel != nil && kern.atLeast(ex.MinKernel) {
			return false, nil
		}
	}
	return true, nil
}

// newPlan resolves p for a container with capabilities caps on a kernel of
// the given release.
func newPlan(p *mobyseccomp.Seccomp, caps capability.Set, release string) (*plan, error) {
	if p.ListenerPath != "" {
		return nil, fmt.Errorf("%w: listenerPath needs a seccomp agent, which urun does not support", ErrProfile)
	}
	kern, err := parseKernel(release)
	if err != nil {
		return nil, err
	}
	def, err := retValue(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	pl := &plan{defaultRet: def, unknownRet: def, maxKnown: -1, rules: map[int][]rule{}}
	if def != unix.SECCOMP_RET_ALLOW {
		pl.unknownRet = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	}
	for _, f := range p.Flags {
		v, ok := filterFlags[f]
		if !ok {
			return nil, fmt.Errorf("%w: unknown flag %q", ErrProfile, f)
		}
		pl.flags |= v
	}
	for i, s := range p.Syscalls {
		names := s.Names
		var nrs []int
		for _, n := range names {
			if nr, ok := syscallNumbers[n]; ok {
				nrs = append(nrs, nr)
				pl.maxKnown = max(pl.maxKnown, nr)
			}
		}
		ok, err := applies(s, caps, kern)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d] %v: %w", i, names, err)
		}
		if !ok || len(nrs) == 0 {
			continue
		}
		r := rule{}
		if r.ret, err = retValue(s.Action, s.ErrnoRet); err != nil {
			return nil, fmt.Errorf("syscalls[%d] %v: %w", i, names, err)
		}
		for _, a := range s.Args {
			if a.Index > 5 {
				return nil, fmt.Errorf("syscalls[%d] %v: %w: argument index %d (system calls have arguments 0-5)", i, names, ErrProfile, a.Index)
			}
			if !slices.Contains(operators, a.Op) {
				return nil, fmt.Errorf("syscalls[%d] %v: %w: unknown operator %q", i, names, ErrProfile, a.Op)
			}
			r.conds = append(r.conds, cond{index: a.Index, op: a.Op, value: a.Value, valueTwo: a.ValueTwo})
		}
		for _, nr := range nrs {
			rs := pl.rules[nr]
			if len(rs) > 0 && len(rs[len(rs)-1].conds) == 0 {
				continue // an earlier unconditional rule decides already
			}
			pl.rules[nr] = append(rs, r)
		}
	}
	return pl, nil
}

package capability

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Secure bits (linux/securebits.h); x/sys/unix does not name them.
const (
	secbitNoSetuidFixup = 1 << 2
	secbitKeepCaps      = 1 << 4

	prGetSecurebits = 27
	prSetSecurebits = 28
)

// ForRoot returns the sets a container process running as uid 0 gets, as
// podman writes them into the OCI spec and crun applies them: bounding,
// effective and permitted are set; inheritable and ambient are empty (the
// kernel gives root the bounding set again at execve anyway).
func ForRoot(set Set) Sets {
	return Sets{Bounding: set, Effective: set, Permitted: set}
}

// ForUser returns the sets a container process running as a non-root user
// gets, as podman 4 and 5 do (pkg/specgen/generate/security_linux.go): the
// bounding set is set, and effective, permitted, inheritable and ambient
// hold only the capabilities given explicitly with --cap-add (add), so that
// they survive the execve of a non-root user. Without --cap-add the
// process has no capabilities at all. add is parsed as Resolve parses it
// ("ALL" is the calling thread's bounding set); what is not in set is left
// out (podman would hand crun an ambient capability outside the bounding
// set, which the kernel refuses).
func ForUser(set Set, add []string) (Sets, error) {
	user, err := Resolve(0, add, nil)
	if err != nil {
		return Sets{}, err
	}
	user &= set
	return Sets{Bounding: set, Effective: user, Permitted: user, Inheritable: user, Ambient: user}, nil
}

// Bounding returns the calling thread's bounding set (PR_CAPBSET_READ for
// every capability of the kernel).
func Bounding() (Set, error) {
	last, err := Last()
	if err != nil {
		return 0, err
	}
	var s Set
	for c := Cap(0); c <= last; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			return 0, os.NewSyscallError(fmt.Sprintf("prctl(PR_CAPBSET_READ, %s)", c), err)
		}
		if in == 1 {
			s = s.Add(c)
		}
	}
	return s, nil
}

// Prepare makes the calling thread keep its capabilities through the
// caller's setresuid to a non-root user: it sets SECBIT_NO_SETUID_FIXUP, so
// the kernel leaves the permitted, effective and ambient sets alone when
// the uids change. Apply clears the bit again (and SECBIT_KEEP_CAPS), so
// the container process gets the ordinary setuid semantics.
//
// It needs CAP_SETPCAP, which the container's init has as root of its user
// namespace. Call it on the locked OS thread that will call Apply and
// execve.
func Prepare() error {
	bits, err := unix.PrctlRetInt(prGetSecurebits, 0, 0, 0, 0)
	if err != nil {
		return os.NewSyscallError("prctl(PR_GET_SECUREBITS)", err)
	}
	if bits&secbitNoSetuidFixup != 0 {
		return nil
	}
	if err := unix.Prctl(prSetSecurebits, uintptr(bits|secbitNoSetuidFixup), 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities across setuid: %w (needs CAP_SETPCAP)", os.NewSyscallError("prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP)", err))
	}
	return nil
}

// check reports sets that the kernel would refuse or that make no sense
// together, before anything is changed.
func (s Sets) check(known Set) error {
	var errs []error
	sub := func(what string, a Set, bname string, b Set) {
		if extra := a &^ b; extra != 0 {
			errs = append(errs, fmt.Errorf("%s holds %s, which %s lacks", what, extra, bname))
		}
	}
	sub("the bounding set", s.Bounding, "the kernel", known)
	sub("the effective set", s.Effective, "the permitted set", s.Permitted)
	sub("the permitted set", s.Permitted, "the bounding set", s.Bounding)
	sub("the inheritable set", s.Inheritable, "the bounding set", s.Bounding)
	sub("the ambient set", s.Ambient, "the permitted set", s.Permitted)
	sub("the ambient set", s.Ambient, "the inheritable set", s.Inheritable)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid capability sets: %w", err)
	}
	return nil
}

// Apply gives the calling OS thread the capability sets s: it drops from
// the bounding set every capability not in s.Bounding (the kernel's
// capabilities only: a capability it lacks is skipped), clears
// SECBIT_NO_SETUID_FIXUP and SECBIT_KEEP_CAPS, sets the effective,
// permitted and inheritable sets, and raises s.Ambient after clearing the
// ambient set. The caller has locked its goroutine to the thread and
// execs from it: capabilities are per thread.
//
// The thread's permitted set must hold s.Permitted, and CAP_SETPCAP when
// anything is to be dropped from the bounding set: after a setresuid to a
// non-root user that means Prepare was called before it.
func Apply(s Sets) error {
	last, err := Last()
	if err != nil {
		return err
	}
	if err := s.check(upTo(last)); err != nil {
		return err
	}
	cur, err := capget()
	if err != nil {
		return err
	}
	if missing := s.Permitted &^ cur.Permitted; missing != 0 {
		return fmt.Errorf("apply capabilities: this thread's permitted set lacks %s (a setresuid to a non-root user without capability.Prepare before it empties it)", missing)
	}
	// Everything permitted becomes effective, so that CAP_SETPCAP is in
	// force for the bounding set and the secure bits.
	if err := capset(cur.Permitted, cur.Permitted, cur.Inheritable); err != nil {
		return err
	}
	for c := Cap(0); c <= last; c++ {
		if s.Bounding.Has(c) {
			continue
		}
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) || (err == nil && in == 0) {
			continue // not in this kernel, or dropped already
		}
		if err != nil {
			return os.NewSyscallError(fmt.Sprintf("prctl(PR_CAPBSET_READ, %s)", c), err)
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop %s from the bounding set: %w (needs CAP_SETPCAP)", c, os.NewSyscallError("prctl(PR_CAPBSET_DROP)", err))
		}
	}
	bits, err := unix.PrctlRetInt(prGetSecurebits, 0, 0, 0, 0)
	if err != nil {
		return os.NewSyscallError("prctl(PR_GET_SECUREBITS)", err)
	}
	if bits&(secbitNoSetuidFixup|secbitKeepCaps) != 0 {
		if err := unix.Prctl(prSetSecurebits, uintptr(bits&^(secbitNoSetuidFixup|secbitKeepCaps)), 0, 0, 0); err != nil {
			return fmt.Errorf("restore the setuid semantics: %w (needs CAP_SETPCAP)", os.NewSyscallError("prctl(PR_SET_SECUREBITS)", err))
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", err)
	}
	if err := capset(s.Effective, s.Permitted, s.Inheritable); err != nil {
		return err
	}
	for _, c := range s.Ambient.List() {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("raise ambient %s: %w", c, os.NewSyscallError("prctl(PR_CAP_AMBIENT_RAISE)", err))
		}
	}
	return nil
}

// capget returns the calling thread's effective, permitted and inheritable
// sets (Bounding and Ambient are left empty).
func capget() (Sets, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return Sets{}, os.NewSyscallError("capget", err)
	}
	join := func(lo, hi uint32) Set { return Set(uint64(hi)<<32 | uint64(lo)) }
	return Sets{
		Effective:   join(data[0].Effective, data[1].Effective),
		Permitted:   join(data[0].Permitted, data[1].Permitted),
		Inheritable: join(data[0].Inheritable, data[1].Inheritable),
	}, nil
}

func capset(eff, perm, inh Set) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(eff), Permitted: uint32(perm), Inheritable: uint32(inh)},
		{Effective: uint32(eff >> 32), Permitted: uint32(perm >> 32), Inheritable: uint32(inh >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities effective=%s permitted=%s inheritable=%s: %w", eff, perm, inh, os.NewSyscallError("capset", err))
	}
	return nil
}

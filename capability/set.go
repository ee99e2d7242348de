package capability

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
)

// Set is a set of capabilities, bit c for capability c: the layout of the
// kernel's 64-bit capability sets and of the hex words in
// /proc/PID/status.
type Set uint64

// Of returns the set holding caps.
func Of(caps ...Cap) Set {
	var s Set
	for _, c := range caps {
		s = s.Add(c)
	}
	return s
}

// Has reports whether c is in s.
func (s Set) Has(c Cap) bool { return c >= 0 && c <= maxCap && s&(1<<uint(c)) != 0 }

// Add returns s with c.
func (s Set) Add(c Cap) Set {
	if c < 0 || c > maxCap {
		return s
	}
	return s | 1<<uint(c)
}

// Del returns s without c.
func (s Set) Del(c Cap) Set {
	if c < 0 || c > maxCap {
		return s
	}
	return s &^ (1 << uint(c))
}

// Len is the number of capabilities in s.
func (s Set) Len() int { return bits.OnesCount64(uint64(s)) }

// List returns the capabilities of s in number order.
func (s Set) List() []Cap {
	out := make([]Cap, 0, s.Len())
	for c := Cap(0); c <= maxCap; c++ {
		if s.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// Names returns the names of s ("CAP_CHOWN", ...) in number order, the form
// of an OCI runtime spec's capability lists.
func (s Set) Names() []string {
	list := s.List()
	out := make([]string, len(list))
	for i, c := range list {
		out[i] = c.String()
	}
	return out
}

// String is the comma-separated names of s, or "none".
func (s Set) String() string {
	if s == 0 {
		return "none"
	}
	return strings.Join(s.Names(), ",")
}

// upTo is the set of every capability 0..last.
func upTo(last Cap) Set {
	if last >= maxCap {
		return ^Set(0)
	}
	return Set(1)<<uint(last+1) - 1
}

// All returns every capability of the running kernel.
func All() (Set, error) {
	last, err := Last()
	if err != nil {
		return 0, err
	}
	return upTo(last), nil
}

// Default is podman's default set for a container (containers/common
// pkg/config default_capabilities): CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
// KILL, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT.
func Default() Set {
	return Of(CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, NET_BIND_SERVICE,
		SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT)
}

// ParseList parses names as Parse does, into one set. "ALL" is refused: it
// is meaningful only to Resolve.
func ParseList(names []string) (Set, error) {
	last, err := Last()
	if err != nil {
		return 0, err
	}
	s, all, err := parseList(names, last)
	if err != nil {
		return 0, err
	}
	if all {
		return 0, fmt.Errorf("%w \"ALL\": ALL is only valid with --cap-add/--cap-drop", ErrUnknown)
	}
	return s, nil
}

// parseList parses names, reporting "ALL" apart.
func parseList(names []string, last Cap) (s Set, all bool, err error) {
	var errs []error
	for _, n := range names {
		if strings.EqualFold(strings.TrimSpace(n), "ALL") {
			all = true
			continue
		}
		c, err := parse(n, last)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s = s.Add(c)
	}
	return s, all, errors.Join(errs...)
}

// Resolve applies --cap-add and --cap-drop to base as podman does
// (containers/common capabilities.MergeCapabilities):
//
//   - no add and no drop: base (limited to the kernel's capabilities);
//   - drop ALL: exactly the added capabilities (add ALL as well is an error);
//   - add ALL: the calling thread's bounding set, minus the dropped ones;
//   - otherwise base minus drop plus add; one capability both added and
//     dropped is an error.
//
// Names are parsed as Parse does; every unknown name is reported.
func Resolve(base Set, add, drop []string) (Set, error) {
	last, err := Last()
	if err != nil {
		return 0, err
	}
	return resolve(base, add, drop, last, Bounding)
}

func resolve(base Set, add, drop []string, last Cap, bounding func() (Set, error)) (Set, error) {
	known := upTo(last)
	addSet, addAll, addErr := parseList(add, last)
	dropSet, dropAll, dropErr := parseList(drop, last)
	if err := errors.Join(addErr, dropErr); err != nil {
		return 0, err
	}
	if dropAll {
		if addAll {
			return 0, errors.New("--cap-add ALL and --cap-drop ALL together: adding all capabilities and removing all is not allowed, give one of them")
		}
		return addSet, nil
	}
	if addAll {
		b, err := bounding()
		if err != nil {
			return 0, err
		}
		return b & known &^ dropSet, nil
	}
	if both := addSet & dropSet; both != 0 {
		return 0, fmt.Errorf("capability %s cannot be both added and dropped: give it to --cap-add or to --cap-drop, not both", both)
	}
	return (base&^dropSet | addSet) & known, nil
}

package capability

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Sets holds the five capability sets of one thread, as
// /proc/PID/status reports them.
type Sets struct {
	Inheritable Set // CapInh
	Permitted   Set // CapPrm
	Effective   Set // CapEff
	Bounding    Set // CapBnd
	Ambient     Set // CapAmb
}

// String is the five sets, one "Name: caps" per field, for debugging output.
func (s Sets) String() string {
	return fmt.Sprintf("bounding: %s; effective: %s; permitted: %s; inheritable: %s; ambient: %s",
		s.Bounding, s.Effective, s.Permitted, s.Inheritable, s.Ambient)
}

// ParseStatus reads the CapInh, CapPrm, CapEff, CapBnd and CapAmb lines of a
// /proc/PID/status file. Every one of the five must be there.
func ParseStatus(r io.Reader) (Sets, error) {
	var s Sets
	fields := map[string]*Set{
		"CapInh": &s.Inheritable,
		"CapPrm": &s.Permitted,
		"CapEff": &s.Effective,
		"CapBnd": &s.Bounding,
		"CapAmb": &s.Ambient,
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		dst, want := fields[key]
		if !ok || !want {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return Sets{}, fmt.Errorf("parse status line %q: want a hexadecimal capability set: %w", sc.Text(), err)
		}
		*dst = Set(v)
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return Sets{}, fmt.Errorf("read status: %w", err)
	}
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if !seen[k] {
			return Sets{}, fmt.Errorf("parse status: no %s line (a kernel older than 4.3 has no CapAmb)", k)
		}
	}
	return s, nil
}

// Current returns the capability sets of the calling thread, from
// /proc/thread-self/status (capabilities are per thread; the caller locks
// its goroutine to the thread it asks about).
func Current() (Sets, error) {
	f, err := os.Open("/proc/thread-self/status")
	if err != nil {
		return Sets{}, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	s, err := ParseStatus(f)
	if err != nil {
		return Sets{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return s, nil
}

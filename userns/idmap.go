package userns

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/uid_map: Size ids from ContainerID
// inside are HostID… outside.
type Mapping struct {
	ContainerID, HostID, Size uint32
}

func (m Mapping) String() string {
	return fmt.Sprintf("%d %d %d", m.ContainerID, m.HostID, m.Size)
}

// Maps are the uid and gid maps of a user namespace.
type Maps struct {
	UID, GID []Mapping
}

// Mode selects how the caller's id appears inside.
type Mode int

const (
	// ModeRoot maps the caller to root and the subordinate ranges to 1…N
	// (podman's default for rootless).
	ModeRoot Mode = iota
	// ModeKeepID maps the caller to the same id inside (podman's
	// --userns=keep-id); root and the other ids come from the ranges.
	ModeKeepID
)

// Build returns the map of one id kind: id is the caller's host id, subs
// its subordinate ranges. With no ranges the map has the caller alone (as
// root, or as id with keep-id). ModeKeepID with ranges too small to reach
// id places the caller at id anyway and maps the ranges below it.
func Build(mode Mode, id uint32, subs []Range) []Mapping {
	var m []Mapping
	if mode == ModeRoot {
		m = append(m, Mapping{0, id, 1})
		next := uint32(1)
		for _, r := range subs {
			m = append(m, Mapping{next, r.Start, r.Count})
			next += r.Count
		}
		return m
	}
	// keep-id: 0…id-1 and id+1… from the ranges, id itself is the caller.
	m = append(m, Mapping{id, id, 1})
	next := uint32(0)
	for _, r := range subs {
		start, count := r.Start, r.Count
		for count > 0 {
			if next == id {
				next++
			}
			n := count
			if next < id && next+n > id {
				n = id - next
			}
			m = append(m, Mapping{next, start, n})
			next += n
			start += n
			count -= n
		}
	}
	return m
}

// Size returns how many ids m maps.
func Size(m []Mapping) uint64 {
	var n uint64
	for _, e := range m {
		n += uint64(e.Size)
	}
	return n
}

// ToHost returns the host id of container id c under m.
func ToHost(m []Mapping, c uint32) (uint32, bool) {
	for _, e := range m {
		if c >= e.ContainerID && uint64(c) < uint64(e.ContainerID)+uint64(e.Size) {
			return e.HostID + (c - e.ContainerID), true
		}
	}
	return 0, false
}

// ParseMap parses the text of /proc/PID/uid_map or gid_map.
func ParseMap(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("id map line %q: want 3 fields", sc.Text())
		}
		var v [3]uint32
		for i := range f {
			n, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("id map line %q: %w", sc.Text(), err)
			}
			v[i] = uint32(n)
		}
		out = append(out, Mapping{v[0], v[1], v[2]})
	}
	return out, sc.Err()
}

// NestedKeepID returns the map of a user namespace nested in one of size
// ids where the caller is 0, such that the caller appears as id and every
// other id of the outer namespace is still mapped (podman's keep-id):
// id → 0, 0…id-1 → 1…id, id+1… → id+1…. It returns nil when the outer
// namespace has too few ids to give the nested one a root.
func NestedKeepID(id uint32, size uint64) []Mapping {
	if size < 2 || uint64(id) >= size {
		return nil
	}
	m := []Mapping{{id, 0, 1}}
	if id > 0 {
		m = append(m, Mapping{0, 1, id})
	}
	if rest := size - 1 - uint64(id); rest > 0 {
		m = append(m, Mapping{id + 1, id + 1, uint32(rest)})
	}
	return m
}

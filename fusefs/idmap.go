package fusefs

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// IDMap maps a range of ids as stored in the branches (Stored) to the ids
// the union shows (Shown), as fuse-overlayfs's uidmapping/gidmapping:
// "STORED:SHOWN:SIZE".
type IDMap struct {
	Stored, Shown, Size uint32
}

// overflowID is shown for a stored id that no mapping covers, as the kernel
// shows unmapped ids in a user namespace.
const overflowID = 65534

// ParseIDMaps parses "STORED:SHOWN:SIZE[:STORED:SHOWN:SIZE...]" (also with
// commas between triplets, as fuse-overlayfs's documentation writes it).
func ParseIDMaps(s string) ([]IDMap, error) {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == ',' })
	if len(f) == 0 || len(f)%3 != 0 {
		return nil, fmt.Errorf("%w: id mapping %q: write STORED:SHOWN:SIZE triplets, e.g. 0:1000:1:1:100000:65536", ErrBadOption, s)
	}
	var out []IDMap
	for i := 0; i < len(f); i += 3 {
		var v [3]uint32
		for j := range v {
			n, err := strconv.ParseUint(f[i+j], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: id mapping %q: %q is not an id", ErrBadOption, s, f[i+j])
			}
			v[j] = uint32(n)
		}
		if v[2] == 0 {
			return nil, fmt.Errorf("%w: id mapping %q: a range of size 0", ErrBadOption, s)
		}
		out = append(out, IDMap{Stored: v[0], Shown: v[1], Size: v[2]})
	}
	return out, nil
}

// shown returns the id the union shows for a stored id.
func shown(maps []IDMap, squash *uint32, id uint32) uint32 {
	if squash != nil {
		return *squash
	}
	if maps == nil {
		return id
	}
	for _, m := range maps {
		if id >= m.Stored && id-m.Stored < m.Size {
			return m.Shown + (id - m.Stored)
		}
	}
	return overflowID
}

// stored returns the id to store for an id the union shows; ok is false
// when no mapping covers it.
func stored(maps []IDMap, id uint32) (uint32, bool) {
	if maps == nil {
		return id, true
	}
	for _, m := range maps {
		if id >= m.Shown && id-m.Shown < m.Size {
			return m.Stored + (id - m.Shown), true
		}
	}
	return 0, false
}

// mapAttr turns stored owners into shown ones, and applies static_nlink.
func (u *Union) mapAttr(a *fuse.Attr) {
	a.Uid = shown(u.cfg.UIDMap, u.cfg.SquashUID, a.Uid)
	a.Gid = shown(u.cfg.GIDMap, u.cfg.SquashGID, a.Gid)
	if u.cfg.StaticNlink && a.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		a.Nlink = 1
	}
}

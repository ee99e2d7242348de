package bench

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// IDShift maps the ids of the fixture to the host ids that an unprivileged
// user's namespace shows as those ids (0 is the user, 1..Count its
// subordinate range), as rootless podman stores its layers. The zero value
// shifts nothing.
type IDShift struct {
	User           string
	UID, GID       int
	SubUID, SubGID int
	Count          int
}

func (s IDShift) identity() bool { return s.User == "" }

func (s IDShift) String() string {
	if s.identity() {
		return "none"
	}
	return fmt.Sprintf("%s: 0->%d:%d, 1..%d->%d:%d", s.User, s.UID, s.GID, s.Count, s.SubUID, s.SubGID)
}

func (s IDShift) mapID(id, self, sub int) int {
	switch {
	case id == 0:
		return self
	case id <= s.Count:
		return sub + id - 1
	}
	return id
}

// apply shifts the owner of every object below root, once per inode.
func (s IDShift) apply(root string) error {
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		k := key{st.Dev, st.Ino}
		if seen[k] {
			return nil
		}
		seen[k] = true
		return os.Lchown(p, s.mapID(int(st.Uid), s.UID, s.SubUID), s.mapID(int(st.Gid), s.GID, s.SubGID))
	})
}

// LookupIDShift returns the shift for name from the user database and
// /etc/subuid, /etc/subgid.
func LookupIDShift(name string) (IDShift, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return IDShift{}, fmt.Errorf("rootless user %q: %w (create it with scripts/rootless-setup.sh)", name, err)
	}
	s := IDShift{User: name}
	s.UID, _ = strconv.Atoi(u.Uid)
	s.GID, _ = strconv.Atoi(u.Gid)
	var cu, cg int
	if s.SubUID, cu, err = subIDsFile("/etc/subuid", name, u.Uid); err != nil {
		return IDShift{}, err
	}
	if s.SubGID, cg, err = subIDsFile("/etc/subgid", name, u.Gid); err != nil {
		return IDShift{}, err
	}
	s.Count = min(cu, cg)
	return s, nil
}

func subIDsFile(path, name, id string) (int, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	start, count, err := parseSubIDs(f, name, id)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return start, count, nil
}

// parseSubIDs returns the first range of name (or of its numeric id) in a
// subuid/subgid file.
func parseSubIDs(r io.Reader, name, id string) (start, count int, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || (f[0] != name && f[0] != id) {
			continue
		}
		start, err1 := strconv.Atoi(f[1])
		count, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || count < 1 {
			return 0, 0, fmt.Errorf("bad entry %q", line)
		}
		return start, count, nil
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	return 0, 0, fmt.Errorf("no range for %s (add one, e.g. with scripts/rootless-setup.sh)", name)
}

package container

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrNoUser says that a -u name is not in the container's /etc/passwd.
var ErrNoUser = errors.New("no matching entries in passwd file")

// ErrNoGroup says that a -u …:GROUP name is not in /etc/group.
var ErrNoGroup = errors.New("no matching entries in group file")

// Identity is the resolved user of the container's process.
type Identity struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
	Home     string
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

func parsePasswd(r io.Reader) ([]passwdEntry, error) {
	var out []passwdEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 || strings.HasPrefix(f[0], "#") {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, passwdEntry{f[0], uint32(uid), uint32(gid), f[5]})
	}
	return out, sc.Err()
}

func parseGroup(r io.Reader) ([]groupEntry, error) {
	var out []groupEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		var members []string
		if f[3] != "" {
			members = strings.Split(f[3], ",")
		}
		out = append(out, groupEntry{f[0], uint32(gid), members})
	}
	return out, sc.Err()
}

// ResolveUser resolves spec (USER[:GROUP], names or numbers, "" = root)
// against the container's passwd and group files (either may be nil when
// missing). A numeric user absent from passwd runs with gid 0 (or GROUP)
// and HOME=/, as in podman; a name that is absent is an error. The
// supplementary groups are those of /etc/group listing the user, unless a
// GROUP was given.
func ResolveUser(spec string, passwd, group io.Reader) (Identity, error) {
	var users []passwdEntry
	var groups []groupEntry
	var err error
	if passwd != nil {
		if users, err = parsePasswd(passwd); err != nil {
			return Identity{}, fmt.Errorf("read /etc/passwd: %w", err)
		}
	}
	if group != nil {
		if groups, err = parseGroup(group); err != nil {
			return Identity{}, fmt.Errorf("read /etc/group: %w", err)
		}
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		userPart = "0"
	}
	id := Identity{Home: "/"}
	name := ""
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		id.UID = uint32(n)
		for _, u := range users {
			if u.uid == id.UID {
				id.GID, id.Home, name = u.gid, u.home, u.name
				break
			}
		}
	} else {
		found := false
		for _, u := range users {
			if u.name == userPart {
				id.UID, id.GID, id.Home, name, found = u.uid, u.gid, u.home, u.name, true
				break
			}
		}
		if !found {
			return Identity{}, fmt.Errorf("unable to find user %s: %w", userPart, ErrNoUser)
		}
	}
	if hasGroup {
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			id.GID = uint32(n)
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					id.GID, found = g.gid, true
					break
				}
			}
			if !found {
				return Identity{}, fmt.Errorf("unable to find group %s: %w", groupPart, ErrNoGroup)
			}
		}
		return id, nil
	}
	if name != "" {
		for _, g := range groups {
			if g.gid == id.GID {
				continue
			}
			for _, m := range g.members {
				if m == name {
					id.Groups = append(id.Groups, g.gid)
					break
				}
			}
		}
	}
	if id.Home == "" {
		id.Home = "/"
	}
	return id, nil
}

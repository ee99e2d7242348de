package fusefs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// killPriv serves the kernel's requests to clear set-user-ID and
// set-group-ID bits, which the union takes over from the kernel by
// negotiating FUSE_HANDLE_KILLPRIV_V2.
//
// Why: without it the kernel does not trust a FUSE inode to stay free of
// privileges (no SB_NOSEC), so every write(2) first asks the daemon for the
// security.capability xattr (file_remove_privs): one GETXATTR request per
// write, even with passthrough. With it the kernel caches "nothing to kill"
// in the inode (S_NOSEC) and leaves the clearing of the bits to the daemon,
// which the kernel asks for in three ways:
//
//   - WRITE with FUSE_WRITE_KILL_SUIDGID (a writer without CAP_FSETID, on
//     the daemon's write path),
//   - OPEN with FUSE_OPEN_KILL_SUIDGID (O_TRUNC by such a caller),
//   - SETATTR with FATTR_KILL_SUIDGID (truncate by such a caller, chown).
//
// A fourth request carries no flag: file_remove_privs (before a write(2)
// through passthrough, a fallocate, a copy_file_range) and chown(f, -1, -1)
// still call the FUSE setattr, which drops the mode change it would have
// sent and asks the daemon for a SETATTR that changes nothing. Writes
// through passthrough reach the branch with the daemon's credentials, under
// which the branch's filesystem would keep the bits, so the union clears
// them on that SETATTR, except where the kernel would keep them: the
// caller has CAP_FSETID and the SETATTR only followed the removal of a
// file capability (which the kernel itself asks for with a REMOVEXATTR of
// security.capability, and the branch's filesystem drops on any write).
//
// The rules are the kernel's (setattr_should_drop_suidgid): set-user-ID is
// cleared, set-group-ID where it grants execution with the group's rights
// (group execute permission), or, for a caller without CAP_FSETID, where
// the caller is not in the file's group (without execute permission the
// bit marks mandatory locking, not a privilege).
type killPriv struct {
	fuse.RawFileSystem

	// capGone holds the node ids whose security.capability was just
	// removed, until their next SETATTR. The kernel sends both under the
	// inode's lock, one after the other.
	capGone sync.Map
}

// killedMode is mode without the privileges a change by caller c removes
// from a file of group gid.
func killedMode(mode, gid uint32, c caller) uint32 {
	mode &^= unix.S_ISUID
	if mode&unix.S_ISGID != 0 && (mode&unix.S_IXGRP != 0 || !c.fsetid && !c.inGroup(gid)) {
		mode &^= unix.S_ISGID
	}
	return mode
}

// caller is what the set-ID rules need to know of the process behind a
// request.
type caller struct {
	gid    uint32
	groups []uint32
	// fsetid: the caller has CAP_FSETID in the initial user namespace
	// (what the kernel's capable() checks).
	fsetid bool
}

func (c caller) inGroup(gid uint32) bool {
	return c.gid == gid || slices.Contains(c.groups, gid)
}

// capFSETID is CAP_FSETID's bit in a capability set.
const capFSETID = 1 << unix.CAP_FSETID

// callerOf describes the caller of a request from /proc. Whatever cannot be
// read counts against the caller (no supplementary groups, no CAP_FSETID),
// so that in doubt the privilege goes.
func callerOf(hdr *fuse.InHeader) caller {
	c := caller{gid: hdr.Gid}
	if hdr.Pid == 0 {
		return c
	}
	dir := fmt.Sprintf("/proc/%d", hdr.Pid)
	f, err := os.Open(dir + "/status")
	if err != nil {
		return c
	}
	defer f.Close()
	st, err := parseStatus(f)
	if err != nil {
		return c
	}
	c.groups = st.groups
	c.fsetid = st.capEff&capFSETID != 0 && initialUserNS(dir)
	return c
}

// procStatus is the part of /proc/PID/status the set-ID rules read.
type procStatus struct {
	groups []uint32
	capEff uint64
}

// parseStatus reads the supplementary groups and the effective
// capabilities from a /proc/PID/status file.
func parseStatus(r io.Reader) (procStatus, error) {
	var st procStatus
	var seen int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), ":")
		switch key {
		case "Groups":
			for _, g := range strings.Fields(val) {
				n, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return st, fmt.Errorf("status: bad group %q", g)
				}
				st.groups = append(st.groups, uint32(n))
			}
			seen++
		case "CapEff":
			n, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
			if err != nil {
				return st, fmt.Errorf("status: bad CapEff %q", val)
			}
			st.capEff = n
			seen++
		}
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if seen != 2 {
		return st, errors.New("status: no Groups or CapEff line")
	}
	return st, nil
}

// attrBits are the SETATTR valid bits that change an attribute.
const attrBits = fuse.FATTR_MODE | fuse.FATTR_UID | fuse.FATTR_GID | fuse.FATTR_SIZE |
	fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW | fuse.FATTR_CTIME

// kill clears the set-ID bits of the regular file hdr.NodeId for its caller,
// who lacks CAP_FSETID, through the union's own GETATTR and SETATTR (which
// copy it up first if needed).
func (k *killPriv) kill(cancel <-chan struct{}, hdr *fuse.InHeader, fh uint64) fuse.Status {
	var out fuse.AttrOut
	if st := k.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: *hdr}, &out); !st.Ok() {
		return st
	}
	if out.Mode&unix.S_IFMT != unix.S_IFREG || out.Mode&(unix.S_ISUID|unix.S_ISGID) == 0 {
		return fuse.OK
	}
	c := callerOf(hdr)
	c.fsetid = false // the kernel asks only for callers without it
	mode := killedMode(out.Mode, out.Gid, c)
	if mode == out.Mode {
		return fuse.OK
	}
	in := fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{
		InHeader: *hdr,
		Valid:    fuse.FATTR_MODE,
		Mode:     mode & 07777,
	}}
	if fh != 0 {
		in.Valid |= fuse.FATTR_FH
		in.Fh = fh
	}
	return k.RawFileSystem.SetAttr(cancel, &in, &out)
}

// Write clears the set-ID bits before a write that asks for it.
func (k *killPriv) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		if st := k.kill(cancel, &in.InHeader, in.Fh); !st.Ok() {
			return 0, st
		}
	}
	return k.RawFileSystem.Write(cancel, in, data)
}

// Open clears the set-ID bits of a file truncated by the open.
func (k *killPriv) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	st := k.RawFileSystem.Open(cancel, in, out)
	if st.Ok() && in.Mode&fuse.OPEN_KILL_SUIDGID != 0 {
		if st := k.kill(cancel, &in.InHeader, out.Fh); !st.Ok() {
			k.RawFileSystem.Release(cancel, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh, Flags: in.Flags})
			return st
		}
	}
	return st
}

// RemoveXAttr notes the removal of a file capability for SetAttr.
func (k *killPriv) RemoveXAttr(cancel <-chan struct{}, hdr *fuse.InHeader, attr string) fuse.Status {
	st := k.RawFileSystem.RemoveXAttr(cancel, hdr, attr)
	if st.Ok() && attr == "security.capability" {
		k.capGone.Store(hdr.NodeId, struct{}{})
	}
	return st
}

// SetAttr folds the set-ID clearing the kernel asks for into the change:
// on a chown, a truncation by a caller without CAP_FSETID, or a SETATTR
// that changes nothing (see killPriv).
func (k *killPriv) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	_, capGone := k.capGone.LoadAndDelete(in.NodeId)
	kill := in.Valid&fuse.FATTR_KILL_SUIDGID != 0
	if !kill && in.Valid&attrBits != 0 {
		return k.RawFileSystem.SetAttr(cancel, in, out)
	}
	var cur fuse.AttrOut
	if st := k.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: in.InHeader}, &cur); !st.Ok() {
		return st
	}
	mode := cur.Mode
	if in.Valid&fuse.FATTR_MODE != 0 {
		mode = mode&^07777 | in.Mode&07777
	}
	if cur.Mode&unix.S_IFMT != unix.S_IFREG || mode&(unix.S_ISUID|unix.S_ISGID) == 0 {
		return k.RawFileSystem.SetAttr(cancel, in, out)
	}
	c := callerOf(&in.InHeader)
	switch {
	case kill && in.Valid&(fuse.FATTR_UID|fuse.FATTR_GID) == 0:
		c.fsetid = false // a truncation: the kernel asks only for callers without it
	case !kill && c.fsetid && capGone:
		// The kernel only removed a file capability before a write by
		// a privileged caller: the bits stay.
		return k.RawFileSystem.SetAttr(cancel, in, out)
	}
	if killed := killedMode(mode, cur.Gid, c); killed != cur.Mode || in.Valid&fuse.FATTR_MODE != 0 {
		in.Valid |= fuse.FATTR_MODE
		in.Mode = killed & 07777
	}
	return k.RawFileSystem.SetAttr(cancel, in, out)
}

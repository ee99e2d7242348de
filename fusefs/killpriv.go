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
// A fourth request carries no flag: file_remove_privs on a set-ID file
// (write(2) through passthrough, fallocate, a shared mapping's first write,
// chown(f, -1, -1)) still calls the FUSE setattr, which drops the mode change
// it would have sent and asks the daemon for a SETATTR that changes nothing.
// The kernel sends it only for those removals, where ext4 clears the bits,
// so the union clears them too: writes through passthrough reach the branch
// with the daemon's credentials, under which the branch's filesystem would
// keep them. File capabilities (security.capability) need nothing here: the
// kernel removes them itself through REMOVEXATTR (setattr_prepare), and the
// branch's filesystem drops them on any write.
//
// The rules are the kernel's (setattr_should_drop_suidgid): set-user-ID is
// cleared, set-group-ID only with group execute permission (without it the
// bit marks mandatory locking, not a privilege).
type killPriv struct {
	fuse.RawFileSystem
}

// killedMode is mode without the privileges a change removes: the
// set-user-ID bit, and the set-group-ID bit where it grants execution with
// the group's rights (group execute permission) or, when the change comes
// from a caller without CAP_FSETID (noFSETID), where that caller is not in
// the file's group gid (setattr_should_drop_sgid).
func killedMode(mode, gid uint32, hdr *fuse.InHeader, noFSETID bool) uint32 {
	mode &^= unix.S_ISUID
	if mode&unix.S_ISGID != 0 && (mode&unix.S_IXGRP != 0 || noFSETID && !inGroup(hdr, gid)) {
		mode &^= unix.S_ISGID
	}
	return mode
}

// inGroup reports whether the caller of a request is in group gid: its own
// group, or one of its supplementary groups (from /proc; if they cannot be
// read, it counts as not in the group, so that the privilege goes).
func inGroup(hdr *fuse.InHeader, gid uint32) bool {
	if hdr.Gid == gid {
		return true
	}
	if hdr.Pid == 0 {
		return false
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", hdr.Pid))
	if err != nil {
		return false
	}
	defer f.Close()
	groups, err := parseGroups(f)
	return err == nil && slices.Contains(groups, gid)
}

// parseGroups reads the supplementary groups from a /proc/PID/status file.
func parseGroups(r io.Reader) ([]uint32, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var out []uint32
		for _, g := range strings.Fields(rest) {
			n, err := strconv.ParseUint(g, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("status: bad group %q", g)
			}
			out = append(out, uint32(n))
		}
		return out, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("status: no Groups line")
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
	mode := killedMode(out.Mode, out.Gid, hdr, true)
	if out.Mode&unix.S_IFMT != unix.S_IFREG || mode == out.Mode {
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

// SetAttr folds the set-ID clearing the kernel asks for into the change.
// A chown clears them whoever asks (the kernel does not say whether the
// caller has CAP_FSETID, so the group rule is the privileged caller's); a
// truncation, or a SETATTR that changes nothing, on behalf of a caller
// without CAP_FSETID.
func (k *killPriv) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&fuse.FATTR_KILL_SUIDGID == 0 && in.Valid&attrBits != 0 {
		return k.RawFileSystem.SetAttr(cancel, in, out)
	}
	var cur fuse.AttrOut
	if st := k.RawFileSystem.GetAttr(cancel, &fuse.GetAttrIn{InHeader: in.InHeader}, &cur); !st.Ok() {
		return st
	}
	if cur.Mode&unix.S_IFMT != unix.S_IFREG {
		return k.RawFileSystem.SetAttr(cancel, in, out)
	}
	noFSETID := in.Valid&(fuse.FATTR_UID|fuse.FATTR_GID) == 0
	mode := cur.Mode
	if in.Valid&fuse.FATTR_MODE != 0 {
		mode = mode&^07777 | in.Mode&07777
	}
	if killed := killedMode(mode, cur.Gid, &in.InHeader, noFSETID); killed != cur.Mode || in.Valid&fuse.FATTR_MODE != 0 {
		in.Valid |= fuse.FATTR_MODE
		in.Mode = killed & 07777
	}
	return k.RawFileSystem.SetAttr(cancel, in, out)
}

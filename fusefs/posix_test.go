package fusefs_test

import (
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
)

// posixExceptions lists the go-fuse posixtest checks that cannot pass on a
// union, with the reason. A check that fails because of a bug in ufs does
// not belong here.
var posixExceptions = map[string]string{
	"FcntlFlockLocksFile": "expects a process's POSIX read lock through a second descriptor to conflict with its own write lock " +
		"(OFD-lock semantics of go-fuse's loopback); POSIX and ext4 grant it. ufs leaves locks to the kernel, which follows POSIX " +
		"(TestLocks checks both the POSIX and the cross-process behaviour)",
}

// TestPOSIX runs go-fuse's posixtest suite on a union of an empty rw branch
// over a non-empty ro branch, with kernel caching (udba=none) and without
// (udba=reval). Each check runs on a fresh mount, in a directory that exists
// (empty) in the ro branch: its first change copies the directory up, and
// the rest of the lower tree stays out of its way.
func TestPOSIX(t *testing.T) {
	var names []string
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, mode := range []struct {
		name  string
		reval bool
	}{{"udba=none", false}, {"udba=reval", true}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, name := range names {
				fn := posixtest.All[name]
				t.Run(name, func(t *testing.T) {
					if why, ok := posixExceptions[name]; ok {
						t.Skip(why)
					}
					testutil.RequireFUSE(t)
					rw, ro := t.TempDir(), t.TempDir()
					testutil.Write(t, ro, testutil.Tree{
						"posix/":        "",
						"lower-file":    "lower",
						"lower-dir/x":   "lower",
						"lower-link":    "->lower-file",
						"posix-sibling": "lower",
					})
					mnt := mountConfig(t, fusefs.Config{
						Branches: []fusefs.Branch{{Path: rw, Perm: fusefs.PermRW}, {Path: ro, Perm: fusefs.PermRO}},
						Reval:    mode.reval,
					})
					fn(t, filepath.Join(mnt, "posix"))
				})
			}
		})
	}
}

package fusefs_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// fileCap is a security.capability value (VFS_CAP_REVISION_2, effective,
// CAP_NET_RAW permitted).
var fileCap = []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// privOp changes the file at path as the user uid (-1: the test's own):
// what clears set-ID bits and file capabilities on a kernel filesystem.
func privOp(op, path string) error {
	switch op {
	case "append":
		return onFile(path, os.O_WRONLY|os.O_APPEND, func(f *os.File) error {
			_, err := f.WriteString("more\n")
			return err
		})
	case "pwrite":
		return onFile(path, os.O_RDWR, func(f *os.File) error {
			_, err := f.WriteAt([]byte("X"), 1)
			return err
		})
	case "otrunc":
		return os.WriteFile(path, []byte("new\n"), 0)
	case "truncate":
		return os.Truncate(path, 2)
	case "ftruncate":
		return onFile(path, os.O_WRONLY, func(f *os.File) error { return f.Truncate(3) })
	case "fallocate":
		return onFile(path, os.O_WRONLY, func(f *os.File) error {
			return unix.Fallocate(int(f.Fd()), 0, 0, 8192)
		})
	case "setid-while-open":
		// A write leaves the inode known to hold no privileges; set-ID
		// bits set later through the same descriptor must still go on
		// the next write.
		return onFile(path, os.O_RDWR, func(f *os.File) error {
			if _, err := f.WriteString("a"); err != nil {
				return err
			}
			if err := f.Chmod(0o777 | os.ModeSetuid | os.ModeSetgid); err != nil {
				return err
			}
			_, err := f.WriteString("b")
			return err
		})
	case "chgrp-own":
		// The owner gives the file its own group (65534).
		return os.Chown(path, -1, 65534)
	case "chown":
		return os.Chown(path, 1, 1)
	case "chown-noop":
		return os.Chown(path, -1, -1)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// onFile opens path with flag, runs fn on it and closes it.
func onFile(path string, flag int, fn func(*os.File) error) error {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runPrivOp runs privOp in a helper process as uid/gid (or as the test's
// own user if uid < 0).
func runPrivOp(t *testing.T, uid int, op, path string) {
	t.Helper()
	helper(t, "privop", path, strconv.Itoa(uid)+":"+op)
}

// privOpHelper is the helper process of runPrivOp.
func privOpHelper(path, arg string) error {
	uidS, op, _ := strings.Cut(arg, ":")
	uid, err := strconv.Atoi(uidS)
	if err != nil {
		return err
	}
	if uid >= 0 {
		if err := testutil.SwitchUser(uid, uid); err != nil {
			return err
		}
	}
	return privOp(op, path)
}

// privState is what a change left of a file's privileges: its mode and
// whether it still has a file capability.
func privState(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	caps := "nocap"
	if _, err := unix.Getxattr(path, "security.capability", nil); err == nil {
		caps = "cap"
	} else if !errors.Is(err, unix.ENODATA) {
		t.Fatal(err)
	}
	return fmt.Sprintf("mode=%04o %s", st.Mode&07777, caps)
}

type privCase struct {
	name  string
	lower bool   // the file starts in a lower layer, else in the upper
	mode  uint32 // its mode (world-writable, so that nobody may write)
	cap   bool   // it has a file capability
	uid   int    // who changes it: 65534 (nobody, no CAP_FSETID) or 0
	op    string
}

func privCases() []privCase {
	var cs []privCase
	for _, lower := range []bool{false, true} {
		where := "upper"
		if lower {
			where = "lower"
		}
		for _, op := range []string{"append", "pwrite", "otrunc", "truncate", "ftruncate", "fallocate"} {
			for _, m := range []uint32{0o6777, 0o2777, 0o2767, 0o4777} {
				cs = append(cs, privCase{fmt.Sprintf("%s/%s/%04o/nobody", where, op, m), lower, m, false, 65534, op})
			}
			cs = append(cs,
				privCase{fmt.Sprintf("%s/%s/cap/nobody", where, op), lower, 0o666, true, 65534, op},
				privCase{fmt.Sprintf("%s/%s/6777/root", where, op), lower, 0o6777, false, 0, op},
				privCase{fmt.Sprintf("%s/%s/cap/root", where, op), lower, 0o666, true, 0, op},
				privCase{fmt.Sprintf("%s/%s/6777cap/root", where, op), lower, 0o6777, true, 0, op},
				privCase{fmt.Sprintf("%s/%s/6777cap/nobody", where, op), lower, 0o6777, true, 65534, op},
			)
		}
		for _, uid := range []int{65534, 0} {
			cs = append(cs, privCase{fmt.Sprintf("%s/setid-while-open/%d", where, uid), lower, 0o666, false, uid, "setid-while-open"})
		}
		// Not compared: chown(f, -1, -1) by a caller with CAP_FSETID of
		// a set-ID file that has a file capability. The kernel clears
		// the bits, ufs keeps them: it sees the same requests as for
		// that caller's write, after which the kernel keeps them (see
		// killPriv).
		cs = append(cs,
			privCase{where + "/chown/6755cap/root", lower, 0o6755, true, 0, "chown"},
			privCase{where + "/chgrp-own/2767/nobody", lower, 0o2767, false, 65534, "chgrp-own"},
			privCase{where + "/chgrp-own/6777/nobody", lower, 0o6777, false, 65534, "chgrp-own"},
		)
		for _, op := range []string{"chown", "chown-noop"} {
			cs = append(cs,
				privCase{fmt.Sprintf("%s/%s/6777/root", where, op), lower, 0o6777, false, 0, op},
				privCase{fmt.Sprintf("%s/%s/2767/root", where, op), lower, 0o2767, false, 0, op},
				privCase{fmt.Sprintf("%s/%s/cap/root", where, op), lower, 0o755, true, 0, op},
			)
		}
	}
	return cs
}

// setupPriv makes the case's file f in dir (a layer) with its mode and
// capability.
func setupPriv(t *testing.T, dir, f string, c privCase) {
	t.Helper()
	p := filepath.Join(dir, f)
	if err := os.WriteFile(p, []byte("content\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.cap {
		if err := unix.Setxattr(p, "security.capability", fileCap, 0); err != nil {
			t.Fatal(err)
		}
	}
	switch c.op {
	case "setid-while-open":
		// The writer sets the bits itself: it must own the file.
		if err := os.Chown(p, c.uid, c.uid); err != nil {
			t.Fatal(err)
		}
	case "chgrp-own":
		// Owned by the caller, in a group the caller is not in.
		if err := os.Chown(p, c.uid, 0); err != nil {
			t.Fatal(err)
		}
	}
	// After the capability: setting one clears set-ID bits.
	if err := unix.Chmod(p, c.mode); err != nil {
		t.Fatal(err)
	}
}

// TestWritesAskNothing: only the first write(2) to a file of the union
// asks for its security.capability; the kernel then knows the inode holds
// no privileges to clear (S_NOSEC) and the later writes cost no GETXATTR:
// as root they do not reach the daemon at all (passthrough), unprivileged
// they are WRITE requests only.
func TestWritesAskNothing(t *testing.T) {
	f := newFixture(t)
	mnt, log := mountLogged(t, fusefs.Config{Branches: f.branches()})
	p := filepath.Join(mnt, "new")
	before := strings.Count(log.String(), "GETXATTR")
	err := onFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, func(f *os.File) error {
		for range 16 {
			if _, err := f.Write(make([]byte, 64<<10)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "GETXATTR") - before; n > 1 {
		t.Errorf("%d GETXATTR request(s) for 16 writes, want at most the first write's", n)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 16*64<<10 {
		t.Fatalf("after the writes: %v, %v", fi, err)
	}
}

// TestKillPrivLikeOverlayfs: writes, truncations and chowns clear set-ID
// bits and file capabilities on ufs exactly as on kernel overlayfs, for
// writers with and without CAP_FSETID, on files of the upper (served by
// passthrough) and of a lower layer, with passthrough and without (every
// write through the daemon).
func TestKillPrivLikeOverlayfs(t *testing.T) {
	testutil.RequireRoot(t)
	cases := privCases()
	for _, pt := range []string{"", ",passthrough=false"} {
		t.Run("passthrough="+strconv.FormatBool(pt == ""), func(t *testing.T) {
			d := newOverlayDirs(t, 1)
			k := newOverlayDirs(t, 1)
			for i, c := range cases {
				f := "f" + strconv.Itoa(i)
				for _, dirs := range []overlayDirs{d, k} {
					layer := dirs.upper
					if c.lower {
						layer = dirs.lowers[0]
					}
					setupPriv(t, layer, f, c)
				}
			}
			mnt, _ := mountUfsOverlay(t, d.options()+pt)
			kmnt, _ := mountKernelOverlay(t, k)
			// Let nobody reach the mounts (t.TempDir is private).
			for _, m := range []string{mnt, kmnt} {
				if err := os.Chmod(filepath.Dir(m), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for i, c := range cases {
				f := "f" + strconv.Itoa(i)
				before := privState(t, filepath.Join(kmnt, f))
				runPrivOp(t, c.uid, c.op, filepath.Join(kmnt, f))
				runPrivOp(t, c.uid, c.op, filepath.Join(mnt, f))
				want, got := privState(t, filepath.Join(kmnt, f)), privState(t, filepath.Join(mnt, f))
				if got != want {
					t.Errorf("%s: %s on ufs, %s on overlayfs (was %s)", c.name, got, want, before)
				}
			}
		})
	}
}

// TestKillPrivOwnWrites: as any user (also unprivileged, where the daemon
// writes as that user), a write by the owner without CAP_FSETID clears the
// set-user-ID bit, and the set-group-ID bit of a group-executable file,
// through passthrough and through the daemon, as ext4 does.
func TestKillPrivOwnWrites(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root has CAP_FSETID: a helper drops it by becoming nobody.
		t.Skip("covered as root by TestKillPrivLikeOverlayfs; this test is for the unprivileged user")
	}
	for _, pt := range []string{"", ",passthrough=false"} {
		d := newOverlayDirs(t, 1)
		mnt, _ := mountUfsOverlay(t, d.options()+pt)
		for _, op := range []string{"append", "otrunc", "truncate"} {
			for _, m := range []uint32{0o6777, 0o2767} {
				p := filepath.Join(mnt, fmt.Sprintf("%s-%o", op, m))
				if err := os.WriteFile(p, []byte("content\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := unix.Chmod(p, m); err != nil {
					t.Fatal(err)
				}
				runPrivOp(t, -1, op, p)
				want := m &^ unix.S_ISUID
				if m&unix.S_IXGRP != 0 {
					want &^= unix.S_ISGID
				}
				if got := privState(t, p); got != fmt.Sprintf("mode=%04o nocap", want) {
					t.Errorf("%s%s on mode %04o: %s, want mode %04o", op, pt, m, got, want)
				}
			}
		}
	}
}

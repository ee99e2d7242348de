package fusefs_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Metadata-only copy-up (metacopy=on): a change of the metadata of a lower
// file copies no data; a change of its data completes the copy first.

const mcSize = 1 << 20 // a lower file's size: its copy would show in st_blocks

// mcData is the content of the lower file name: mcSize pseudo-random bytes.
func mcData(name string) []byte {
	var seed [32]byte
	copy(seed[:], name)
	r := rand.NewChaCha8(seed)
	b := make([]byte, mcSize)
	_, _ = r.Read(b)
	return b
}

// mcLowers fills an overlay layout with big files in the lower layer: the
// names given, each also in dir/.
func mcLowers(t *testing.T, d overlayDirs, names ...string) {
	t.Helper()
	for _, n := range names {
		for _, p := range []string{n, "dir/" + n} {
			full := filepath.Join(d.lowers[0], p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, mcData(n), 0o644); err != nil {
				t.Fatal(err)
			}
			setxattr(t, full, "user.old", "x")
		}
	}
}

// metacopyAttr is the attribute ufs marks metacopy files with.
func metacopyAttr() string {
	if os.Geteuid() == 0 {
		return "trusted.overlay.metacopy"
	}
	return "user.overlay.metacopy"
}

// wantMetacopy checks that the upper file p is a metacopy file (meta) or a
// whole copy (!meta) of a file of size bytes.
func wantMetacopy(t *testing.T, p string, meta bool, size int64) {
	t.Helper()
	st := lstat(t, p)
	_, err := xattr(p, metacopyAttr())
	switch {
	case meta && err != nil:
		t.Errorf("%s: no %s: %v", p, metacopyAttr(), err)
	case !meta && err == nil:
		t.Errorf("%s still carries %s", p, metacopyAttr())
	case !meta && !errors.Is(err, unix.ENODATA):
		t.Errorf("%s: read %s: %v", p, metacopyAttr(), err)
	}
	if st.Size != size {
		t.Errorf("%s: size %d, want %d", p, st.Size, size)
	}
	// A metacopy file holds no data (xattr blocks aside); a whole copy
	// holds it all.
	if data := st.Blocks * 512; meta && data >= 64<<10 {
		t.Errorf("%s: %d bytes of blocks: the data was copied", p, data)
	} else if !meta && data < size {
		t.Errorf("%s: %d bytes of blocks, want the %d bytes of data", p, data, size)
	}
}

func wantBytes(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes of content differ from the %d expected", p, len(got), len(want))
	}
}

// mcMetaOp changes only the metadata of the union file p.
type mcMetaOp struct {
	name string
	do   func(p string) error
	want func(t *testing.T, p string)
	// timesOnly: a write changes what want checks.
	timesOnly bool
}

func mcMetaOps() []mcMetaOp {
	return []mcMetaOp{
		{"chmod", func(p string) error { return os.Chmod(p, 0o600) },
			func(t *testing.T, p string) { wantMode(t, p, unix.S_IFREG|0o600) }, false},
		{"chown", func(p string) error { return os.Lchown(p, os.Getuid(), os.Getgid()) }, nil, false},
		{"utimes", func(p string) error {
			ts := []unix.Timespec{unix.NsecToTimespec(t3.UnixNano()), unix.NsecToTimespec(t3.UnixNano())}
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		}, func(t *testing.T, p string) {
			if m := mtime(lstat(t, p)); !m.Equal(t3) {
				t.Errorf("%s: mtime %v, want %v", p, m, t3)
			}
		}, true},
		{"setxattr", func(p string) error { return unix.Setxattr(p, "user.k", []byte("v"), 0) },
			func(t *testing.T, p string) {
				if v, err := xattr(p, "user.k"); err != nil || v != "v" {
					t.Errorf("%s: user.k = %q, %v", p, v, err)
				}
			}, false},
		{"removexattr", func(p string) error { return unix.Removexattr(p, "user.old") },
			func(t *testing.T, p string) {
				if _, err := xattr(p, "user.old"); !errors.Is(err, unix.ENODATA) {
					t.Errorf("%s: user.old still readable: %v", p, err)
				}
			}, false},
	}
}

// TestMetacopyMetadataOnly: each change of metadata of a lower file leaves
// a metacopy file in the upper (no data), the union reads the lower data
// through it, and a write then completes the copy: a descriptor opened for
// reading before follows it. A remount keeps it all.
func TestMetacopyMetadataOnly(t *testing.T) {
	ops := mcMetaOps()
	var names []string
	for _, op := range ops {
		names = append(names, op.name)
	}
	d := newOverlayDirs(t, 1)
	mcLowers(t, d, names...)
	mnt, unmount := mountUfsOverlay(t, d.options()+",metacopy=on")
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			p := filepath.Join(mnt, op.name)
			if err := op.do(p); err != nil {
				t.Fatalf("%s: %v", op.name, err)
			}
			wantMetacopy(t, filepath.Join(d.upper, op.name), true, mcSize)
			if op.want != nil {
				op.want(t, p)
			}
			data := mcData(op.name)
			wantBytes(t, p, data)
			st, lst := lstat(t, p), lstat(t, filepath.Join(d.lowers[0], op.name))
			if st.Size != mcSize || st.Blocks != lst.Blocks {
				t.Errorf("union shows size %d blocks %d, want %d and the lower's %d", st.Size, st.Blocks, mcSize, lst.Blocks)
			}

			old, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatalf("open for writing: %v", err)
			}
			if _, err := f.WriteString("tail"); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			wantMetacopy(t, filepath.Join(d.upper, op.name), false, mcSize+4)
			if op.want != nil && !op.timesOnly {
				op.want(t, p)
			}
			wantBytes(t, p, append(data, "tail"...))
			buf := make([]byte, 8)
			if n, err := old.ReadAt(buf, mcSize-4); (err != nil && err != io.EOF) || string(buf[4:n]) != "tail" || !bytes.Equal(buf[:4], data[mcSize-4:]) {
				t.Errorf("descriptor opened before the copy reads %q (%v)", buf[:n], err)
			}
			wantBytes(t, filepath.Join(d.lowers[0], op.name), data)
		})
	}
	// A metacopy file survives a remount; without metacopy=on it is
	// refused, as overlayfs refuses it.
	if err := os.Chmod(filepath.Join(mnt, "dir/chmod"), 0o604); err != nil {
		t.Fatal(err)
	}
	unmount()
	wantStagingEmpty(t, filepath.Join(d.work, "ufs-work"))
	mnt2, unmount2 := mountUfsOverlay(t, d.options()+",metacopy=on")
	wantMode(t, filepath.Join(mnt2, "dir/chmod"), unix.S_IFREG|0o604)
	wantBytes(t, filepath.Join(mnt2, "dir/chmod"), mcData("chmod"))
	wantBytes(t, filepath.Join(mnt2, "chmod"), append(mcData("chmod"), "tail"...))
	unmount2()
	mnt3, _ := mountUfsOverlay(t, d.options())
	_, err := os.Stat(filepath.Join(mnt3, "dir/chmod"))
	wantErrno(t, "stat of a metacopy file without metacopy=on", err, unix.EPERM)
}

// TestMetacopyDataChange: every change of the data of a metacopy file
// completes its copy first, with the right content and metadata.
func TestMetacopyDataChange(t *testing.T) {
	tests := []struct {
		name string
		do   func(t *testing.T, mnt, p string) string // returns where the file is now
		want func(data []byte) []byte
	}{
		{"truncate", func(t *testing.T, mnt, p string) string {
			if err := os.Truncate(p, 10); err != nil {
				t.Fatal(err)
			}
			return p
		}, func(d []byte) []byte { return d[:10] }},
		{"open O_TRUNC", func(t *testing.T, mnt, p string) string {
			if err := os.WriteFile(p, []byte("new"), 0); err != nil {
				t.Fatal(err)
			}
			return p
		}, func([]byte) []byte { return []byte("new") }},
		{"write in the middle", func(t *testing.T, mnt, p string) string {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("XY"), 1000); err != nil {
				t.Fatal(err)
			}
			return p
		}, func(d []byte) []byte { d = bytes.Clone(d); copy(d[1000:], "XY"); return d }},
		{"hard link", func(t *testing.T, mnt, p string) string {
			if err := os.Link(p, p+".ln"); err != nil {
				t.Fatal(err)
			}
			return p + ".ln"
		}, func(d []byte) []byte { return d }},
		{"rename", func(t *testing.T, mnt, p string) string {
			if err := os.Rename(p, p+".mv"); err != nil {
				t.Fatal(err)
			}
			return p + ".mv"
		}, func(d []byte) []byte { return d }},
		{"rename unreadable", func(t *testing.T, mnt, p string) string {
			// Mode 000: the daemon must still read the metacopy file's
			// attributes to complete it.
			if err := os.Chmod(p, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p, p+".mv"); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p+".mv", 0o640); err != nil {
				t.Fatal(err)
			}
			return p + ".mv"
		}, func(d []byte) []byte { return d }},
	}
	var names []string
	for _, tt := range tests {
		names = append(names, strings.ReplaceAll(tt.name, " ", "_"))
	}
	d := newOverlayDirs(t, 1)
	mcLowers(t, d, names...)
	mnt, _ := mountUfsOverlay(t, d.options()+",metacopy=on")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := names[i]
			p := filepath.Join(mnt, name)
			if err := os.Chmod(p, 0o640); err != nil {
				t.Fatal(err)
			}
			wantMetacopy(t, filepath.Join(d.upper, name), true, mcSize)
			now := tt.do(t, mnt, p)
			want := tt.want(mcData(name))
			wantBytes(t, now, want)
			wantMode(t, now, unix.S_IFREG|0o640)
			rel, _ := filepath.Rel(mnt, now)
			wantMetacopy(t, filepath.Join(d.upper, rel), false, int64(len(want)))
		})
	}
	// A directory rename moves its metacopy files away from their data's
	// path: they get their data first.
	dir := filepath.Join(mnt, "dir")
	if err := os.Chmod(filepath.Join(dir, "rename"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, dir+"2"); err != nil {
		t.Fatal(err)
	}
	wantBytes(t, filepath.Join(mnt, "dir2/rename"), mcData("rename"))
	wantMode(t, filepath.Join(mnt, "dir2/rename"), unix.S_IFREG|0o600)
	wantMetacopy(t, filepath.Join(d.upper, "dir2/rename"), false, mcSize)
	wantStagingEmpty(t, filepath.Join(d.work, "ufs-work"))
}

// TestMetacopyExecMmap: a metacopy file maps and executes its lower data.
// Both run in helper processes: a page fault on the union in the daemon's
// own process can deadlock it (see the package doc of go-fuse).
func TestMetacopyExecMmap(t *testing.T) {
	d := newOverlayDirs(t, 1)
	mcLowers(t, d, "data")
	const script = "#!/bin/sh\nexit 0\n" // zeros instead would be ENOEXEC
	testutil.Write(t, d.lowers[0], testutil.Tree{"run": script})
	mnt, _ := mountUfsOverlay(t, d.options()+",metacopy=on")
	run := filepath.Join(mnt, "run")
	if err := os.Chmod(run, 0o755); err != nil {
		t.Fatal(err)
	}
	wantMetacopy(t, filepath.Join(d.upper, "run"), true, int64(len(script)))
	helper(t, "exec", run, "")

	p := filepath.Join(mnt, "data")
	if err := os.Chmod(p, 0o444); err != nil {
		t.Fatal(err)
	}
	helper(t, "mmap-read", p, fmt.Sprintf("%x", sha256.Sum256(mcData("data"))))
	wantMetacopy(t, filepath.Join(d.upper, "data"), true, mcSize)
}

// TestMetacopyRefused: metacopy=on needs the overlay format.
func TestMetacopyRefused(t *testing.T) {
	dir := t.TempDir()
	_, err := fusefs.New(fusefs.Config{Branches: []fusefs.Branch{{Path: dir, Perm: fusefs.PermRW}}, Metacopy: true})
	if !errors.Is(err, fusefs.ErrBadOption) || !strings.Contains(err.Error(), "metacopy") {
		t.Errorf("New with metacopy in the aufs format = %v, want ErrBadOption naming metacopy", err)
	}
}

// mcKernelOps change a union (the same on ufs and kernel overlayfs); with
// renames, which ufs completes and overlayfs follows with redirects.
func mcKernelOps(t *testing.T, mnt string, renames bool) {
	t.Helper()
	m := func(p string) string { return filepath.Join(mnt, p) }
	steps := []struct {
		what string
		do   func() error
	}{
		{"chmod", func() error { return os.Chmod(m("a"), 0o600) }},
		{"chown", func() error { return os.Lchown(m("b"), 1234, 5678) }},
		{"utimes", func() error { return os.Chtimes(m("c"), t3, t3) }},
		{"setxattr", func() error { return unix.Setxattr(m("dir/a"), "user.k", []byte("v"), 0) }},
		{"chmod then append", func() error {
			if err := os.Chmod(m("dir/b"), 0o640); err != nil {
				return err
			}
			f, err := os.OpenFile(m("dir/b"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("more")
			return err
		}},
		{"chmod then truncate", func() error {
			if err := os.Chmod(m("dir/c"), 0o604); err != nil {
				return err
			}
			return os.Truncate(m("dir/c"), 100)
		}},
		{"chmod then remove", func() error {
			if err := os.Chmod(m("d"), 0o600); err != nil {
				return err
			}
			return os.Remove(m("d"))
		}},
	}
	if renames {
		steps = append(steps, struct {
			what string
			do   func() error
		}{"chmod then rename to another directory", func() error {
			if err := os.Chmod(m("dir/d"), 0o600); err != nil {
				return err
			}
			return os.Rename(m("dir/d"), m("d2"))
		}}, struct {
			what string
			do   func() error
		}{"chown then rename in place", func() error {
			if err := os.Lchown(m("e"), 42, 43); err != nil {
				return err
			}
			return os.Rename(m("e"), m("e2"))
		}})
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
	}
}

// TestMetacopyKernel compares ufs with kernel overlayfs mounted with
// metacopy=on: the same changes on copies of the same lowers give the
// same tree and the same metacopy files; kernel overlayfs shows ufs's
// upper as ufs did, and ufs shows the kernel's upper as the kernel did.
func TestMetacopyKernel(t *testing.T) {
	testutil.RequireRoot(t)
	for _, renames := range []bool{false, true} {
		name := "without renames"
		if renames {
			name = "with renames"
		}
		t.Run(name, func(t *testing.T) {
			ud, kd := newOverlayDirs(t, 1), newOverlayDirs(t, 1)
			mcLowers(t, ud, "a", "b", "c", "d", "e")
			copyTree(t, ud.lowers[0], kd.lowers[0])
			kopts := kd.options() + ",metacopy=on,redirect_dir=on"
			kmnt := t.TempDir()
			if err := unix.Mount("overlay", kmnt, "overlay", 0, kopts); err != nil {
				if errors.Is(err, unix.EINVAL) {
					t.Skipf("kernel overlayfs refuses metacopy=on (%v): a kernel without CONFIG_OVERLAY_FS_METACOPY support", err)
				}
				t.Fatalf("mount kernel overlayfs: %v", err)
			}
			mcKernelOps(t, kmnt, renames)
			kernelView := treeOf(t, kmnt)
			if err := unix.Unmount(kmnt, 0); err != nil {
				t.Fatal(err)
			}

			mnt, unmount := mountUfsOverlay(t, ud.options()+",metacopy=on")
			mcKernelOps(t, mnt, renames)
			ufsView := treeOf(t, mnt)
			unmount()
			diffTrees(t, "ufs against kernel overlayfs", ufsView, kernelView)
			// Both copied the metadata only.
			for _, p := range []string{"a", "b", "c", "dir/a"} {
				wantMetacopy(t, filepath.Join(ud.upper, p), true, mcSize)
				wantMetacopy(t, filepath.Join(kd.upper, p), true, mcSize)
			}

			k2 := t.TempDir()
			if err := unix.Mount("overlay", k2, "overlay", 0, ud.options()+",metacopy=on,redirect_dir=on"); err != nil {
				t.Fatalf("mount kernel overlayfs on ufs's upper: %v", err)
			}
			diffTrees(t, "kernel overlayfs over ufs's upper", treeOf(t, k2), ufsView)
			if err := unix.Unmount(k2, 0); err != nil {
				t.Fatal(err)
			}
			if renames {
				// Kernel overlayfs keeps a renamed metacopy file, with a
				// redirect (absolute across directories, relative in
				// place), which ufs follows.
				for p, want := range map[string]string{"d2": "/dir/d", "e2": "e"} {
					if v, err := xattr(filepath.Join(kd.upper, p), "trusted.overlay.redirect"); err != nil || v != want {
						t.Errorf("kernel upper %s: redirect %q, %v; want %q", p, v, err, want)
					}
				}
			}
			m2, _ := mountUfsOverlay(t, kd.options()+",metacopy=on")
			diffTrees(t, "ufs over kernel overlayfs's upper", treeOf(t, m2), kernelView)
			if renames {
				// A change of data completes the redirected copy.
				f, err := os.OpenFile(filepath.Join(m2, "d2"), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteString("x"); err != nil {
					t.Fatal(err)
				}
				f.Close()
				wantBytes(t, filepath.Join(m2, "d2"), append(mcData("d"), 'x'))
				wantMetacopy(t, filepath.Join(kd.upper, "d2"), false, mcSize+1)
			}
		})
	}
}

// TestMetacopyStatOverride: with xattr_permissions=2 a metacopy file keeps
// its owner and mode in the stat override, also once completed.
func TestMetacopyStatOverride(t *testing.T) {
	d := newOverlayDirs(t, 1)
	mcLowers(t, d, "f")
	mnt, _ := mountUfsOverlay(t, d.options()+",metacopy=on,xattr_permissions=2")
	p := filepath.Join(mnt, "f")
	if err := os.Chmod(p, 0o604); err != nil {
		t.Fatal(err)
	}
	up := filepath.Join(d.upper, "f")
	wantMetacopy(t, up, true, mcSize)
	if v, err := xattr(up, "user.fuseoverlayfs.override_stat"); err != nil || !strings.HasSuffix(v, ":604") {
		t.Errorf("upper f: override %q, %v; want mode 604", v, err)
	}
	wantMode(t, p, unix.S_IFREG|0o604)
	wantBytes(t, p, mcData("f"))
	if err := os.Truncate(p, 5); err != nil {
		t.Fatal(err)
	}
	wantMetacopy(t, up, false, 5)
	wantMode(t, p, unix.S_IFREG|0o604)
	if v, err := xattr(up, "user.fuseoverlayfs.override_stat"); err != nil || !strings.HasSuffix(v, ":604") {
		t.Errorf("completed upper f: override %q, %v; want mode 604", v, err)
	}
	wantBytes(t, p, mcData("f")[:5])
}

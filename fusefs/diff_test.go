package fusefs_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// Differential tests: random operation sequences over a random stack of
// lower layers run on ufs in overlay mode and on kernel overlayfs; every
// step's errno and the final trees must match, also after a remount, and
// kernel overlayfs mounted on ufs's upper must show the same tree.
//
// Deliberate divergences (ufs goes further than overlayfs), known to the
// generator and listed here only:
//
//   - rename of a directory with lower contents: overlayfs without
//     redirect_dir says EXDEV, ufs moves it (copying the tree up). When
//     overlayfs says EXDEV, the step is not run on ufs (TestRename* cover
//     ufs's behaviour).
//   - lower layers hold no hard links: overlayfs without index=on breaks
//     them on copy-up, ufs keeps them (TestHardLinks*).
//   - with metacopy=on (TestDifferentialMetacopy) overlayfs also has
//     redirect_dir=on and renames directories, keeping them merged with a
//     redirect, where ufs copies the tree up and makes it opaque: renames
//     of directories are not run.

// diffNames is the namespace the generator draws paths from: few names, so
// that operations collide.
var diffNames = []string{"a", "b", "a/c", "a/f", "b/g", "a/c/h", "f", "g", "a/c/d", "b/a"}

type diffOp struct {
	Kind string
	A, B string
	N    int64
	// Pick replaces A, when the union holds anything, by one of its
	// existing paths (the N-th, sorted), so that most steps act on
	// something; both filesystems hold the same paths until they diverge.
	Pick bool
}

func (o diffOp) String() string {
	if o.Pick {
		return fmt.Sprintf("%s(existing#%d,%s,%d)", o.Kind, o.N, o.B, o.N)
	}
	return fmt.Sprintf("%s(%s,%s,%d)", o.Kind, o.A, o.B, o.N)
}

// resolve fills A of a Pick operation from the union at root.
func (o diffOp) resolve(root string) diffOp {
	if !o.Pick {
		return o
	}
	var paths []string
	_ = filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			paths = append(paths, rel)
		}
		return nil
	})
	if len(paths) > 0 {
		sort.Strings(paths)
		o.A = paths[int(o.N)%len(paths)]
		o.Pick = false
	}
	return o
}

var diffKinds = []string{"create", "write", "truncate", "otrunc", "rename", "noreplace", "exchange", "link", "unlink",
	"mkdir", "rmdir", "symlink", "chmod", "chown", "utimes", "setxattr", "removexattr", "mkfifo"}

// genOps draws n operations from r.
func genOps(r *rand.Rand, n int) []diffOp {
	ops := make([]diffOp, n)
	for i := range ops {
		ops[i] = diffOp{
			Kind: diffKinds[r.IntN(len(diffKinds))],
			A:    diffNames[r.IntN(len(diffNames))],
			B:    diffNames[r.IntN(len(diffNames))],
			N:    r.Int64N(5000),
			Pick: r.IntN(3) != 0,
		}
	}
	return ops
}

// genLowers fills the lower layers (topmost first) with files, directories,
// symlinks, 0/0 whiteouts and opaque directories, bottom layer first. A
// whiteout is only made where it hides something (the name exists in a
// lower layer, under no opaque directory of its own layer): kernel
// overlayfs lists pointless whiteouts of unmerged directories in readdir,
// which real image layers do not hold and ufs never shows.
func genLowers(t *testing.T, r *rand.Rand, lowers []string) {
	t.Helper()
	for li := len(lowers) - 1; li >= 0; li-- {
		dir := lowers[li]
		for _, name := range diffNames {
			p := filepath.Join(dir, name)
			if _, err := os.Lstat(filepath.Dir(p)); err != nil {
				continue // parent is not a directory in this layer
			}
			switch r.IntN(7) {
			case 0, 1:
				_ = os.WriteFile(p, []byte(strings.Repeat(name, 1+r.IntN(300))+fmt.Sprint(li)), 0o644)
			case 2, 3:
				_ = os.Mkdir(p, 0o755)
				if r.IntN(3) == 0 {
					_ = unix.Setxattr(p, "trusted.overlay.opaque", []byte("y"), 0)
				}
			case 4:
				if hiddenBelow(lowers[li+1:], name) && !underOpaque(dir, name) {
					_ = unix.Mknod(p, unix.S_IFCHR, 0)
				}
			case 5:
				_ = os.Symlink("target-"+name, p)
			}
		}
	}
}

// dropPointlessWhiteouts removes whiteouts that kernel overlayfs would list
// but not resolve (in directories it does not merge): it mounts the lowers
// read-only and deletes each whiteout whose name is listed but not found.
func dropPointlessWhiteouts(t *testing.T, lowers []string) {
	t.Helper()
	if len(lowers) < 2 {
		return
	}
	for range 10 {
		mnt := t.TempDir()
		if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
			t.Fatalf("mount the lowers: %v", err)
		}
		var bad []string
		_ = filepath.WalkDir(mnt, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if de.IsDir() {
				if ents, err := os.ReadDir(p); err == nil {
					for _, e := range ents {
						if _, err := os.Lstat(filepath.Join(p, e.Name())); err != nil {
							rel, _ := filepath.Rel(mnt, filepath.Join(p, e.Name()))
							bad = append(bad, rel)
						}
					}
				}
			}
			return nil
		})
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Fatalf("unmount the lowers: %v", err)
		}
		if len(bad) == 0 {
			return
		}
		for _, rel := range bad {
			for _, l := range lowers {
				var st unix.Stat_t
				p := filepath.Join(l, rel)
				if unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
					_ = os.Remove(p)
					break
				}
			}
		}
	}
	t.Fatal("could not clean the generated lowers")
}

// hiddenBelow reports whether name exists in one of the layers.
func hiddenBelow(layers []string, name string) bool {
	for _, l := range layers {
		if _, err := os.Lstat(filepath.Join(l, name)); err == nil {
			return true
		}
	}
	return false
}

// underOpaque reports whether a directory on the way to name in layer dir
// is opaque.
func underOpaque(dir, name string) bool {
	for p := filepath.Dir(name); p != "."; p = filepath.Dir(p) {
		if v, err := xattr(filepath.Join(dir, p), "trusted.overlay.opaque"); err == nil && v == "y" {
			return true
		}
	}
	return false
}

// runOp applies one operation under root and returns its errno (0 for
// success).
func runOp(root string, o diffOp) unix.Errno {
	a, b := filepath.Join(root, o.A), filepath.Join(root, o.B)
	var err error
	switch o.Kind {
	case "create":
		var fd int
		fd, err = unix.Open(a, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NONBLOCK, 0o640)
		if err == nil {
			_, err = unix.Write(fd, []byte("new "+o.A))
			unix.Close(fd)
		}
	case "write", "otrunc":
		flags := unix.O_WRONLY
		if o.Kind == "otrunc" {
			flags |= unix.O_TRUNC
		}
		var fd int
		fd, err = unix.Open(a, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err == nil {
			_, err = unix.Pwrite(fd, []byte("written"), o.N)
			unix.Close(fd)
		}
	case "truncate":
		err = unix.Truncate(a, o.N)
	case "rename":
		err = unix.Rename(a, b)
	case "noreplace":
		err = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE)
	case "exchange":
		err = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	case "link":
		err = unix.Link(a, b)
	case "unlink":
		err = unix.Unlink(a)
	case "mkdir":
		err = unix.Mkdir(a, 0o750)
	case "rmdir":
		err = unix.Rmdir(a)
	case "symlink":
		err = unix.Symlink("to-"+o.B, a)
	case "chmod":
		err = unix.Chmod(a, uint32(o.N)&0o777|0o400)
	case "chown":
		err = unix.Lchown(a, int(o.N%7), int(o.N%5))
	case "utimes":
		ts := []unix.Timespec{{Sec: o.N}, {Sec: o.N * 2}}
		err = unix.UtimesNanoAt(unix.AT_FDCWD, a, ts, unix.AT_SYMLINK_NOFOLLOW)
	case "setxattr":
		err = unix.Setxattr(a, "user.k", []byte(fmt.Sprint(o.N)), 0)
	case "removexattr":
		err = unix.Removexattr(a, "user.k")
	case "mkfifo":
		err = unix.Mkfifo(a, 0o600)
	}
	var errno unix.Errno
	if err != nil && !errors.As(err, &errno) {
		return unix.EIO
	}
	return errno
}

// diffTree describes a tree for comparison: type, permission bits, owner,
// size and content hash of files, link count of files, symlink targets,
// mtimes set by utimes steps and user xattrs.
func diffTree(root string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		d := fmt.Sprintf("%o %d:%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			d += fmt.Sprintf(" n%d s%d %x", st.Nlink, st.Size, sha256.Sum256(b))
			if st.Mtim.Sec < 1e6 {
				// Set by a utimes step (small values); times taken from
				// the clock differ between the two runs.
				d += fmt.Sprintf(" m%d", st.Mtim.Sec)
			}
		case unix.S_IFLNK:
			t, _ := os.Readlink(p)
			d += " ->" + t
		}
		buf := make([]byte, 64)
		if n, err := unix.Lgetxattr(p, "user.k", buf); err == nil {
			d += " k=" + string(buf[:n])
		}
		out[rel] = d
		return nil
	})
	return out, err
}

func treeDiff(got, want map[string]string) string {
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if got[k] != want[k] {
			fmt.Fprintf(&b, "  %s: got %q, want %q\n", k, got[k], want[k])
		}
	}
	return b.String()
}

// copyTree copies the lower layers for the second filesystem (cp -a keeps
// devices, xattrs and times).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", "--", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
}

// runSequence runs ops on ufs and on overlayfs over identical copies of a
// lower stack made from seed, and returns a description of the first
// divergence ("" if none).
// diffSucceeded counts the steps that succeeded on both filesystems, so
// that TestDifferential can check it tests more than error paths.
var diffSucceeded, diffSteps int

func runSequence(t *testing.T, seed uint64, ops []diffOp, extra string) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	nl := 1 + r.IntN(4)
	u, k := newOverlayDirs(t, nl), newOverlayDirs(t, nl)
	u.extra, k.extra = extra, extra
	genLowers(t, r, u.lowers)
	dropPointlessWhiteouts(t, u.lowers)
	for i := range u.lowers {
		copyTree(t, u.lowers[i], k.lowers[i])
	}
	umnt, uoff := mountUfsOverlay(t, u.options())
	kmnt, koff := mountKernelOverlay(t, k)
	for i, o := range ops {
		o = o.resolve(kmnt)
		if extra != "" && movesDir(kmnt, o) {
			continue // deliberate divergence: see the package comment above
		}
		ke := runOp(kmnt, o)
		if (o.Kind == "rename" || o.Kind == "noreplace" || o.Kind == "exchange") && ke == unix.EXDEV {
			continue // deliberate divergence: see the package comment above
		}
		if ue := runOp(umnt, o); ue != ke {
			tree, _ := exec.Command("ls", "-laR", filepath.Dir(k.upper)).CombinedOutput()
			return fmt.Sprintf("step %d %v: ufs errno %v, overlayfs %v\nkernel overlayfs's layers now:\n%s", i, o, ue, ke, tree)
		}
		diffSteps++
		if ke == 0 {
			diffSucceeded++
		}
	}
	compare := func(when string) string {
		ut, err1 := diffTree(umnt)
		kt, err2 := diffTree(kmnt)
		if err1 != nil || err2 != nil {
			ls, _ := exec.Command("ls", "-laR", kmnt, filepath.Dir(k.upper)).CombinedOutput()
			return fmt.Sprintf("%s: walk: ufs %v, overlayfs %v\n%s", when, err1, err2, ls)
		}
		if d := treeDiff(ut, kt); d != "" {
			return when + " (got: ufs, want: overlayfs):\n" + d
		}
		return ""
	}
	if d := compare("after the sequence"); d != "" {
		return d
	}
	uoff()
	koff()
	umnt, uoff = mountUfsOverlay(t, u.options())
	kmnt, koff = mountKernelOverlay(t, k)
	if d := compare("after a remount"); d != "" {
		return d
	}
	uoff()
	koff()
	_ = umnt
	// ufs's upper must mean to overlayfs what it means to ufs.
	kmnt, _ = mountKernelOverlay(t, u)
	kt, err := diffTree(kmnt)
	if err != nil {
		ls, _ := exec.Command("sh", "-c", "ls -laR \"$0\"; getfattr -R -d -m - \"$0\"", filepath.Dir(u.upper)).CombinedOutput()
		return "overlayfs on ufs's upper: " + err.Error() + "\nufs's layers:\n" + string(ls)
	}
	k2, _ := mountKernelOverlay(t, k)
	want, _ := diffTree(k2)
	if d := treeDiff(kt, want); d != "" {
		return "overlayfs on ufs's upper vs on its own:\n" + d
	}
	return ""
}

// movesDir reports whether o renames a directory of the union root.
func movesDir(root string, o diffOp) bool {
	isDir := func(p string) bool {
		fi, err := os.Lstat(filepath.Join(root, p))
		return err == nil && fi.IsDir()
	}
	switch o.Kind {
	case "rename", "noreplace":
		return isDir(o.A)
	case "exchange":
		return isDir(o.A) || isDir(o.B)
	}
	return false
}

// shrink removes operations while the sequence still diverges.
func shrink(t *testing.T, seed uint64, ops []diffOp, extra string) []diffOp {
	for i := 0; i < len(ops); {
		try := append(append([]diffOp{}, ops[:i]...), ops[i+1:]...)
		var d string
		t.Run("shrink", func(t *testing.T) { d = runSequence(t, seed, try, extra) })
		if d != "" {
			ops = try
		} else {
			i++
		}
	}
	return ops
}

// diffCheck runs ops on both filesystems, mounted with the extra options
// (comma-separated, or "").
func diffCheck(t *testing.T, seed uint64, ops []diffOp, extra string) {
	t.Helper()
	d := runSequence(t, seed, ops, extra)
	if d == "" {
		return
	}
	small := shrink(t, seed, ops, extra)
	t.Fatalf("seed %d diverges: %s\nshrunk sequence (%d ops): %v", seed, d, len(small), small)
}

// TestDifferential runs a bounded number of random sequences from a fixed
// seed; UFS_DIFF_SEQUENCES changes the number.
func TestDifferential(t *testing.T) {
	n := diffSequences(t, "UFS_DIFF_SEQUENCES", 1000, 1, "")
	if t.Failed() {
		return
	}
	t.Logf("%d sequences, %d steps, %d succeeded", n, diffSteps, diffSucceeded)
	if diffSucceeded*5 < diffSteps {
		t.Errorf("only %d of %d steps succeeded: the generator mostly tests error paths", diffSucceeded, diffSteps)
	}
}

// TestDifferentialMetacopy runs random sequences with metacopy=on on both
// (and redirect_dir=on, which overlayfs needs for it: directory renames
// then succeed on both); UFS_DIFF_METACOPY_SEQUENCES changes the number.
func TestDifferentialMetacopy(t *testing.T) {
	diffSequences(t, "UFS_DIFF_METACOPY_SEQUENCES", 300, 3, "metacopy=on,redirect_dir=on")
}

// diffSequences checks n random sequences (env overrides n) with extra
// mount options, their seeds drawn from PCG(stream, stream+1), up to the
// first divergence, and returns n.
func diffSequences(t *testing.T, env string, n int, stream uint64, extra string) int {
	testutil.RequireRoot(t)
	testutil.RequireFUSE(t)
	if s := os.Getenv(env); s != "" {
		fmt.Sscan(s, &n)
	}
	master := rand.New(rand.NewPCG(stream, stream+1))
	for i := range n {
		seed := master.Uint64()
		ops := genOps(rand.New(rand.NewPCG(seed, 7)), 25)
		t.Run(fmt.Sprint(i), func(t *testing.T) { diffCheck(t, seed, ops, extra) })
		if t.Failed() {
			break
		}
	}
	return n
}

// FuzzDifferential lets go test -fuzz explore sequences; the input is a
// seed and a byte string that encodes the operations.
func FuzzDifferential(f *testing.F) {
	for _, s := range []uint64{1, 2, 3, 42} {
		f.Add(s, []byte("seed corpus: a few operations"))
	}
	f.Fuzz(func(t *testing.T, seed uint64, prog []byte) {
		testutil.RequireRoot(t)
		testutil.RequireFUSE(t)
		var ops []diffOp
		for len(prog) >= 4 && len(ops) < 40 {
			v := binary.LittleEndian.Uint32(prog)
			prog = prog[4:]
			ops = append(ops, diffOp{
				Kind: diffKinds[v%uint32(len(diffKinds))],
				A:    diffNames[(v>>8)%uint32(len(diffNames))],
				B:    diffNames[(v>>16)%uint32(len(diffNames))],
				N:    int64(v >> 20),
				Pick: v&1 == 1,
			})
		}
		diffCheck(t, seed, ops, "")
	})
}

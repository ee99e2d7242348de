package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

const (
	workDir  = ".wh..wh.work" // copy-up staging directory of an rw branch
	plinkDir = ".wh..wh.plnk" // hard-link index of an rw branch
	mib      = 1 << 20
)

// fillPattern fills buf, which starts at offset off of a file, with a
// pattern that tells every 8-byte word of the file from every other.
func fillPattern(buf []byte, off int64) {
	for i := 0; i+8 <= len(buf); i += 8 {
		binary.BigEndian.PutUint64(buf[i:], uint64(off+int64(i))^0x5546535f54455354)
	}
}

// writeBig writes size bytes (a multiple of 1 MiB) of the pattern to path.
func writeBig(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, mib)
	for off := int64(0); off < size; off += mib {
		fillPattern(buf, off)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// classify reads path and says whether it holds the size bytes of the
// pattern ("old"), the pattern and one appended 'X' ("new"), or something
// else (an error that says where it differs).
func classify(path string, size int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	want := make([]byte, mib)
	got := make([]byte, mib)
	for off := int64(0); off < size; {
		m := min(int64(mib), size-off)
		n, err := io.ReadFull(f, got[:m])
		fillPattern(want, off)
		if i := firstDiff(got[:n], want[:n]); i >= 0 {
			return "", fmt.Errorf("%s differs from the old content at offset %d", path, off+int64(i))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", fmt.Errorf("%s is truncated: %d of %d bytes", path, off+int64(n), size)
		}
		if err != nil {
			return "", err
		}
		off += m
	}
	rest, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	return classifyTail(path, rest)
}

func classifyTail(path string, tail []byte) (string, error) {
	switch {
	case len(tail) == 0:
		return "old", nil
	case bytes.Equal(tail, []byte("X")):
		return "new", nil
	}
	return "", fmt.Errorf("%s has %d unexpected bytes after the old content", path, len(tail))
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// crashPoint is a moment of a copy-up, told by the inotify event it makes
// in the staging directory, at which the daemon is killed.
type crashPoint struct {
	name string
	mask uint32
	// partial: after the event (IN_CREATE), wait until the staged file
	// holds some data before killing.
	partial bool
}

var crashPoints = []crashPoint{
	{name: "as the copy starts", mask: unix.IN_CREATE},           // staged file made
	{name: "while copying", mask: unix.IN_CREATE, partial: true}, // part of the data copied
	{name: "after the data", mask: unix.IN_MODIFY},               // copied, now syncing
	{name: "while setting metadata", mask: unix.IN_ATTRIB},       // owner, mode, xattrs, times
	{name: "after the rename", mask: unix.IN_MOVED_FROM},         // in place, the write not yet done
}

// crashOutcome is what one killed copy-up left.
type crashOutcome struct {
	event   string // name of the staged file the triggering event was about
	staged  int64  // bytes of the staged file left in the work dir; -1 if none
	writeOK bool   // the append through the union succeeded
}

// TestCopyUpAtomic kills the daemon with SIGKILL at several points of the
// copy-up of a large lower file (triggered by an O_APPEND write of one
// byte), clears the dead mount with ufs unmount, mounts again, and checks
// that the file shows wholly old or wholly new, that the staging directory
// is empty, that no temporary name shows anywhere, and that the lower file
// is untouched.
//
// The crash points are told apart by the inotify events the copy-up makes
// in the staging directory. The copy uses FICLONE where the branch
// filesystem can, else copy_file_range; on ext4 the latter copies 256 MiB
// slowly enough for the kill to land in the middle. "while copying" waits
// for the first staged bytes, kills, checks that a partial staged file was
// left, and retries with a bigger file if the copy won the race; if every
// size loses, it says so in the log and still checks the outcome.
func TestCopyUpAtomic(t *testing.T) {
	testutil.RequireFUSE(t)
	for _, cp := range crashPoints {
		t.Run(cp.name, func(t *testing.T) {
			sizes := []int64{256 * mib}
			if cp.partial {
				sizes = []int64{256 * mib, 512 * mib, 1024 * mib}
			}
			for i, size := range sizes {
				var out crashOutcome
				ok := t.Run(fmt.Sprintf("%dMiB", size/mib), func(t *testing.T) {
					out = crashCopyUp(t, size, cp)
				})
				if !ok || !cp.partial {
					return
				}
				if out.staged > 0 && out.staged < size {
					t.Logf("killed in the middle of the copy: %d of %d bytes staged", out.staged, size)
					return
				}
				t.Logf("the copy of %d MiB finished before the kill landed (staged %d bytes)", size/mib, out.staged)
				if i == len(sizes)-1 {
					t.Logf("could not kill the daemon in the middle of a copy-up of up to %d MiB: the outcome was checked, the mid-copy crash was not exercised", size/mib)
				}
			}
		})
	}
}

// crashCopyUp runs one killed copy-up of a size-byte file, killing the
// daemon at the crash point, and checks what a new mount shows.
func crashCopyUp(t *testing.T, size int64, cp crashPoint) crashOutcome {
	mask := cp.mask
	d := dirs(t, "up", "lo", "mnt")
	up, lo, mnt := d["up"], d["lo"], d["mnt"]
	testutil.Write(t, lo, testutil.Tree{"other/file": "other"})
	writeBig(t, filepath.Join(lo, "big"), size)
	args := []string{"-o", "br=" + up + "=rw:" + lo + "=ro"}
	mountUfs(t, mnt, args...)
	pid := daemonPID(t, mnt)

	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(os.NewSyscallError("inotify_init1", err))
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, filepath.Join(up, workDir), mask); err != nil {
		t.Fatal(os.NewSyscallError("inotify_add_watch", err))
	}
	done, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(os.NewSyscallError("eventfd", err))
	}
	defer unix.Close(done)

	var out crashOutcome
	out.staged = -1
	writeErr := make(chan error, 1)
	go func() {
		err := appendByte(filepath.Join(mnt, "big"))
		writeErr <- err
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		_, _ = unix.Write(done, one[:])
	}()

	// Wait for the event (or for the write to end without one).
	start := time.Now()
	fds := []unix.PollFd{{Fd: int32(in), Events: unix.POLLIN}, {Fd: int32(done), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, int(cmdTimeout/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatal(os.NewSyscallError("poll", err))
		}
		break
	}
	if fds[0].Revents&unix.POLLIN != 0 {
		out.event = inotifyName(in)
		if cp.partial {
			// One copy_file_range call copies the whole file and makes
			// no event until it returns: watch the staged size grow.
			waitStaged(t, filepath.Join(up, workDir, out.event), size)
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed the daemon %v after the append began, on an event for %q", time.Since(start).Round(time.Millisecond), out.event)
	} else if fds[1].Revents&unix.POLLIN != 0 {
		t.Fatalf("the append ended (%v) without the event %#x in %s: is copy-up staged there?", <-writeErr, mask, workDir)
	} else {
		t.Fatalf("no event %#x in %s after %v", mask, workDir, cmdTimeout)
	}
	if !testutil.WaitExit(t, pid, 10*time.Second) {
		t.Fatalf("daemon %d survived SIGKILL", pid)
	}
	select {
	case err := <-writeErr:
		out.writeOK = err == nil
		t.Logf("append through the union: %v", err)
	case <-time.After(cmdTimeout):
		t.Fatal("the append through the union still blocks after the daemon died")
	}

	// What the crash left in the staging directory.
	staged, err := os.ReadDir(filepath.Join(up, workDir))
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range staged {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, e.Name())
		if fi.Mode().IsRegular() {
			out.staged = fi.Size()
		}
		t.Logf("left in %s: %s, %d bytes", workDir, e.Name(), fi.Size())
	}
	if len(staged) > 1 {
		t.Errorf("more than one object staged for one copy-up: %v", left)
	}

	if r := runUfs(t, "unmount", mnt); r.code != 0 {
		t.Fatalf("clearing the dead union: %v", r)
	}
	if n := mountCount(t, mnt); n != 0 {
		t.Fatalf("%d mounts on %s after ufs unmount", n, mnt)
	}
	mountUfs(t, mnt, args...)

	state, err := classify(filepath.Join(mnt, "big"), size)
	if err != nil {
		t.Errorf("through the union after the crash: %v", err)
	} else {
		t.Logf("the union shows the %s content", state)
		if out.writeOK && state != "new" {
			t.Errorf("the append succeeded before the crash but the union shows the old content")
		}
	}
	if got, want := names(t, mnt), []string{"big", "other/", "other/file"}; !equalStrings(got, want) {
		t.Errorf("union listing after the crash: %q, want %q", got, want)
	}
	for _, n := range append(left, workDir, plinkDir) {
		if _, err := os.Lstat(filepath.Join(mnt, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lookup of %q through the union: %v, want ENOENT", n, err)
		}
	}
	if rest, err := os.ReadDir(filepath.Join(up, workDir)); err != nil || len(rest) != 0 {
		t.Errorf("%s after the new mount: %v, %v; want it empty", workDir, dirNames(rest), err)
	}
	if rest, err := os.ReadDir(filepath.Join(up, plinkDir)); err != nil || len(rest) != 0 {
		t.Errorf("%s after the new mount: %v, %v; want it empty", plinkDir, dirNames(rest), err)
	}
	for _, n := range names(t, up) {
		switch {
		case n == workDir+"/", n == plinkDir+"/", n == "big":
		default:
			t.Errorf("unexpected %q in the rw branch after the crash", n)
		}
	}
	if _, err := os.Stat(filepath.Join(up, "big")); err == nil {
		if s, err := classify(filepath.Join(up, "big"), size); err != nil {
			t.Errorf("rw branch copy: %v", err)
		} else {
			t.Logf("the rw branch holds a whole %s copy", s)
		}
	}
	if s, err := classify(filepath.Join(lo, "big"), size); err != nil || s != "old" {
		t.Errorf("the lower file changed: %s, %v", s, err)
	}
	return out
}

// waitStaged spins until the staged file at path holds data (or is gone,
// or complete). No event marks the first bytes of a copy_file_range: this
// is the one place where the test polls, for at most one copy's duration.
func waitStaged(t *testing.T, path string, size int64) {
	t.Helper()
	deadline := time.Now().Add(cmdTimeout)
	var st unix.Stat_t
	for time.Now().Before(deadline) {
		if err := unix.Stat(path, &st); err != nil || st.Size > 0 {
			return
		}
	}
	t.Fatalf("staged %s still empty after %v", path, cmdTimeout)
}

// appendByte appends "X" to path, as a program that copies a file up
// would: open O_WRONLY|O_APPEND, write, close.
func appendByte(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte("X")); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// inotifyName returns the name of the first pending event on the inotify
// descriptor fd.
func inotifyName(fd int) string {
	buf := make([]byte, 64*1024)
	n, err := unix.Read(fd, buf)
	if err != nil || n < unix.SizeofInotifyEvent {
		return ""
	}
	// struct inotify_event: wd, mask, cookie, len, then len bytes of name.
	l := int(binary.NativeEndian.Uint32(buf[12:16]))
	name := buf[unix.SizeofInotifyEvent:min(n, unix.SizeofInotifyEvent+l)]
	return strings.TrimRight(string(name), "\x00")
}

// names lists every entry below dir, directories with a trailing "/",
// without reading the files.
func names(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	var walk func(rel string)
	walk = func(rel string) {
		ents, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			t.Fatalf("readdir %s: %v", filepath.Join(dir, rel), err)
		}
		for _, e := range ents {
			p := filepath.Join(rel, e.Name())
			if e.IsDir() {
				out = append(out, p+"/")
				if rel == "" && strings.HasPrefix(e.Name(), ".wh..wh.") {
					continue // the branch's own bookkeeping, checked apart
				}
				walk(p)
				continue
			}
			out = append(out, p)
		}
	}
	walk("")
	sort.Strings(out)
	return out
}

func dirNames(ents []os.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRootlessFusermount mounts as an unprivileged user outside any user
// namespace, which goes through fusermount3, and checks that the union
// works (create, copy-up, whiteout), that what it creates belongs to the
// user, that the passthrough fallback is logged, and that ufs unmount
// works.
func TestRootlessFusermount(t *testing.T) {
	testutil.RequireRootless(t)
	testutil.RequireFUSE(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not installed")
	}
	d := dirs(t, "up", "lo", "mnt")
	up, lo, mnt := d["up"], d["lo"], d["mnt"]
	testutil.Write(t, lo, testutil.Tree{"lower": "lower\n", "gone": "gone\n", "sub/file": "file\n"})
	logFile := filepath.Join(d[""], "ufs.log")
	mountUfs(t, mnt, "-o", "br="+up+"=rw:"+lo+"=ro", "-o", "log="+logFile)
	pid := daemonPID(t, mnt)

	fstype, opts := mountEntry(t, mnt)
	if fstype != "fuse.ufs" {
		t.Errorf("mount type %q, want fuse.ufs", fstype)
	}
	if !strings.Contains(","+opts+",", fmt.Sprintf(",user_id=%d,", os.Getuid())) {
		t.Errorf("super options %q do not name user_id=%d (a fusermount3 mount)", opts, os.Getuid())
	}

	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	if err := os.WriteFile(filepath.Join(mnt, "new"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "newdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "sub", "new"), []byte("in a lower dir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := appendByte(filepath.Join(mnt, "lower")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "gone")); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{"new": "new\n", "newdir/": "", "lower": "lower\nX", "sub/": "", "sub/file": "file\n", "sub/new": "in a lower dir\n"}
	if diff := diffMaps(snapshot(t, mnt), want); diff != "" {
		t.Errorf("union:%s", diff)
	}
	for _, p := range []string{"new", "newdir", "sub", "sub/new", "lower", ".wh.gone"} {
		full := filepath.Join(up, p)
		if u, g := statIDs(t, full); u != uid || g != gid {
			t.Errorf("%s in the rw branch is owned by %d:%d, want the user %d:%d", p, u, g, uid, gid)
		}
	}
	if b, err := os.ReadFile(filepath.Join(lo, "lower")); err != nil || string(b) != "lower\n" {
		t.Errorf("the lower file changed: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(lo, "gone")); err != nil {
		t.Errorf("removal through the union reached the lower branch: %v", err)
	}

	if r := runUfs(t, "unmount", mnt); r.code != 0 {
		t.Fatalf("%v", r)
	}
	if n := mountCount(t, mnt); n != 0 {
		t.Errorf("%d mounts on %s after ufs unmount", n, mnt)
	}
	if !testutil.WaitExit(t, pid, 10*time.Second) {
		t.Errorf("daemon %d still runs 10s after ufs unmount", pid)
	}
	if b, err := os.ReadFile(logFile); err != nil || !bytes.Contains(b, []byte("passthrough")) {
		t.Errorf("the log does not say that FUSE passthrough is off: %q, %v", b, err)
	}
}

// usernsParams tells the userns helper what to do.
type usernsParams struct {
	Ufs      string // the ufs binary
	Up, Low  string // rw branch, a ro branch owned by the user
	Mnt      string // mountpoint
	Share    string // a root-owned file, relative to /usr/share (a ro branch too)
	AsUID    int    // if not 0: also create files as this uid and gid
	UfsFlags []string
}

// usernsReport is what the userns helper saw inside the namespace.
type usernsReport struct {
	UID       int       // our uid inside
	UIDMap    string    // /proc/self/uid_map
	Overflow  [2]uint32 // kernel overflow uid and gid
	Direct    [2]uint32 // owner of /usr/share/Share, seen directly
	Union     [2]uint32 // ... and through the union
	New       [2]uint32 // owner of a file made through the union
	ByUser    [2]uint32 // owner of a file made through the union by AsUID
	ByUserDir [2]uint32 // ... and of a directory
	Unmounted bool      // ufs unmount worked and nothing is mounted
	Errors    []string
}

const usernsParamsEnv = "UFS_TEST_USERNS"

// usernsHelper runs inside a user and mount namespace: it mounts a union
// of Up, Low and /usr/share, looks at owners through it, and unmounts. It
// prints a usernsReport as JSON.
func usernsHelper() int {
	var p usernsParams
	if err := json.Unmarshal([]byte(os.Getenv(usernsParamsEnv)), &p); err != nil {
		fmt.Fprintf(os.Stderr, "userns helper: %v\n", err)
		return 2
	}
	var rep usernsReport
	fail := func(format string, args ...any) { rep.Errors = append(rep.Errors, fmt.Sprintf(format, args...)) }
	ids := func(path string) [2]uint32 {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			fail("lstat %s: %v", path, err)
		}
		return [2]uint32{st.Uid, st.Gid}
	}
	rep.UID = os.Getuid()
	if b, err := os.ReadFile("/proc/self/uid_map"); err == nil {
		rep.UIDMap = string(b)
	}
	for i, f := range []string{"/proc/sys/kernel/overflowuid", "/proc/sys/kernel/overflowgid"} {
		b, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
			continue
		}
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
		rep.Overflow[i] = uint32(v)
	}

	args := append([]string{"mount", "-o", "br=" + p.Up + "=rw:" + p.Low + "=ro:/usr/share=ro"}, p.UfsFlags...)
	if out, err := exec.Command(p.Ufs, append(args, p.Mnt)...).CombinedOutput(); err != nil {
		fail("ufs mount: %v: %s", err, out)
		return report(rep)
	}
	rep.Direct = ids(filepath.Join("/usr/share", p.Share))
	rep.Union = ids(filepath.Join(p.Mnt, p.Share))
	if err := os.WriteFile(filepath.Join(p.Mnt, "new"), []byte("new\n"), 0o644); err != nil {
		fail("create through the union: %v", err)
	}
	rep.New = ids(filepath.Join(p.Mnt, "new"))
	if err := appendByte(filepath.Join(p.Mnt, "mine")); err != nil {
		fail("copy-up through the union: %v", err)
	}
	if p.AsUID != 0 {
		cmd := exec.Command("sh", "-ec", `echo u >"$1/shared/byuser"; mkdir "$1/shared/dirbyuser"`, "sh", p.Mnt)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.AsUID), Gid: uint32(p.AsUID), NoSetGroups: true}}
		if out, err := cmd.CombinedOutput(); err != nil {
			fail("create as uid %d: %v: %s", p.AsUID, err, out)
		} else {
			rep.ByUser = ids(filepath.Join(p.Mnt, "shared", "byuser"))
			rep.ByUserDir = ids(filepath.Join(p.Mnt, "shared", "dirbyuser"))
		}
	}
	if out, err := exec.Command(p.Ufs, "unmount", p.Mnt).CombinedOutput(); err != nil {
		fail("ufs unmount: %v: %s", err, out)
		_ = exec.Command(p.Ufs, "unmount", "-z", p.Mnt).Run()
	} else {
		rep.Unmounted = true
	}
	return report(rep)
}

func report(rep usernsReport) int {
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return 2
	}
	return 0
}

// rootOwnedShareFile returns a regular file of /usr/share owned by root,
// relative to /usr/share, skipping t if there is none.
func rootOwnedShareFile(t *testing.T) string {
	t.Helper()
	for _, c := range []string{"common-licenses/GPL-3", "common-licenses/Apache-2.0", "base-files/motd"} {
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/usr/share", c), &st) == nil && st.Uid == 0 && st.Mode&unix.S_IFMT == unix.S_IFREG {
			return c
		}
	}
	found := ""
	_ = filepath.WalkDir("/usr/share", func(p string, d fs.DirEntry, err error) error {
		if err != nil || found != "" {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if d.Type().IsRegular() && unix.Stat(p, &st) == nil && st.Uid == 0 && st.Mode&0o004 != 0 {
			found, _ = filepath.Rel("/usr/share", p)
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		t.Skip("no world-readable root-owned file in /usr/share")
	}
	return found
}

// mapID maps id inside a user namespace to the id outside, from the
// namespace's uid_map text.
func mapID(uidMap string, id uint32) (uint32, bool) {
	sc := bufio.NewScanner(strings.NewReader(uidMap))
	for sc.Scan() {
		var in, out, n uint32
		if _, err := fmt.Sscan(sc.Text(), &in, &out, &n); err != nil {
			continue
		}
		if id >= in && id-in < n {
			return out + (id - in), true
		}
	}
	return 0, false
}

// TestRootlessUserNS mounts a union inside a new user and mount namespace
// (the test binary re-executed there) and checks that: ufs mounts and
// unmounts there; a root-owned file of the ro branch /usr/share, unmapped
// in the namespace, shows with the overflow ids through the union exactly
// as it does directly; what root of the namespace creates is owned by the
// user outside; and, where subordinate ids are mapped, what another uid of
// the namespace creates is owned by its mapped id outside.
func TestRootlessUserNS(t *testing.T) {
	testutil.RequireRootless(t)
	testutil.RequireUserNS(t)
	testutil.RequireFUSE(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	share := rootOwnedShareFile(t)
	tests := []struct {
		name  string
		asUID int
		cmd   func(env []string) *exec.Cmd
	}{
		{
			name: "own uid",
			cmd: func(env []string) *exec.Cmd {
				cmd := exec.Command(self)
				cmd.Env = env
				cmd.SysProcAttr = &syscall.SysProcAttr{
					Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
					UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
					GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
					GidMappingsEnableSetgroups: false,
					Pdeathsig:                  syscall.SIGKILL,
				}
				return cmd
			},
		},
		{
			name:  "subordinate ids",
			asUID: 1000,
			cmd: func(env []string) *exec.Cmd {
				if _, err := exec.LookPath("newuidmap"); err != nil {
					t.Skip("newuidmap (uidmap) not installed")
				}
				cmd := exec.Command("unshare", "--map-auto", "--map-root-user", "--mount", "--", self)
				cmd.Env = env
				cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
				return cmd
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := dirs(t, "up", "low", "mnt")
			testutil.Write(t, d["low"], testutil.Tree{"mine": "mine\n"})
			if tc.asUID != 0 {
				// t.TempDir makes 0700 directories: let the other uid through.
				for _, p := range []string{filepath.Dir(d[""]), d[""]} {
					if err := os.Chmod(p, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				if err := os.Mkdir(filepath.Join(d["up"], "shared"), 0o777); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(d["up"], "shared"), 0o777); err != nil {
					t.Fatal(err)
				}
			}
			cleanupMount(t, d["mnt"]) // ends the daemon if the helper left it
			p := usernsParams{Ufs: testutil.UfsBin(t), Up: d["up"], Low: d["low"], Mnt: d["mnt"], Share: share, AsUID: tc.asUID}
			pj, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			env := append(os.Environ(), helperEnv+"=userns", usernsParamsEnv+"="+string(pj))
			cmd := tc.cmd(env)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("helper in a user namespace: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
			}
			var rep usernsReport
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("helper report %q: %v (stderr: %s)", stdout.String(), err, stderr.String())
			}
			t.Logf("inside: uid %d, uid_map %q; /usr/share/%s owned by %v directly, %v through the union (overflow %v)",
				rep.UID, strings.TrimSpace(rep.UIDMap), share, rep.Direct, rep.Union, rep.Overflow)
			for _, e := range rep.Errors {
				t.Errorf("inside the namespace: %s", e)
			}
			if rep.UID != 0 {
				t.Errorf("uid inside the namespace is %d, want 0", rep.UID)
			}
			if rep.Direct != rep.Overflow {
				t.Errorf("/usr/share/%s shows as %v directly, not the overflow ids %v: is root mapped?", share, rep.Direct, rep.Overflow)
			}
			if rep.Union != rep.Direct {
				t.Errorf("/usr/share/%s shows as %v through the union, %v directly", share, rep.Union, rep.Direct)
			}
			if rep.New != [2]uint32{0, 0} {
				t.Errorf("a file root made through the union shows as %v inside, want [0 0]", rep.New)
			}
			uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
			for _, n := range []string{"new", "mine"} {
				if u, g := statIDs(t, filepath.Join(d["up"], n)); u != uid || g != gid {
					t.Errorf("rw branch %s is owned by %d:%d outside, want the user %d:%d", n, u, g, uid, gid)
				}
			}
			if b, err := os.ReadFile(filepath.Join(d["up"], "mine")); err != nil || string(b) != "mine\nX" {
				t.Errorf("copied-up file in the rw branch: %q, %v", b, err)
			}
			if tc.asUID != 0 {
				want := [2]uint32{uint32(tc.asUID), uint32(tc.asUID)}
				if rep.ByUser != want || rep.ByUserDir != want {
					t.Errorf("objects uid %d made through the union show as %v and %v inside, want %v", tc.asUID, rep.ByUser, rep.ByUserDir, want)
				}
				outside, ok := mapID(rep.UIDMap, uint32(tc.asUID))
				if !ok {
					t.Fatalf("uid %d is not mapped: %q", tc.asUID, rep.UIDMap)
				}
				for _, n := range []string{"byuser", "dirbyuser"} {
					if u, _ := statIDs(t, filepath.Join(d["up"], "shared", n)); u != outside {
						t.Errorf("rw branch shared/%s is owned by uid %d outside, want %d (uid %d inside)", n, u, outside, tc.asUID)
					}
				}
			}
			if !rep.Unmounted {
				t.Error("ufs unmount inside the namespace failed")
			}
			for _, pid := range daemonPIDs(d["mnt"]) {
				if !testutil.WaitExit(t, pid, 10*time.Second) {
					t.Errorf("daemon %d still runs 10s after ufs unmount in the namespace", pid)
				}
			}
		})
	}
}

// TestRootCallerOwnsNewObjects mounts as root (with allow_other, as root
// mounts do) and checks that objects another user creates through the
// union belong to that user in the rw branch, that a parent directory
// copied up for them keeps its owner and mode, and that a copy-up keeps
// the owner of the lower file.
func TestRootCallerOwnsNewObjects(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireFUSE(t)
	const uid, gid = 4242, 4343
	d := dirs(t, "up", "lo", "mnt")
	// t.TempDir makes 0700 directories: let the user through.
	for _, p := range []string{filepath.Dir(d[""]), d[""]} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	up, lo, mnt := d["up"], d["lo"], d["mnt"]
	testutil.Write(t, up, testutil.Tree{"pub/": ""})
	testutil.Write(t, lo, testutil.Tree{"lowpub/": "", "owned": "owned\n"})
	for _, p := range []string{filepath.Join(up, "pub"), filepath.Join(lo, "lowpub")} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(lo, "owned"), uid, gid); err != nil {
		t.Fatal(err)
	}
	mountUfs(t, mnt, "-o", "br="+up+"=rw:"+lo+"=ro")

	script := `cd "$1"
echo file >pub/file
mkdir pub/dir
ln -s target pub/link
mkfifo pub/fifo
echo file >lowpub/file
echo more >>owned`
	cmd := exec.Command("sh", "-ec", script, "sh", mnt)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as uid %d through the union: %v\n%s", uid, err, out)
	}
	for _, p := range []string{"pub/file", "pub/dir", "pub/link", "pub/fifo", "lowpub/file", "owned"} {
		if u, g := statIDs(t, filepath.Join(up, p)); u != uid || g != gid {
			t.Errorf("rw branch %s is owned by %d:%d, want the caller %d:%d", p, u, g, uid, gid)
		}
		if u, g := statIDs(t, filepath.Join(mnt, p)); u != uid || g != gid {
			t.Errorf("union %s shows as owned by %d:%d, want %d:%d", p, u, g, uid, gid)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(up, "lowpub"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 || st.Mode&0o7777 != 0o777 {
		t.Errorf("copied-up parent lowpub is %d:%d mode %o, want 0:0 mode 777 as in the lower branch", st.Uid, st.Gid, st.Mode&0o7777)
	}
	if b, err := os.ReadFile(filepath.Join(up, "owned")); err != nil || string(b) != "owned\nmore\n" {
		t.Errorf("copied-up owned: %q, %v", b, err)
	}
}

// TestRootlessUserNSWithoutMountNS: "unshare -Ur ufs mount" without a new
// mount namespace cannot mount; the error says what to add.
func TestRootlessUserNSWithoutMountNS(t *testing.T) {
	testutil.RequireRootless(t)
	testutil.RequireUserNS(t)
	d := dirs(t, "up", "lo", "mnt")
	cleanupMount(t, d["mnt"])
	out, err := exec.Command("unshare", "-Ur", testutil.UfsBin(t), "mount", "-o", "br="+d["up"]+"=rw:"+d["lo"]+"=ro", d["mnt"]).CombinedOutput()
	if err == nil {
		t.Fatalf("mount in a user namespace without a mount namespace succeeded: %s", out)
	}
	if !strings.Contains(string(out), "unshare -Urm") {
		t.Errorf("error does not name the fix (unshare -Urm): %s", out)
	}
}

// TestRootlessNoFUSEAccess: in a user namespace whose /dev/fuse cannot be
// opened (here: a root-only file bound over it, which the namespace's root
// may not open), the mount fails with an error that names /dev/fuse and
// the fix, and nothing is mounted.
func TestRootlessNoFUSEAccess(t *testing.T) {
	testutil.RequireRootless(t)
	testutil.RequireUserNS(t)
	if f, err := os.Open("/etc/shadow"); err == nil {
		f.Close()
		t.Skip("/etc/shadow is readable here: no root-only file to bind over /dev/fuse")
	}
	d := dirs(t, "up", "lo", "mnt")
	script := `mount --bind /etc/shadow /dev/fuse && exec "$0" mount -o "br=$1=rw:$2=ro" "$3"`
	out, err := exec.Command("unshare", "-Urm", "sh", "-c", script, testutil.UfsBin(t), d["up"], d["lo"], d["mnt"]).CombinedOutput()
	if err == nil {
		t.Fatalf("mount without access to /dev/fuse succeeded: %s", out)
	}
	for _, want := range []string{"/dev/fuse", "permission denied", "chmod 0666 /dev/fuse"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error %q does not say %q", out, want)
		}
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n > 0 {
		t.Errorf("error is %d lines, want one: %s", n+1, out)
	}
}

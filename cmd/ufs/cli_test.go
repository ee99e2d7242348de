package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// parseMount parses a ufs command line in-process, as main does, and
// returns the mount configuration it selects.
func parseMount(t *testing.T, args ...string) (fusefs.Config, fusefs.MountOptions, error) {
	t.Helper()
	var c cli
	k, err := kong.New(&c, kong.Name("ufs"), kong.Exit(func(code int) { t.Fatalf("kong exited with %d", code) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Parse(args); err != nil {
		return fusefs.Config{}, fusefs.MountOptions{}, err
	}
	return c.Mount.config()
}

// TestParseArgs checks, without mounting, how the two ways of naming
// branches (aufs's -o br= and --branch) and the other options end up in the
// configuration.
func TestParseArgs(t *testing.T) {
	rw := func(p string) fusefs.Branch { return fusefs.Branch{Path: p, Perm: fusefs.PermRW} }
	wh := func(p string) fusefs.Branch { return fusefs.Branch{Path: p, Perm: fusefs.PermROWH} }
	ro := func(p string) fusefs.Branch { return fusefs.Branch{Path: p, Perm: fusefs.PermRO} }
	three := []fusefs.Branch{rw("/up"), wh("/mid"), ro("/low")}
	tests := []struct {
		name    string
		args    []string
		want    []fusefs.Branch
		check   func(t *testing.T, cfg fusefs.Config, mo fusefs.MountOptions)
		wantErr string
	}{
		{name: "br", args: []string{"-o", "br=/up=rw:/mid=wh:/low=ro"}, want: three},
		{name: "branch flags", args: []string{"--branch", "/up=rw", "--branch", "/mid=wh", "--branch", "/low=ro"}, want: three},
		{name: "branch then br", args: []string{"--branch", "/up=rw", "-o", "br=/mid=wh:/low=ro"}, want: three},
		{name: "br in two -o", args: []string{"-o", "br=/up=rw:/mid=wh", "-o", "br=/low=ro"}, want: three},
		{name: "ro+wh and rr", args: []string{"-o", "br=/up=rw:/mid=ro+wh:/low=rr"}, want: three},
		{name: "br default perms", args: []string{"-o", "br=/up:/low"}, want: []fusefs.Branch{rw("/up"), ro("/low")}},
		{name: "branch default perms", args: []string{"--branch", "/up", "--branch", "/low"}, want: []fusefs.Branch{rw("/up"), ro("/low")}},
		{name: "br among other options", args: []string{"-o", "ro,br=/up=rw:/low=ro,udba=reval,timeout=2.5,fsync=0,passthrough=0,nosuid,debug,log=/tmp/x.log"},
			want: []fusefs.Branch{rw("/up"), ro("/low")},
			check: func(t *testing.T, cfg fusefs.Config, mo fusefs.MountOptions) {
				if !cfg.ReadOnly || !cfg.Reval || cfg.Timeout != 2500*time.Millisecond || !cfg.NoFsync || !cfg.NoPassthrough {
					t.Errorf("options not applied: %+v", cfg)
				}
				if !reflect.DeepEqual(cfg.Passed, []string{"nosuid"}) {
					t.Errorf("Passed = %q, want [nosuid]", cfg.Passed)
				}
				if !mo.Debug || mo.Log != "/tmp/x.log" {
					t.Errorf("mount options = %+v", mo)
				}
			}},
		{name: "timeout=0 means reval", args: []string{"-o", "br=/up", "-o", "timeout=0"}, want: []fusefs.Branch{rw("/up")},
			check: func(t *testing.T, cfg fusefs.Config, _ fusefs.MountOptions) {
				if !cfg.Reval {
					t.Error("timeout=0 does not turn on reval")
				}
			}},
		// A comma inside a branch directory: --branch takes kong's escape,
		// and -o the escape that the option splitter documents.
		{name: "branch with a comma", args: []string{"--branch", `/a,b=rw`}, want: []fusefs.Branch{rw("/a,b")}},
		{name: "br with escaped comma", args: []string{"-o", `br=/a\,b=rw:/low=ro`}, want: []fusefs.Branch{rw("/a,b"), ro("/low")}},

		{name: "unknown perm in branch", args: []string{"--branch", "/up=rx"}, wantErr: `unknown permission "rx": use rw, ro or wh`},
		{name: "unknown perm in br", args: []string{"-o", "br=/up=rw:/low=rx"}, wantErr: `unknown permission "rx": use rw, ro or wh`},
		{name: "unknown option", args: []string{"-o", "br=/up", "-o", "bogus"}, wantErr: `unknown option "bogus": see 'ufs mount --help'`},
		{name: "option value", args: []string{"-o", "br=/up,udba=sometimes"}, wantErr: "use udba=none or udba=reval"},
		{name: "flag with value", args: []string{"-o", "br=/up,nosuid=1"}, wantErr: "nosuid takes no value"},
		{name: "empty br", args: []string{"-o", "br="}, wantErr: "br needs a value"},
		{name: "branch without dir", args: []string{"--branch", "=rw"}, wantErr: "has no directory"},
		{name: "no branches", args: nil, wantErr: "no branches: give at least one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"mount"}, tc.args...), "/mnt")
			cfg, mo, err := parseMount(t, args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ufs %s: err = %v, want one with %q", strings.Join(args, " "), err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ufs %s: %v", strings.Join(args, " "), err)
			}
			if !reflect.DeepEqual(cfg.Branches, tc.want) {
				t.Errorf("ufs %s:\n branches %+v\n want     %+v", strings.Join(args, " "), cfg.Branches, tc.want)
			}
			if tc.check != nil {
				tc.check(t, cfg, mo)
			}
		})
	}
}

// badEnv is the directory layout of one bad-input case: up and lo exist,
// and so does mnt.
type badEnv struct {
	dir, up, lo, mnt string
}

// TestMountBadInput gives ufs mount bad input, in the background mode and
// with -f, and checks each time for a non-zero exit, a one-line error that
// names the problem and the fix, and nothing left mounted.
func TestMountBadInput(t *testing.T) {
	testutil.RequireFUSE(t)
	tests := []struct {
		name     string
		rootless bool // root passes every access check: run as a user only
		setup    func(t *testing.T, e *badEnv)
		args     func(e badEnv) []string // before the mountpoint
		want     []string                // in the error line
		mounted  int                     // mounts on e.mnt afterwards
	}{
		{
			name: "missing branch",
			args: func(e badEnv) []string { return []string{"-o", "br=" + e.dir + "/nope=rw:" + e.lo + "=ro"} },
			want: []string{"/nope", "does not exist", "create it or fix the path"},
		},
		{
			name:  "branch is a file",
			setup: func(t *testing.T, e *badEnv) { testutil.Write(t, e.dir, testutil.Tree{"file": "x"}) },
			args:  func(e badEnv) []string { return []string{"--branch", e.up + "=rw", "--branch", e.dir + "/file=ro"} },
			want:  []string{"/file", "is not a directory", "a branch must be a directory"},
		},
		{
			name:     "unreadable branch",
			rootless: true,
			setup: func(t *testing.T, e *badEnv) {
				if err := os.Chmod(e.lo, 0); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Chmod(e.lo, 0o755) })
			},
			args: func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw:" + e.lo + "=ro"} },
			want: []string{"/lo", "not accessible", "fix its permissions"},
		},
		{
			name:     "unwritable rw branch",
			rootless: true,
			setup: func(t *testing.T, e *badEnv) {
				if err := os.Chmod(e.up, 0o555); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Chmod(e.up, 0o755) })
			},
			args: func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw:" + e.lo + "=ro"} },
			want: []string{"/up", "not accessible", "write", "fix its permissions"},
		},
		{
			name:  "nested branches",
			setup: func(t *testing.T, e *badEnv) { testutil.Write(t, e.lo, testutil.Tree{"sub/": ""}) },
			args: func(e badEnv) []string {
				return []string{"-o", "br=" + e.up + "=rw:" + e.lo + "=ro:" + e.lo + "/sub=ro"}
			},
			want: []string{"/lo/sub", "inside branch", "must not nest"},
		},
		{
			name: "branch given twice",
			args: func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw:" + e.up + "=ro"} },
			want: []string{"/up", "twice", "give each directory once"},
		},
		{
			name:  "branch inside the mountpoint",
			setup: func(t *testing.T, e *badEnv) { testutil.Write(t, e.mnt, testutil.Tree{"in/": ""}) },
			args:  func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw:" + e.mnt + "/in=ro"} },
			want:  []string{"/mnt/in", "inside the mountpoint", "choose a mountpoint outside the branches"},
		},
		{
			name: "mountpoint inside a branch",
			setup: func(t *testing.T, e *badEnv) {
				e.mnt = filepath.Join(e.lo, "m")
				testutil.Write(t, e.lo, testutil.Tree{"m/": ""})
			},
			args: func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw:" + e.lo + "=ro"} },
			want: []string{"/lo/m", "inside branch", "choose a mountpoint outside the branches"},
		},
		{
			name:  "missing mountpoint",
			setup: func(t *testing.T, e *badEnv) { e.mnt = filepath.Join(e.dir, "nomnt") },
			args:  func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw:" + e.lo + "=ro"} },
			want:  []string{"/nomnt", "does not exist", "mkdir"},
		},
		{
			name: "mountpoint is a file",
			setup: func(t *testing.T, e *badEnv) {
				e.mnt = filepath.Join(e.dir, "mntfile")
				testutil.Write(t, e.dir, testutil.Tree{"mntfile": "x"})
			},
			args: func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw:" + e.lo + "=ro"} },
			want: []string{"/mntfile", "not a directory"},
		},
		{
			name: "mountpoint already mounted",
			setup: func(t *testing.T, e *badEnv) {
				other := filepath.Join(e.dir, "other")
				if err := os.Mkdir(other, 0o755); err != nil {
					t.Fatal(err)
				}
				mountUfs(t, e.mnt, "-o", "br="+other+"=rw")
			},
			args:    func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw:" + e.lo + "=ro"} },
			want:    []string{"/mnt", "already mounted", "ufs unmount"},
			mounted: 1,
		},
		{
			name: "unknown option",
			args: func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw", "-o", "nosuid,bogus"} },
			want: []string{`"bogus"`, "unknown option", "see 'ufs mount --help'"},
		},
		{
			name: "bad option value",
			args: func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw,timeout=soon"} },
			want: []string{`timeout="soon"`, "give seconds"},
		},
		{
			name: "unknown permission in branch",
			args: func(e badEnv) []string { return []string{"--branch", e.up + "=rx"} },
			want: []string{`"rx"`, "unknown permission", "use rw, ro or wh"},
		},
		{
			name: "unknown permission in br",
			args: func(e badEnv) []string { return []string{"-o", "br=" + e.up + "=rw:" + e.lo + "=rx"} },
			want: []string{`"rx"`, "unknown permission", "use rw, ro or wh"},
		},
		{
			name: "no branches",
			args: func(e badEnv) []string { return []string{"-o", "nosuid"} },
			want: []string{"no branches", "-o br=DIR=rw", "--branch"},
		},
	}
	for _, mode := range []string{"background", "foreground"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					if tc.rootless {
						testutil.RequireRootless(t)
					}
					d := dirs(t, "up", "lo", "mnt")
					e := badEnv{dir: d[""], up: d["up"], lo: d["lo"], mnt: d["mnt"]}
					if tc.setup != nil {
						tc.setup(t, &e)
					}
					cleanupMount(t, e.mnt)
					args := []string{"mount"}
					if mode == "foreground" {
						args = append(args, "-f")
					}
					args = append(append(args, tc.args(e)...), e.mnt)
					// With -f a mount that wrongly succeeds serves until
					// killed: do not wait for it long.
					r := runUfsTimeout(t, 20*time.Second, args...)
					checkOneLineError(t, r, tc.want...)
					if n := mountCount(t, e.mnt); n != tc.mounted {
						t.Errorf("%d mounts on %s afterwards, want %d", n, e.mnt, tc.mounted)
					}
					if pids := daemonPIDs(e.mnt); len(pids) != tc.mounted {
						t.Errorf("ufs processes left for %s: %v, want %d", e.mnt, pids, tc.mounted)
					}
				})
			}
		})
	}
}

// TestUnmountBadInput checks that ufs unmount of something that is not a
// mount fails with a one-line error that says so.
func TestUnmountBadInput(t *testing.T) {
	testutil.RequireFUSE(t)
	d := dirs(t, "plain")
	tests := []struct {
		name string
		path string
		want []string
	}{
		{name: "not mounted", path: d["plain"], want: []string{d["plain"], "nothing is mounted there"}},
		{name: "missing", path: filepath.Join(d[""], "nope"), want: []string{"/nope", "no such file or directory"}},
	}
	for _, tc := range tests {
		for _, lazy := range []bool{false, true} {
			name := tc.name
			args := []string{"unmount", tc.path}
			if lazy {
				name += " lazy"
				args = []string{"unmount", "-z", tc.path}
			}
			t.Run(name, func(t *testing.T) {
				checkOneLineError(t, runUfs(t, args...), tc.want...)
			})
		}
	}
}

// TestMountOptionsReachTheMount checks that the generic mount options given
// with -o end up on the mount (as /proc/self/mountinfo shows them) and that
// -o ro makes the union refuse changes.
func TestMountOptionsReachTheMount(t *testing.T) {
	testutil.RequireFUSE(t)
	has := func(list, opt string) bool { return strings.Contains(","+list+",", ","+opt+",") }
	tests := []struct {
		name     string
		root     bool // fusermount3 forces nosuid and nodev on users
		opts     string
		want     []string // in the per-mount or super options
		notWant  []string
		readOnly bool
	}{
		{name: "noexec", opts: "noexec", want: []string{"noexec"}},
		{name: "nosuid nodev", opts: "nosuid,nodev", want: []string{"nosuid", "nodev"}},
		{name: "suid dev", root: true, opts: "suid,dev", notWant: []string{"nosuid", "nodev"}},
		{name: "noatime", opts: "noatime", want: []string{"noatime"}},
		{name: "ro", opts: "ro", want: []string{"ro"}, readOnly: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.root {
				testutil.RequireRoot(t)
			}
			d := dirs(t, "up", "mnt")
			mountUfs(t, d["mnt"], "-o", "br="+d["up"]+"=rw", "-o", tc.opts)
			mntOpts, _, superOpts := mountEntryAll(t, d["mnt"])
			for _, w := range tc.want {
				if !has(mntOpts, w) && !has(superOpts, w) {
					t.Errorf("-o %s: %q not among the mount options %q / %q", tc.opts, w, mntOpts, superOpts)
				}
			}
			for _, w := range tc.notWant {
				if has(mntOpts, w) || has(superOpts, w) {
					t.Errorf("-o %s: %q among the mount options %q / %q", tc.opts, w, mntOpts, superOpts)
				}
			}
			err := os.WriteFile(filepath.Join(d["mnt"], "new"), nil, 0o644)
			if tc.readOnly && !errors.Is(err, unix.EROFS) {
				t.Errorf("-o %s: create = %v, want EROFS", tc.opts, err)
			}
			if !tc.readOnly && err != nil {
				t.Errorf("-o %s: create: %v", tc.opts, err)
			}
		})
	}
}

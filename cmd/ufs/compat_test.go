package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestCompatArgs(t *testing.T) {
	ov := "lowerdir=/l1:/l2,upperdir=/u,workdir=/w"
	tests := []struct {
		name  string
		argv0 string
		args  []string
		want  []string
	}{
		{"own mount", "ufs", []string{"mount", "-o", "br=/a=rw", "/m"}, []string{"mount", "-o", "br=/a=rw", "/m"}},
		{"own unmount", "ufs", []string{"unmount", "/m"}, []string{"unmount", "/m"}},
		{"help", "ufs", []string{"--help"}, []string{"--help"}},
		{"nothing", "ufs", nil, nil},
		{"fuse-overlayfs", "ufs", []string{"-o", ov, "/m"}, []string{"mount", "-o", ov, "/m"}},
		{"fuse-overlayfs joined -o", "ufs", []string{"-o" + ov, "/m"}, []string{"mount", "-o", ov, "/m"}},
		{"fuse-overlayfs repeated -o", "ufs", []string{"-o", "lowerdir=/l", "-o", "upperdir=/u,workdir=/w", "/m"},
			[]string{"mount", "-o", "lowerdir=/l", "-o", "upperdir=/u,workdir=/w", "/m"}},
		{"fuse-overlayfs foreground and debug", "ufs", []string{"-f", "-d", "-o", ov, "/m"},
			[]string{"mount", "-f", "-o", "debug", "-o", ov, "/m"}},
		{"mount helper", "ufs", []string{"overlay", "/m", "-o", ov}, []string{"mount", "-o", ov, "/m"}},
		{"mount.fuse.ufs", "/sbin/mount.fuse.ufs", []string{"ufs", "/m", "-o", ov, "-n"}, []string{"mount", "-o", ov, "/m"}},
		{"mount.fuse.ufs named mount", "/sbin/mount.fuse.ufs", []string{"mount", "/m", "-o", ov}, []string{"mount", "-o", ov, "/m"}},
		{"double dash", "ufs", []string{"-o", ov, "--", "-m"}, []string{"mount", "-o", ov, "-m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := compatArgs(tt.argv0, tt.args); !slices.Equal(got, tt.want) {
				t.Errorf("compatArgs(%q, %q) = %q, want %q", tt.argv0, tt.args, got, tt.want)
			}
		})
	}
}

// TestCompatCommandLines mounts through fuse-overlayfs's command line (as
// containers-storage's mount_program) and through mount(8) with
// -t fuse.ufs, which runs ufs as a mount helper.
func TestCompatCommandLines(t *testing.T) {
	testutil.RequireFUSE(t)
	bin := testutil.UfsBin(t)
	for _, form := range []string{"mount_program", "mount -t fuse.ufs", "mount.fuse.ufs"} {
		t.Run(form, func(t *testing.T) {
			d := dirs(t, "l1", "l2", "u", "w", "mnt")
			testutil.Write(t, d["l2"], testutil.Tree{"a": "a", "gone": "gone"})
			testutil.Write(t, d["l1"], testutil.Tree{"b": "b"})
			testutil.OverlayWhiteout(t, filepath.Join(d["l1"], "gone"))
			mnt := d["mnt"]
			cleanupMount(t, mnt)
			// Lower paths relative to the working directory, as
			// containers-storage passes them.
			opts := "lowerdir=l1:l2,upperdir=" + d["u"] + ",workdir=" + d["w"]
			var cmd *exec.Cmd
			switch form {
			case "mount_program":
				cmd = exec.Command(bin, "-o", opts, mnt)
			case "mount.fuse.ufs":
				// The helper make install links beside mount(8)'s.
				helper := filepath.Join(t.TempDir(), "mount.fuse.ufs")
				if err := os.Symlink(bin, helper); err != nil {
					t.Fatal(err)
				}
				cmd = exec.Command(helper, "ufs", mnt, "-o", opts)
			default:
				testutil.RequireRoot(t)
				link := filepath.Join(t.TempDir(), "ufs")
				if err := os.Symlink(bin, link); err != nil {
					t.Fatal(err)
				}
				cmd = exec.Command("mount", "-t", "fuse.ufs", "ufs", mnt, "-o", opts)
				cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(link)+":"+os.Getenv("PATH"))
			}
			cmd.Dir = d[""]
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, out)
			}
			for name, want := range map[string]string{"a": "a", "b": "b"} {
				if b, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || string(b) != want {
					t.Errorf("%s: %q, %v; want %q", name, b, err, want)
				}
			}
			if _, err := os.Lstat(filepath.Join(mnt, "gone")); !os.IsNotExist(err) {
				t.Errorf("whited-out name: %v, want ENOENT", err)
			}
			if err := os.Remove(filepath.Join(mnt, "a")); err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(d["u"], "a"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("upper whiteout for a: mode %o rdev %d, %v; want a 0/0 device", st.Mode, st.Rdev, err)
			}
			if r := runUfs(t, "unmount", mnt); r.code != 0 {
				t.Errorf("unmount: %v", r)
			}
		})
	}
}

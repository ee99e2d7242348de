package container

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRuntimeBeside: the runtime binary is used only when an executable
// file of that name lies beside urun.
func TestRuntimeBeside(t *testing.T) {
	tests := []struct {
		name  string
		setup func(dir string) error
		want  bool
	}{
		{"absent", func(string) error { return nil }, false},
		{"executable", func(d string) error { return os.WriteFile(filepath.Join(d, RuntimeName), nil, 0o755) }, true},
		{"not executable", func(d string) error { return os.WriteFile(filepath.Join(d, RuntimeName), nil, 0o644) }, false},
		{"directory", func(d string) error { return os.Mkdir(filepath.Join(d, RuntimeName), 0o755) }, false},
		{"symlink to an executable", func(d string) error {
			if err := os.WriteFile(filepath.Join(d, "real"), nil, 0o755); err != nil {
				return err
			}
			return os.Symlink("real", filepath.Join(d, RuntimeName))
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			got := RuntimeBeside(filepath.Join(dir, "urun"))
			want := ""
			if tt.want {
				want = filepath.Join(dir, RuntimeName)
			}
			if got != want {
				t.Errorf("RuntimeBeside = %q, want %q", got, want)
			}
		})
	}
}

// TestFUSEDescriptors: closeOnExecFUSE marks this process's /dev/fuse
// descriptors close-on-exec, dropFUSE closes them; other descriptors
// stay as they are.
func TestFUSEDescriptors(t *testing.T) {
	fuseFD := func() int {
		t.Helper()
		fd, err := unix.Open("/dev/fuse", unix.O_RDWR, 0) // as go-fuse: no O_CLOEXEC
		if err != nil {
			t.Skipf("/dev/fuse: %v (make test-rootless makes it 0666)", err)
		}
		return fd
	}
	other, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(other)
	a := fuseFD()
	if err := closeOnExecFUSE(); err != nil {
		t.Fatal(err)
	}
	if flags, err := unix.FcntlInt(uintptr(a), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("/dev/fuse after closeOnExecFUSE: flags %#x, %v; want FD_CLOEXEC", flags, err)
	}
	b := fuseFD()
	if err := dropFUSE(); err != nil {
		t.Fatal(err)
	}
	for _, fd := range []int{a, b} {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
			unix.Close(fd)
			t.Errorf("/dev/fuse descriptor %d after dropFUSE: %v, want EBADF", fd, err)
		}
	}
	if flags, err := unix.FcntlInt(uintptr(other), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC != 0 {
		t.Errorf("/dev/null: flags %#x, %v; want open, without FD_CLOEXEC", flags, err)
	}
}

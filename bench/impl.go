package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Impl is one implementation of a union (or the plain directory).
type Impl struct {
	Name     string `json:"name"`
	Label    string `json:"label"`
	Kind     string `json:"kind"` // plain, overlay, fuse-overlayfs, ufs
	Rootless bool   `json:"rootless"`
	// Opts are mount options added to the overlay ones ("" for none).
	Opts string `json:"opts,omitempty"`
	// Families limits the implementation to these workload families
	// (none: every workload).
	Families []string `json:"families,omitempty"`
}

// runs reports whether the implementation runs workload w.
func (i Impl) runs(w *Workload) bool {
	return len(i.Families) == 0 || slices.Contains(i.Families, w.Family)
}

// Implementation names.
const (
	ImplPlain           = "plain"
	ImplOverlay         = "overlayfs"
	ImplFuseOverlay     = "fuse-overlayfs"
	ImplUfs             = "ufs"
	ImplUfsRootless     = "ufs-rootless"
	ImplFuseRootless    = "fuse-overlayfs-rootless"
	ImplOverlayRootless = "overlayfs-rootless"
	// The copy-up workloads again with metacopy=on, which is opt-in in
	// both (see the README).
	ImplOverlayMetacopy = "overlayfs-metacopy"
	ImplUfsMetacopy     = "ufs-metacopy"
)

// FSImpls are the filesystem implementations, in the order of a round.
var FSImpls = []Impl{
	{Name: ImplPlain, Label: "plain dir", Kind: "plain"},
	{Name: ImplOverlay, Label: "overlayfs (root)", Kind: "overlay"},
	{Name: ImplFuseOverlay, Label: "fuse-overlayfs (root)", Kind: "fuse-overlayfs"},
	{Name: ImplUfs, Label: "ufs (root)", Kind: "ufs"},
	{Name: ImplOverlayRootless, Label: "overlayfs (rootless userns)", Kind: "overlay", Rootless: true},
	{Name: ImplFuseRootless, Label: "fuse-overlayfs (rootless userns)", Kind: "fuse-overlayfs", Rootless: true},
	{Name: ImplUfsRootless, Label: "ufs (rootless userns)", Kind: "ufs", Rootless: true},
	{Name: ImplOverlayMetacopy, Label: "overlayfs metacopy=on (root)", Kind: "overlay",
		Opts: "metacopy=on,redirect_dir=on", Families: []string{famCopy}},
	{Name: ImplUfsMetacopy, Label: "ufs metacopy=on (root)", Kind: "ufs",
		Opts: "metacopy=on", Families: []string{famCopy}},
}

// instance is one mount of an implementation over a stack, with an empty
// upper, or a plain directory with the stack's content.
type instance struct {
	root    string // where the workload runs
	upper   string // the upper layer ("" for plain)
	dir     string // scratch directory of the instance, removed at close
	mounted string // mount point to unmount ("" for plain)
	d       *daemon
}

// mountInstance makes an instance of impl kind over the stack. A plain
// instance is the fixture's merged copy itself, or a fresh copy of it for a
// workload that changes existing files.
func mountInstance(ctx context.Context, impl Impl, fx *Fixture, stack string, mutates bool, scratch, ufsBin string) (inst *instance, err error) {
	kind := impl.Kind
	st := fx.Stacks[stack]
	if st == nil {
		return nil, fmt.Errorf("no stack %q in the fixture", stack)
	}
	dir, err := os.MkdirTemp(scratch, kind+"-")
	if err != nil {
		return nil, err
	}
	inst = &instance{dir: dir}
	defer func() {
		if err != nil {
			_ = inst.close()
		}
	}()
	if kind == "plain" {
		inst.root = fx.Path(st.Merged)
		if mutates {
			inst.root = filepath.Join(dir, "root")
			if err := os.Mkdir(inst.root, 0o755); err != nil {
				return nil, err
			}
			if err := copyTree(ctx, fx.Path(st.Merged), inst.root); err != nil {
				return nil, err
			}
			// The copy's dirty pages would be written back during the
			// timed step otherwise.
			if err := syncFS(inst.root); err != nil {
				return nil, err
			}
		}
		return inst, nil
	}
	upper, work, mnt := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "mnt")
	for _, d := range []string{upper, work, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	inst.upper, inst.root = upper, mnt
	opts := "lowerdir=" + strings.Join(fx.LayerPaths(stack), ":") + ",upperdir=" + upper + ",workdir=" + work
	if impl.Opts != "" {
		opts += "," + impl.Opts
	}
	switch kind {
	case "overlay":
		if inUserNS() {
			opts += ",userxattr"
		}
		if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
			return nil, &os.PathError{Op: "mount overlay", Path: mnt, Err: err}
		}
		inst.mounted = mnt
		return inst, nil
	}
	// Set before the helper starts: whatever happens next, close
	// unmounts (an unmount of a path not mounted is no error).
	inst.mounted = mnt
	switch kind {
	case "fuse-overlayfs":
		inst.d, err = startDaemon(ctx, "fuse-overlayfs", "-f", "-o", opts, mnt)
	case "ufs":
		inst.d, err = startDaemon(ctx, ufsBin, "mount", "-f", "-o", opts, mnt)
	default:
		return nil, fmt.Errorf("unknown implementation kind %q", kind)
	}
	if err != nil {
		return nil, err
	}
	if err := waitMounted(ctx, mnt, inst.d); err != nil {
		return nil, err
	}
	return inst, nil
}

// close unmounts, waits for the helper and removes the scratch directory.
func (in *instance) close() error {
	var errs []error
	if in.mounted != "" {
		if err := unmount(in.mounted); err != nil {
			errs = append(errs, err)
		} else {
			in.mounted = ""
		}
	}
	if in.d != nil {
		if in.mounted != "" {
			_ = in.d.cmd.Process.Kill()
		}
		errs = append(errs, in.d.stop())
		in.d = nil
	}
	if in.mounted == "" && in.dir != "" {
		errs = append(errs, removeAll(in.dir))
		in.dir = ""
	}
	return errors.Join(errs...)
}

// unmount detaches mnt; a mount still busy a few moments after the
// workload ended (a helper's late close) is detached lazily.
func unmount(mnt string) error {
	for i := 0; ; i++ {
		err := unix.Unmount(mnt, 0)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && i < 20:
			time.Sleep(50 * time.Millisecond)
			continue
		case errors.Is(err, unix.EBUSY):
			if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
				return &os.PathError{Op: "umount2 (detach)", Path: mnt, Err: err}
			}
			return nil
		}
		return &os.PathError{Op: "umount2", Path: mnt, Err: err}
	}
}

// inUserNS reports whether this process runs in a user namespace other
// than the initial one.
func inUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	return !bytes.Equal(bytes.Join(bytes.Fields(b), []byte(" ")), []byte("0 0 4294967295"))
}

func syncFS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: path, Err: err}
	}
	return nil
}

package fusefs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/urun-dev/urun/internal/sys"
	"golang.org/x/sys/unix"
)

// Mount checks cfg and the mountpoint, mounts the union at mnt and starts
// serving it; it returns once the mount is ready. The returned server's
// Unmount ends it; Wait blocks until then.
// The caller should run with umask 0: the kernel has applied the callers'
// umask to the modes it passes, and the daemon's would apply again.
func Mount(mnt string, cfg Config, mo MountOptions) (*fuse.Server, *Union, error) {
	if err := checkMountpoint(mnt); err != nil {
		return nil, nil, err
	}
	if err := cfg.Validate(mnt); err != nil {
		return nil, nil, err
	}
	if err := checkFUSE(); err != nil {
		return nil, nil, err
	}
	u, err := New(cfg)
	if err != nil {
		return nil, nil, err
	}
	opts := u.Options()
	opts.Debug = mo.Debug
	for _, o := range cfg.Passed {
		if o == "allow_other" {
			opts.AllowOther = true
		}
	}
	if opts.AllowOther && !u.privileged && !userAllowOther() {
		u.log.Warn("allow_other needs user_allow_other in /etc/fuse.conf; mounting without it")
		opts.AllowOther = false
	}
	// Both go-fuse loggers (the node API's and the request debug log) go to
	// the union's logger.
	opts.Logger = log.New(logWriter{u}, "", 0)
	opts.MountOptions.Logger = opts.Logger
	srv, err := serve(mnt, u, opts)
	if err != nil {
		u.Close()
		if !inInitialUserNS() {
			return nil, nil, fmt.Errorf("mount %s: %w (in a user namespace, also unshare the mount namespace: unshare -Urm)", mnt, err)
		}
		return nil, nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	if (!u.privileged || !inInitialUserNS()) && !cfg.NoPassthrough {
		u.log.Info("FUSE passthrough needs CAP_SYS_ADMIN in the initial user namespace; reads and writes go through the daemon")
	}
	if u.privileged && inInitialUserNS() {
		if err := u.matchReadahead(mnt); err != nil {
			// Only slower cold reads: not worth failing the mount.
			u.log.Warn("cannot match the branches' readahead", "err", err)
		}
	}
	return srv, u, nil
}

// serve mounts the union at mnt and serves it in the background (fs.Mount,
// with the union's kill-privilege handling between the kernel and the node
// API, and, unless Reval is set, directories served without OPENDIR).
func serve(mnt string, u *Union, opts *fs.Options) (*fuse.Server, error) {
	var raw fuse.RawFileSystem = &killPriv{RawFileSystem: fs.NewNodeFS(u.Root(), opts)}
	if !u.cfg.Reval {
		// Directories without OPENDIR (see handlelessDirs).
		raw = newHandlelessDirs(raw)
	}
	srv, err := fuse.NewServer(raw, mnt, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		// As fs.Mount: the serve loop ends by itself when the mount
		// fails.
		return nil, err
	}
	return srv, nil
}

type logWriter struct{ u *Union }

func (w logWriter) Write(p []byte) (int, error) {
	w.u.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}

// checkMountpoint makes sure mnt is a directory on which nothing is mounted.
func checkMountpoint(mnt string) error {
	fi, err := os.Stat(mnt)
	if err != nil {
		if errors.Is(err, unix.ENOTCONN) {
			return fmt.Errorf("%w: %s is a dead FUSE mount: clear it with 'ufs unmount %s'", ErrMountpoint, mnt, mnt)
		}
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s does not exist: create it with mkdir", ErrMountpoint, mnt)
		}
		return fmt.Errorf("%w: %w", ErrMountpoint, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrMountpoint, mnt)
	}
	mounted, err := IsMountpoint(mnt)
	if err != nil {
		return err
	}
	if mounted {
		return fmt.Errorf("%w: something is already mounted on %s: unmount it first ('ufs unmount %s')", ErrMountpoint, mnt, mnt)
	}
	return nil
}

// IsMountpoint reports whether path is the mountpoint of a mount in this
// mount namespace, from /proc/self/mountinfo.
func IsMountpoint(path string) (bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	points, err := ParseMountpoints(f)
	if err != nil {
		return false, err
	}
	for _, p := range points {
		if p == abs {
			return true, nil
		}
	}
	return false, nil
}

// ParseMountpoints returns the mountpoints listed in a mountinfo file.
func ParseMountpoints(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out = append(out, unescapeMountinfo(fields[4]))
	}
	return out, sc.Err()
}

// unescapeMountinfo decodes the octal escapes (\040 for space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	isOct := func(c byte) bool { return c >= '0' && c <= '7' }
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOct(s[i+1]) && isOct(s[i+2]) && isOct(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkFUSE makes sure the FUSE device can be used, directly or through
// fusermount3.
func checkFUSE() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("%w: /dev/fuse: %w: load the module with 'modprobe fuse' (in a container, pass --device /dev/fuse)", ErrFUSE, err)
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err == nil {
		f.Close()
		return nil
	}
	if os.Geteuid() == 0 {
		return fmt.Errorf("%w: open /dev/fuse: %w: grant access to it (chmod 0666 /dev/fuse)", ErrFUSE, err)
	}
	if _, lerr := exec.LookPath("fusermount3"); lerr != nil {
		return fmt.Errorf("%w: open /dev/fuse: %w, and fusermount3 is not installed: install the fuse3 package or chmod 0666 /dev/fuse", ErrFUSE, err)
	}
	return nil
}

// userAllowOther reports whether /etc/fuse.conf lets users pass allow_other.
func userAllowOther() bool {
	b, err := os.ReadFile("/etc/fuse.conf")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "user_allow_other" {
			return true
		}
	}
	return false
}

// Unmount detaches the FUSE mount at mnt: with umount2 where the caller
// may, else through fusermount3. It also clears a mount whose daemon was
// killed.
func Unmount(ctx context.Context, mnt string, lazy bool) error {
	flags := 0
	if lazy {
		flags = unix.MNT_DETACH
	}
	err := sys.Unmount(mnt, flags)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
		if ok, _ := IsMountpoint(mnt); !ok {
			return fmt.Errorf("unmount %s: nothing is mounted there", mnt)
		}
	}
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w: close what uses it, or detach it now with 'ufs unmount -z %s'", err, mnt)
	}
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	cmd := exec.CommandContext(ctx, "fusermount3", append(args, "--", mnt)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, ferr := cmd.CombinedOutput()
	if ferr != nil && strings.Contains(string(out), "busy") {
		return fmt.Errorf("unmount %s: %s: close what uses it, or detach it now with 'ufs unmount -z %s'", mnt, strings.TrimSpace(string(out)), mnt)
	}
	if ferr != nil {
		return fmt.Errorf("unmount %s: %s: %w", mnt, strings.TrimSpace(string(out)), ferr)
	}
	return nil
}

// inInitialUserNS reports whether the process runs in the initial user
// namespace (true if that cannot be read).
func inInitialUserNS() bool {
	if _, err := os.Stat("/proc/self/uid_map"); err != nil {
		return true
	}
	return initialUserNS("/proc/self")
}

// initialUserNS reports whether the process of the /proc directory dir runs
// in the initial user namespace, whose uid_map maps the whole id range onto
// itself (false if that cannot be read).
func initialUserNS(dir string) bool {
	b, err := os.ReadFile(dir + "/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/internal/sys"
	"github.com/urun-dev/urun/userns"
	"golang.org/x/sys/unix"
)

// MaskedPaths are hidden from the container (OCI/podman defaults): files
// get /dev/null bound over them, directories an empty read-only tmpfs.
var MaskedPaths = []string{
	"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/proc/scsi", "/proc/interrupts",
	"/sys/firmware", "/sys/fs/selinux", "/sys/dev/block",
	"/sys/devices/virtual/powercap",
}

// ReadOnlyPaths are remounted read-only (OCI/podman defaults).
var ReadOnlyPaths = []string{
	"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
	"/proc/sys", "/proc/sysrq-trigger",
}

// initBinary is where --init finds urun inside the container.
const initBinary = "/dev/.urun-init"

// devices are bound from the host's /dev into the container's.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// rootfs builds the container's mounts below root (the union's
// mountpoint), resolving every target inside it.
type rootfs struct {
	root string
	fd   int
	cfg  *Config
}

// target opens path (absolute, inside the container) as O_PATH, creating
// it, and its missing parents, as a directory (dir) or an empty file.
func (r *rootfs) target(path string, dir bool) (int, error) {
	fd, err := r.openOrCreate(path, dir, 0)
	if err != nil {
		return -1, fmt.Errorf("mount point %s: %w", path, err)
	}
	return fd, nil
}

func (r *rootfs) openOrCreate(path string, dir bool, depth int) (int, error) {
	rel := strings.TrimPrefix(filepath.Clean(path), "/")
	if rel == "" {
		return unix.Dup(r.fd)
	}
	fd, err := sys.OpenInRoot(r.fd, rel, unix.O_PATH)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, err
	}
	pfd, err := r.openOrCreate(filepath.Dir("/"+rel), true, depth)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	// pfd is O_PATH; reopen it as a real directory to create in it.
	dfd, err := sys.OpenInRoot(pfd, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dfd)
	base := filepath.Base(rel)
	if dir {
		err = unix.Mkdirat(dfd, base, 0o755)
	} else {
		var f int
		f, err = unix.Openat(dfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(f)
		}
	}
	if errors.Is(err, unix.EEXIST) && depth < 8 {
		// A dangling symlink (/etc/resolv.conf -> ../run/...): create
		// what it points to, inside the root.
		if target, lerr := sys.Readlinkat(dfd, base); lerr == nil {
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir("/"+rel), target)
			}
			fd, err := r.openOrCreate(target, dir, depth+1)
			if err != nil {
				return -1, err
			}
			unix.Close(fd)
			return sys.OpenInRoot(r.fd, rel, unix.O_PATH)
		}
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		if errors.Is(err, unix.EROFS) {
			return -1, fmt.Errorf("create %s: the root filesystem is read-only (--read-only): %w", path, err)
		}
		return -1, fmt.Errorf("create %s: %w", path, err)
	}
	return sys.OpenInRoot(r.fd, rel, unix.O_PATH)
}

// mount mounts source at path inside the container.
func (r *rootfs) mount(source, path, fstype string, flags uintptr, data string, dir bool) error {
	fd, err := r.target(path, dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return sys.MountFD(source, fd, path, fstype, flags, data)
}

// bind bind-mounts host path source at path, read-only if ro, keeping the
// flags the kernel locks on the source mount (nosuid, nodev, ... of a
// mount inherited from a more privileged namespace).
func (r *rootfs) bind(source, path string, ro bool) error {
	st, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("bind mount source: %w", err)
	}
	fd, err := r.target(path, st.IsDir())
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := sys.MountFD(source, fd, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if !ro {
		return nil
	}
	// fd is the mountpoint below the new mount; open the mount's root.
	mfd, err := r.target(path, st.IsDir())
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	return remountRO(mfd, path)
}

// remountRO makes the bind mount whose root is open at mfd read-only.
func remountRO(mfd int, name string) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(mfd, &st); err != nil {
		return &os.PathError{Op: "statfs", Path: name, Err: err}
	}
	flags := uintptr(unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY) | lockedFlags(st.Flags)
	return sys.MountFD("", mfd, name, "", flags, "")
}

// lockedFlags turns statfs f_flags into the mount flags a remount must
// keep.
func lockedFlags(f int64) uintptr {
	var out uintptr
	for _, m := range []struct {
		st int64
		ms uintptr
	}{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if f&m.st != 0 {
			out |= m.ms
		}
	}
	return out
}

// setup mounts everything below the root, before pivot_root.
func (r *rootfs) setup() error {
	c := r.cfg
	if err := r.mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "", true); err != nil {
		return err
	}
	if err := r.mountSys(); err != nil {
		return err
	}
	if err := r.mountDev(); err != nil {
		return err
	}
	if c.ReadOnly {
		for _, p := range []string{"/tmp", "/var/tmp", "/run"} {
			mode := "1777"
			if p == "/run" {
				mode = "755"
			}
			if fd, err := sys.OpenInRoot(r.fd, p[1:], unix.O_PATH|unix.O_DIRECTORY); err != nil {
				continue // no mount point, and none can be made
			} else {
				unix.Close(fd)
			}
			if err := r.mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode="+mode, true); err != nil {
				return err
			}
		}
	}
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		src := filepath.Join(c.StateDir, f)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if err := r.bind(src, "/etc/"+f, false); err != nil {
			if c.ReadOnly && errors.Is(err, unix.EROFS) {
				continue
			}
			return err
		}
	}
	mounts := append([]Mount(nil), c.Mounts...)
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(mounts[i].Destination, "/") < strings.Count(mounts[j].Destination, "/")
	})
	for _, m := range mounts {
		var err error
		switch m.Type {
		case "bind":
			err = r.bind(m.Source, m.Destination, m.ReadOnly)
		case "tmpfs":
			err = r.tmpfs(m)
		default:
			err = fmt.Errorf("mount type %q", m.Type)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *rootfs) tmpfs(m Mount) error {
	var flags uintptr
	var data []string
	for _, o := range m.Options {
		switch o {
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		default:
			data = append(data, o)
		}
	}
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	return r.mount("tmpfs", m.Destination, "tmpfs", flags, strings.Join(data, ","), true)
}

func (r *rootfs) mountSys() error {
	flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if r.cfg.Privileged {
		flags &^= unix.MS_RDONLY
	}
	err := errors.New("host network")
	if r.cfg.Network != "host" {
		// sysfs may be mounted only by the owner of the network namespace.
		err = r.mount("sysfs", "/sys", "sysfs", flags, "", true)
	}
	if err != nil {
		if err := r.bind("/sys", "/sys", !r.cfg.Privileged); err != nil {
			return err
		}
		if r.cfg.Privileged {
			return nil
		}
		return remountSubmountsRO(filepath.Join(r.root, "sys"))
	}
	// A cgroup v2 view of the container's own cgroup namespace; where the
	// kernel refuses it (no unified hierarchy) /sys/fs/cgroup stays as
	// sysfs has it.
	cgFlags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME)
	if !r.cfg.Privileged {
		cgFlags |= unix.MS_RDONLY
	}
	if fd, err := sys.OpenInRoot(r.fd, "sys/fs/cgroup", unix.O_PATH|unix.O_DIRECTORY); err == nil {
		_ = sys.MountFD("cgroup2", fd, "/sys/fs/cgroup", "cgroup2", cgFlags, "")
		unix.Close(fd)
	}
	return nil
}

func (r *rootfs) mountDev() error {
	c := r.cfg
	if err := r.mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k", true); err != nil {
		return err
	}
	devs := devices
	if c.Privileged {
		devs = hostCharDevices()
	}
	for _, d := range devs {
		if _, err := os.Stat("/dev/" + d); err != nil {
			continue
		}
		if err := r.bind("/dev/"+d, "/dev/"+d, false); err != nil {
			return err
		}
	}
	ptsData := "newinstance,ptmxmode=0666,mode=0620"
	if _, ok := userns.ToHost(c.Maps.GID, 5); ok {
		ptsData += ",gid=5"
	}
	if err := r.mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, ptsData, true); err != nil {
		return err
	}
	if err := r.mount("shm", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k", true); err != nil {
		return err
	}
	if err := r.mount("mqueue", "/dev/mqueue", "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "", true); err != nil {
		return err
	}
	if c.Init {
		// The host's tree is gone after pivot_root, and the kernel will
		// not execute a file of a detached mount: bind urun itself in, as
		// podman binds catatonit.
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--init: find urun's binary: %w", err)
		}
		if err := r.bind(self, initBinary, true); err != nil {
			return err
		}
	}
	if c.TTY {
		fd, err := r.target("/dev/console", false)
		if err != nil {
			return err
		}
		unix.Close(fd)
	}
	dfd, err := sys.OpenInRoot(r.fd, "dev", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	for _, l := range [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"},
	} {
		if err := unix.Symlinkat(l[0], dfd, l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "symlink", Path: "/dev/" + l[1], Err: err}
		}
	}
	return nil
}

// hostCharDevices lists the character devices at the top of the host's
// /dev, for --privileged.
func hostCharDevices() []string {
	ents, err := os.ReadDir("/dev")
	if err != nil {
		return devices
	}
	var out []string
	for _, e := range ents {
		if e.Type()&os.ModeCharDevice != 0 && e.Type()&os.ModeDevice != 0 && e.Name() != "console" && e.Name() != "ptmx" {
			out = append(out, e.Name())
		}
	}
	return out
}

// pivot makes root the root directory and drops the old one.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return &os.PathError{Op: "chdir", Path: root, Err: err}
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return &os.PathError{Op: "pivot_root", Path: root, Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "umount old root", Path: root, Err: err}
	}
	return unix.Chdir("/")
}

// maskPaths hides and write-protects the default paths, after pivot_root.
func maskPaths() error {
	for _, p := range MaskedPaths {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		if st.IsDir() {
			err = sys.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
		} else {
			err = sys.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range ReadOnlyPaths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := sys.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: p, Err: err}
		}
		err = remountRO(fd, p)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// loopbackUp brings lo up in a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("SIOCGIFFLAGS lo", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("SIOCSIFFLAGS lo", err)
	}
	return nil
}

// remountSubmountsRO makes every mount below dir (a recursive bind of the
// host's) read-only too: a bind's read-only flag is its own, not its
// children's.
func remountSubmountsRO(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	all, err := fusefs.ParseMountpoints(f)
	f.Close()
	if err != nil {
		return err
	}
	for _, p := range all {
		if !strings.HasPrefix(p, dir+"/") {
			continue
		}
		fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue // hidden by a mount above it
		}
		err = remountRO(fd, strings.TrimPrefix(p, filepath.Dir(dir)))
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

package userns

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config says how to map the calling user.
type Config struct {
	Mode Mode
	// SubUIDFile and SubGIDFile default to /etc/subuid and /etc/subgid.
	SubUIDFile, SubGIDFile string
	// Logger receives the one-line warning of the single-id fallback.
	Logger *slog.Logger
}

// ErrNoUserNS says that the kernel refuses new user namespaces.
var ErrNoUserNS = errors.New("user namespaces are not available")

// Plan returns the maps for the calling user: its subordinate ranges, or
// the caller alone (with a warning) when it has none. Root gets the
// identity map of every id.
func Plan(cfg Config) (Maps, error) {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	if uid == 0 {
		all := []Mapping{{0, 0, 1<<32 - 1}}
		return Maps{UID: all, GID: all}, nil
	}
	if cfg.SubUIDFile == "" {
		cfg.SubUIDFile = "/etc/subuid"
	}
	if cfg.SubGIDFile == "" {
		cfg.SubGIDFile = "/etc/subgid"
	}
	name := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	subu, err := readSubIDs(cfg.SubUIDFile, name, uid)
	if err != nil {
		return Maps{}, err
	}
	subg, err := readSubIDs(cfg.SubGIDFile, name, uid)
	if err != nil {
		return Maps{}, err
	}
	if len(subu) == 0 || len(subg) == 0 {
		if cfg.Logger != nil {
			cfg.Logger.Warn(fmt.Sprintf("no subordinate ids for %s in %s/%s: running with a single id (container root only); add a range with: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s",
				name, cfg.SubUIDFile, cfg.SubGIDFile, name))
		}
		subu, subg = nil, nil
	}
	return Maps{UID: Build(cfg.Mode, uid, subu), GID: Build(cfg.Mode, gid, subg)}, nil
}

// Check reports why the kernel would refuse an unprivileged user
// namespace, naming the setting that does it; nil when nothing is known to
// stand in the way.
func Check() error {
	if os.Getuid() == 0 {
		return nil
	}
	return checkSysctls("/proc/sys")
}

// checkSysctls looks for the settings that disable user namespaces below
// procSys.
func checkSysctls(procSys string) error {
	for _, s := range []struct{ name, bad, good string }{
		{"kernel.unprivileged_userns_clone", "0", "1"},
		{"user.max_user_namespaces", "0", "15000"},
		{"kernel.apparmor_restrict_unprivileged_userns", "1", "0"},
	} {
		b, err := os.ReadFile(filepath.Join(procSys, strings.ReplaceAll(s.name, ".", "/")))
		if err == nil && strings.TrimSpace(string(b)) == s.bad {
			return fmt.Errorf("%w: sysctl %s is %s; enable them with: sudo sysctl -w %s=%s", ErrNoUserNS, s.name, s.bad, s.name, s.good)
		}
	}
	return nil
}

// syncEnv names the descriptor the child waits on until its maps are
// written.
const syncEnv = "_URUN_USERNS_SYNC"

// Start starts cmd in a new user namespace (adding CLONE_NEWUSER to the
// clone flags it already has) and writes the maps m before the child gets
// past WaitMapped. On error the child is killed and reaped.
func Start(cmd *exec.Cmd, m Maps) error {
	if err := Check(); err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	defer w.Close()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWUSER
	// The child's execve comes before its maps: as an unmapped uid it
	// would lose its capabilities in the namespace, unless they are
	// ambient (see WaitMapped).
	caps, err := allCaps()
	if err != nil {
		return fmt.Errorf("capabilities for the user namespace's child: %w", err)
	}
	cmd.SysProcAttr.AmbientCaps = caps
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", syncEnv, 2+len(cmd.ExtraFiles)))
	if err := cmd.Start(); err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("%w: clone(CLONE_NEWUSER): %w (check kernel.unprivileged_userns_clone, user.max_user_namespaces, and that this process is not in a chroot or seccomp jail)", ErrNoUserNS, err)
		}
		return err
	}
	r.Close()
	if err := WriteMaps(cmd.Process.Pid, m); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return err
	}
	if _, err := w.Write([]byte{1}); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("release child %d: %w", cmd.Process.Pid, err)
	}
	return nil
}

// WaitMapped blocks the child started by Start until its maps are
// written. The child keeps the capabilities it was created with in the
// new namespace: the kernel computed those of its execve before it had a
// uid inside, which would have left it none, so Start raised them all as
// ambient capabilities, which an execve keeps; WaitMapped then clears the
// ambient and inheritable sets again (the capabilities stay permitted
// and effective), so that they reach no further program. It returns nil
// in a process not started by Start, and an error if the parent gave up
// (the child should exit).
func WaitMapped() error {
	v := os.Getenv(syncEnv)
	if v == "" {
		return nil
	}
	os.Unsetenv(syncEnv)
	fd, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%s=%q: not a descriptor", syncEnv, v)
	}
	f := os.NewFile(uintptr(fd), "userns-sync")
	defer f.Close()
	var b [1]byte
	if n, _ := f.Read(b[:]); n != 1 {
		return errors.New("the parent did not finish the user namespace maps")
	}
	return dropInheritable()
}

// allCaps lists every capability the kernel knows, for AmbientCaps.
func allCaps() ([]uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return nil, err
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || last < 0 || last > 63 {
		return nil, fmt.Errorf("/proc/sys/kernel/cap_last_cap: %q: not a capability number", b)
	}
	caps := make([]uintptr, last+1)
	for i := range caps {
		caps[i] = uintptr(i)
	}
	return caps, nil
}

// capHeader and capData are dropInheritable's arguments of capset, in
// static memory: AllThreadsSyscall takes them as plain numbers, which the
// garbage collector would not keep (and a stack could move).
var (
	capHeader unix.CapUserHeader
	capData   [2]unix.CapUserData
)

// dropInheritable clears the ambient and inheritable capability sets of
// every thread of the process (capabilities are per thread, and a
// program may be started from any). Without AllThreadsSyscall (a binary
// built with cgo) it clears those of the calling thread only.
func dropInheritable() error {
	hdr, data := &capHeader, &capData
	*hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if err := unix.Capget(hdr, &data[0]); err != nil {
		return os.NewSyscallError("capget", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	calls := []struct {
		name string
		trap uintptr
		args [3]uintptr
	}{
		{"prctl(PR_CAP_AMBIENT_CLEAR_ALL)", unix.SYS_PRCTL, [3]uintptr{unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0}},
		{"capset", unix.SYS_CAPSET, [3]uintptr{uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0}},
	}
	for _, c := range calls {
		_, _, errno := syscall.AllThreadsSyscall(c.trap, c.args[0], c.args[1], c.args[2])
		if errno == unix.ENOTSUP {
			_, _, errno = unix.RawSyscall(c.trap, c.args[0], c.args[1], c.args[2])
		}
		if errno != 0 {
			return os.NewSyscallError(c.name, errno)
		}
	}
	return nil
}

// WriteMaps writes the uid and gid maps of process pid, which must be in a
// user namespace without maps yet. A map of the caller's own id alone is
// written directly (with setgroups denied, as the kernel requires of an
// unprivileged writer); any other map goes through newuidmap/newgidmap,
// unless the caller is root.
func WriteMaps(pid int, m Maps) error {
	self := len(m.UID) == 1 && m.UID[0].Size == 1 && m.UID[0].HostID == uint32(os.Getuid()) &&
		len(m.GID) == 1 && m.GID[0].Size == 1 && m.GID[0].HostID == uint32(os.Getgid())
	if os.Getuid() == 0 || self {
		if self && os.Getuid() != 0 {
			if err := writeProc(pid, "setgroups", "deny"); err != nil {
				return err
			}
		}
		if err := writeProc(pid, "uid_map", format(m.UID)); err != nil {
			return err
		}
		return writeProc(pid, "gid_map", format(m.GID))
	}
	// The two helpers write different files of pid and depend on nothing
	// of each other: run side by side, they cost one helper's start
	// (about 1.5 ms) less.
	gidErr := make(chan error, 1)
	go func() { gidErr <- newIDMap("newgidmap", pid, m.GID) }()
	return errors.Join(newIDMap("newuidmap", pid, m.UID), <-gidErr)
}

func format(m []Mapping) string {
	var b strings.Builder
	for _, e := range m {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func writeProc(pid int, file, content string) error {
	p := fmt.Sprintf("/proc/%d/%s", pid, file)
	if err := os.WriteFile(p, []byte(content), 0); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// newIDMap runs the setuid helper tool (newuidmap or newgidmap) for pid.
func newIDMap(tool string, pid int, m []Mapping) error {
	path, err := exec.LookPath(tool)
	if err != nil {
		for _, p := range []string{"/usr/bin/" + tool, "/bin/" + tool} {
			if _, serr := os.Stat(p); serr == nil {
				path, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%s not found: install it (Debian/Ubuntu: apt-get install uidmap; Fedora: dnf install shadow-utils): %w", tool, err)
	}
	args := []string{strconv.Itoa(pid)}
	for _, e := range m {
		args = append(args, strconv.FormatUint(uint64(e.ContainerID), 10),
			strconv.FormatUint(uint64(e.HostID), 10), strconv.FormatUint(uint64(e.Size), 10))
	}
	var out bytes.Buffer
	c := exec.Command(path, args...)
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		return fmt.Errorf("%s %s: %w: %s (is %s setuid root, and does /etc/sub%sid give you this range?)",
			tool, strings.Join(args, " "), err, msg, path, tool[3:4])
	}
	return nil
}

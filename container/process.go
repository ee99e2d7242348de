package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/urun-dev/urun/internal/trace"
	"golang.org/x/sys/unix"
)

// Exit codes, as podman uses them.
const (
	ExitSetup       = 125 // urun itself failed
	ExitCannotRun   = 126 // the command cannot be executed
	ExitNotFound    = 127 // the command was not found
	exitSignalShift = 128 // 128+N: killed by signal N
)

// ExitError carries the exit code urun must end with and the message that
// explains it.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// defaultPath is the PATH of a container whose environment sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultEnv is the environment every container starts from, before the
// image's and the user's.
func DefaultEnv(c *Config) []string {
	// podman sets TERM with or without a terminal.
	return []string{"PATH=" + defaultPath, "TERM=xterm", "container=urun"}
}

// openInContainer opens a file of the container's root (after pivot).
func openInContainer(name string) io.ReadCloser {
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	return f
}

// resolveIdentity resolves c.User against the container's own files.
func resolveIdentity(c *Config) (Identity, error) {
	pw := openInContainer("/etc/passwd")
	gr := openInContainer("/etc/group")
	var pr, gread io.Reader
	if pw != nil {
		defer pw.Close()
		pr = pw
	}
	if gr != nil {
		defer gr.Close()
		gread = gr
	}
	return ResolveUser(c.User, pr, gread)
}

// lookPath finds file in the colon-separated path, as execvp would: a name
// with a slash is taken as is. Not finding it is ExitNotFound, finding it
// unexecutable ExitCannotRun, both with podman's wording.
func lookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		if err := checkExecutable(file); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				return "", &ExitError{ExitNotFound, fmt.Errorf("executable file `%s` not found: No such file or directory: OCI runtime attempted to invoke a command that was not found", file)}
			}
			return "", &ExitError{ExitCannotRun, fmt.Errorf("open executable: %s: %w: OCI permission denied", file, err)}
		}
		return file, nil
	}
	// Files that are not executable do not count, as in podman.
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", &ExitError{ExitNotFound, fmt.Errorf("executable file `%s` not found in $PATH: No such file or directory: OCI runtime attempted to invoke a command that was not found", file)}
}

func checkExecutable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return unix.EACCES
	}
	return unix.Access(p, unix.X_OK)
}

// execProcess turns the calling process into the container's command:
// identity, terminal, working directory, security settings (with filter,
// c's seccomp program: see compileSeccomp), execve. It returns only on
// error.
func execProcess(c *Config, console *os.File, filter *seccompFilter) error {
	start := time.Now()
	id, err := resolveIdentity(c)
	if err != nil {
		return &ExitError{ExitCannotRun, err} // podman's code for an unknown user
	}
	env := MergeEnv(DefaultEnv(c), c.Env)
	if _, ok := LookupEnv(env, "HOME"); !ok {
		env = append(env, "HOME="+id.Home)
	}
	if _, ok := LookupEnv(env, "HOSTNAME"); !ok && c.Hostname != "" {
		env = append(env, "HOSTNAME="+c.Hostname)
	}
	workdir := c.Workdir
	if workdir == "" {
		workdir = "/"
	}
	if _, err := os.Stat(workdir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(workdir, 0o755); err != nil {
			return &ExitError{ExitSetup, fmt.Errorf("create working directory %s: %w", workdir, err)}
		}
		if err := os.Chown(workdir, int(id.UID), int(id.GID)); err != nil {
			return &ExitError{ExitSetup, fmt.Errorf("chown working directory %s: %w", workdir, err)}
		}
	}
	if c.TTY {
		if err := setupTTY(console, id); err != nil {
			return &ExitError{ExitSetup, err}
		}
	}
	path, _ := LookupEnv(env, "PATH")
	exe, err := lookPath(c.Args[0], path)
	if err != nil {
		return err
	}
	// Only stdin, stdout and stderr reach the command: not urun's own
	// descriptors, nor any its caller left open.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return &ExitError{ExitSetup, os.NewSyscallError("close_range", err)}
	}

	// Credentials, capabilities and the seccomp filter are per thread in
	// parts; the execve must come from the thread that set them.
	runtime.LockOSThread()
	if err := prepareSecurity(); err != nil {
		return &ExitError{ExitSetup, err}
	}
	if err := setIdentity(id); err != nil {
		return &ExitError{ExitSetup, err}
	}
	if err := applySecurity(c, id, filter); err != nil {
		return &ExitError{ExitSetup, err}
	}
	// As the container user, with its capabilities: permissions apply.
	if err := os.Chdir(workdir); err != nil {
		return &ExitError{ExitCannotRun, fmt.Errorf("chdir to working directory %s: %w", workdir, err)}
	}
	trace.Phase("exec-setup", start)
	err = unix.Exec(exe, c.Args, env)
	if errors.Is(err, unix.ENOENT) {
		return &ExitError{ExitNotFound, fmt.Errorf("executable file `%s`: %w: OCI runtime attempted to invoke a command that was not found", exe, err)}
	}
	return &ExitError{ExitCannotRun, fmt.Errorf("exec %s: %w: OCI permission denied", exe, err)}
}

// setIdentity switches to the container user's ids and groups. It keeps
// the parent-death signal, which the kernel clears on a credential change.
func setIdentity(id Identity) error {
	groups := []int{int(id.GID)}
	for _, g := range id.Groups {
		groups = append(groups, int(g))
	}
	if b, err := os.ReadFile("/proc/self/setgroups"); err != nil || strings.TrimSpace(string(b)) != "deny" {
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("setgroups %v: %w (is the group mapped in the user namespace? see /etc/subgid)", groups, err)
		}
	}
	if err := syscall.Setresgid(int(id.GID), int(id.GID), int(id.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w (is gid %d mapped? see /etc/subgid)", id.GID, err, id.GID)
	}
	if err := syscall.Setresuid(int(id.UID), int(id.UID), int(id.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w (is uid %d mapped? see /etc/subuid)", id.UID, err, id.UID)
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_PDEATHSIG)", err)
	}
	return nil
}

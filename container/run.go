package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urun-dev/urun/internal/reexec"
	"github.com/urun-dev/urun/internal/trace"
	"github.com/urun-dev/urun/userns"
	"golang.org/x/sys/unix"
)

// RunOptions are the CLI side's settings of Run.
type RunOptions struct {
	// Root is urun's data directory (DefaultRoot when empty).
	Root string
	// Mode maps the caller to root (default) or to its own id (keep-id).
	Mode userns.Mode
	// Stdin, Stdout and Stderr default to the process's own.
	Stdin, Stdout, Stderr *os.File
	Logger                *slog.Logger
}

// Handle is a container whose state exists (its directory, its name, its
// lock, held until Run ends or Abort) but which has not run yet.
type Handle struct {
	c    *Config
	o    RunOptions
	maps userns.Maps // of the monitor's user namespace
	lock *os.File
}

// Run runs the container c to its end and returns the exit code urun
// should end with: the command's own, 126/127 when it cannot be run, 125
// with an error when urun failed, 128+N when signal N killed it. A
// container from an image (c.Image) gets its layers and command in the
// monitor, from the binary's Images (see Register), unless the caller
// filled them in and set c.Lease.
func Run(ctx context.Context, c *Config, o RunOptions) (int, error) {
	if !c.storeStep() {
		if err := c.Validate(); err != nil {
			return ExitSetup, err
		}
	}
	h, err := Create(c, o)
	if err != nil {
		return ExitSetup, err
	}
	defer h.Close()
	return h.Run(ctx)
}

// Create makes the state of container c: its id (unless set), its
// directory below o.Root, its name, the user namespace's maps; the
// returned Handle holds the state's lock. The caller may still change c
// before Run.
func Create(c *Config, o RunOptions) (*Handle, error) {
	if err := c.validateSettings(); err != nil {
		return nil, err
	}
	if err := checkFUSE("/dev/fuse"); err != nil {
		return nil, err
	}
	if err := userns.Check(); err != nil {
		return nil, err
	}
	if o.Root == "" {
		root, err := DefaultRoot()
		if err != nil {
			return nil, err
		}
		o.Root = root
	}
	if o.Stdin == nil {
		o.Stdin = os.Stdin
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	maps, err := userns.Plan(userns.Config{Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	c.Maps = maps
	if o.Mode == userns.ModeKeepID {
		uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
		c.KeepID = &KeepID{UID: uid, GID: gid}
		c.Maps = userns.Maps{UID: userns.NestedKeepID(uid, userns.Size(maps.UID)), GID: userns.NestedKeepID(gid, userns.Size(maps.GID))}
		if c.Maps.UID == nil || c.Maps.GID == nil {
			return nil, fmt.Errorf("--userns=keep-id needs subordinate ids for a container root: add a range to /etc/subuid and /etc/subgid (sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER)")
		}
	}
	if c.ID == "" {
		c.ID = NewID()
	}
	lock, err := create(o.Root, c)
	if err != nil {
		return nil, err
	}
	return &Handle{c: c, o: o, maps: maps, lock: lock}, nil
}

// Abort removes the state of a container that never ran (the caller
// still closes h).
func (h *Handle) Abort() error {
	return removeState(h.o.Root, h.c)
}

// Close lets go of the container's lock: from then on it is not running.
func (h *Handle) Close() error { return h.lock.Close() }

// Run runs the container to its end (see the package function Run); the
// caller then removes (an image-backed --rm container) and closes h.
func (h *Handle) Run(ctx context.Context) (int, error) {
	c, o, lock := h.c, h.o, h.lock
	if !c.storeStep() {
		// Otherwise the image's layers and command come in the monitor.
		if err := c.Validate(); err != nil {
			h.Abort()
			return ExitSetup, err
		}
		for _, l := range c.Layers {
			st, err := os.Stat(l)
			if err == nil && !st.IsDir() {
				err = fmt.Errorf("rootfs %s: not a directory", l)
			}
			if err != nil {
				h.Abort()
				return ExitSetup, fmt.Errorf("rootfs: %w", err)
			}
		}
		c.fillDefaults()
	}
	if err := writeConfig(c); err != nil {
		h.Abort()
		return ExitSetup, err
	}

	trace.Step("cli")
	cmd := reexec.Command(entryMonitor, "urun-monitor")
	if !c.storeStep() && c.Runtime != "" {
		cmd.Path = c.Runtime // the store step needs this binary
	}
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	if c.Interactive && !c.TTY {
		cmd.Stdin = o.Stdin
	} else {
		devnull, err := os.Open(os.DevNull)
		if err != nil {
			return ExitSetup, err
		}
		defer devnull.Close()
		cmd.Stdin = devnull
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Pdeathsig: unix.SIGKILL}
	write, err := sendConfig(cmd, c)
	if err != nil {
		return ExitSetup, err
	}
	passFile(cmd, envLockFD, lock)
	var console *consoleSocket
	if c.TTY {
		if console, err = newConsoleSocket(); err != nil {
			return ExitSetup, err
		}
		defer console.local.Close()
		passFile(cmd, envConsoleFD, console.remote)
	}
	sigs := make(chan os.Signal, 8)
	notified := forwarded
	if c.TTY {
		notified = forwarded[:len(forwarded)-1] // SIGWINCH resizes the terminal instead
	}
	signal.Notify(sigs, notified...)
	defer signal.Stop(sigs)
	if err := userns.Start(cmd, h.maps); err != nil {
		h.Abort()
		return ExitSetup, err
	}
	if console != nil {
		console.remote.Close()
	}
	if err := write(); err != nil {
		cmd.Process.Kill()
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	var relay *ttyRelay
	relayed := make(chan struct{})
	if console != nil {
		go func() {
			defer close(relayed)
			master, err := console.receive()
			if err != nil || master == nil {
				return
			}
			relay = startRelay(master, o.Stdin, o.Stdout, c.Interactive)
		}()
	} else {
		close(relayed)
	}
	go func() {
		<-ctx.Done()
		cmd.Process.Kill()
	}()
	err = cmd.Wait()
	trace.Mark()
	if console != nil {
		console.local.Close()
		<-relayed
		if relay != nil {
			relay.stop()
		}
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ExitSetup, err
	}
	return exitCode(cmd.ProcessState.Sys().(syscall.WaitStatus)), nil
}

// checkFUSE says how to get access to /dev/fuse when it is missing.
func checkFUSE(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: load the fuse module (sudo modprobe fuse)", err)
		}
		return fmt.Errorf("%w: the rootfs is served by FUSE from a user namespace, which needs /dev/fuse readable and writable by you (sudo chmod 0666 /dev/fuse)", err)
	}
	f.Close()
	return nil
}

// RuntimeName is the file name of the runtime binary (Config.Runtime):
// cmd/urun-runtime, installed beside urun.
const RuntimeName = "urun-runtime"

// RuntimeBeside returns the runtime binary beside exe (the running urun),
// or "" when there is none: urun then runs itself. The two must come from
// the same build (make build and go install ./cmd/... make both).
func RuntimeBeside(exe string) string {
	p := filepath.Join(filepath.Dir(exe), RuntimeName)
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return ""
	}
	return p
}

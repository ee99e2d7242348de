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
	"strconv"
	"syscall"
	"time"

	"github.com/urun-dev/urun/fusefs"
	"github.com/urun-dev/urun/image/lease"
	"github.com/urun-dev/urun/internal/reexec"
	"github.com/urun-dev/urun/internal/trace"
	"github.com/urun-dev/urun/userns"
	"golang.org/x/sys/unix"
)

// forwarded are the signals urun passes on to the container's main
// process.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH}

// monitorMain runs as root of the new user namespace, in a new mount
// namespace: it serves the rootfs union, starts the container's init in
// the remaining namespaces, forwards signals to it and exits with its
// status.
func monitorMain() {
	if err := userns.WaitMapped(); err != nil {
		fail(err)
	}
	start := trace.Started("userns")
	c, err := receiveConfig()
	if err != nil {
		fail(err)
	}
	lock := inheritedFile(envLockFD)
	console := inheritedFile(envConsoleFD)
	var exited time.Time
	code, err := monitor(c, console, start, &exited)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
	}
	if lock != nil {
		lock.Close()
	}
	if !exited.IsZero() {
		trace.Phase("monitor-exit", exited)
	}
	os.Exit(code)
}

// monitor runs the container c; the trace's phase "mount" runs from
// start, and the time the container's init ended goes to *exited.
func monitor(c *Config, console *os.File, start time.Time, exited *time.Time) (code int, err error) {
	root := filepath.Dir(filepath.Dir(c.StateDir))
	// Until the container's command runs, a failure removes what this
	// start made (the state, an image's store record), as --rm does
	// after it ran.
	running := false
	var images Images
	var held *lease.Lease // the image of c.Lease, without a store step
	defer func() {
		if held != nil {
			defer held.Release()
		}
		if images != nil {
			defer images.Close()
		}
		if running && !c.Remove {
			return
		}
		if images != nil {
			// The state goes only with the record: ReapStale of a later
			// start retries both.
			if rerr := images.Release(c); rerr != nil {
				if err == nil {
					err = fmt.Errorf("remove container %s: %w", c.ID, rerr)
				}
				return
			}
		}
		if rerr := removeState(root, c); rerr != nil && err == nil {
			err = fmt.Errorf("remove container %s: %w", c.ID, rerr)
		}
	}()
	// Host mount events still reach us; ours never reach the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return ExitSetup, os.NewSyscallError("make / a slave mount", err)
	}
	// The container's init starts at once, and runs Go's start-up while
	// we prepare the image and mount its root filesystem: it waits for
	// its config, which we send once the mount is there. Its mount
	// namespace is a copy of ours taken now, so the mount reaches it by
	// propagation: the state directory is a shared mount (a bind of
	// itself) before the copy.
	merged := filepath.Join(c.StateDir, "merged")
	if err := unix.Mount(c.StateDir, c.StateDir, "", unix.MS_BIND, ""); err != nil {
		return ExitSetup, &os.PathError{Op: "bind mount", Path: c.StateDir, Err: err}
	}
	// Lazy unmounts (the rootfs, then the bind): the kernel drops the
	// mounts once the container's mount namespace is gone too; removing
	// the state dir then cannot reach through them.
	defer unmountAll(c.StateDir)
	defer unmountAll(merged)
	if err := unix.Mount("", c.StateDir, "", unix.MS_SHARED, ""); err != nil {
		return ExitSetup, &os.PathError{Op: "make shared", Path: c.StateDir, Err: err}
	}

	cmd := reexec.Command(entryInit, "urun-init")
	if c.Runtime != "" {
		cmd.Path = c.Runtime
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWCGROUP)
	if c.Network != "host" {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: unix.SIGKILL}
	if c.KeepID != nil {
		// A nested user namespace, mapped by us (root here may write any
		// map within our own) before the child executes, and entered as
		// its root so that the execve keeps the capabilities.
		cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = sysIDMap(c.Maps.UID)
		cmd.SysProcAttr.GidMappings = sysIDMap(c.Maps.GID)
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	write, err := sendConfig(cmd, c)
	if err != nil {
		return ExitSetup, err
	}
	passFile(cmd, envConsoleFD, console)
	// SIGINT, SIGTERM and SIGHUP (passed on by the CLI) end a pull
	// cleanly: an interrupted pull stores nothing. Set up before the
	// init's start: signal.Notify made during a fork waits for its end
	// (about a millisecond).
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer stop()
	// Start returns once the child has executed: the clone of the
	// namespaces and the execve run beside the store step and the FUSE
	// mount. The child may inherit go-fuse's descriptor of /dev/fuse
	// (opened without O_CLOEXEC) if the mount's open comes before the
	// clone: the init closes it first thing (see dropFUSE).
	started := make(chan error, 1)
	go func() { started <- cmd.Start() }()
	var perr error
	switch {
	case c.storeStep():
		images, perr = prepareImage(ctx, c, root)
		trace.Phase("store", start)
		start = time.Now()
	case c.Lease != nil:
		// The CLI found the image: its layers and process are in c.
		ReapStale(root, nil)
		held, perr = lease.Take(*c.Lease)
		trace.Phase("lease", start)
		start = time.Now()
	default:
		ReapStale(root, nil)
	}
	if perr == nil {
		perr = mountRootfs(c, merged)
	}
	err = <-started
	if console != nil {
		console.Close()
	}
	if err != nil {
		return ExitSetup, fmt.Errorf("start the container's init: %w", err)
	}
	if err := perr; err != nil {
		// init has its config pipe's read end only: killed, it ends.
		cmd.Process.Kill()
		cmd.Wait()
		return ExitSetup, err
	}
	trace.Phase("mount", start)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	sent := time.Now()
	if err := write(); err != nil {
		cmd.Process.Kill()
	}
	running = true
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	*exited = time.Now()
	trace.Span("container", sent, *exited)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ExitSetup, err
	}
	return exitCode(cmd.ProcessState.Sys().(syscall.WaitStatus)), nil
}

// prepareImage opens the image store (the binary's Images, see
// Register), removes what killed containers from images left there,
// makes c's store record and fills in c from the image. The caller
// releases the record (on error too) and closes the Images returned,
// which is not nil once the store is open.
func prepareImage(ctx context.Context, c *Config, root string) (Images, error) {
	if openImages == nil {
		return nil, errors.New("this urun binary cannot run containers from images")
	}
	images, err := openImages(ctx, c)
	if err != nil {
		return nil, err
	}
	ReapStale(root, images.Release)
	if err := images.Prepare(ctx, c); err != nil {
		return images, err
	}
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		return images, err
	}
	if err := writeConfig(c); err != nil {
		return images, err
	}
	return images, nil
}

// mountRootfs serves the union of c's layers (and its upper) at merged,
// from this process: the FUSE server lives exactly as long as the monitor.
func mountRootfs(c *Config, merged string) error {
	cfg := fusefs.Config{Whiteouts: fusefs.FormatOverlay, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if !c.ReadOnly {
		upper, work := c.Upper, c.Work
		if upper == "" {
			upper, work = filepath.Join(c.StateDir, "upper"), filepath.Join(c.StateDir, "work")
		}
		cfg.Branches = append(cfg.Branches, fusefs.Branch{Path: upper, Perm: fusefs.PermRW})
		cfg.WorkDir = work
	} else {
		cfg.ReadOnly = true
	}
	for _, l := range c.Layers {
		cfg.Branches = append(cfg.Branches, fusefs.Branch{Path: l, Perm: fusefs.PermROWH})
	}
	// The kernel has applied the container processes' umask already.
	old := unix.Umask(0)
	defer unix.Umask(old)
	if _, _, err := fusefs.Mount(merged, cfg, fusefs.MountOptions{}); err != nil {
		return fmt.Errorf("mount the root filesystem: %w", err)
	}
	return closeOnExecFUSE()
}

// closeOnExecFUSE marks this process's /dev/fuse descriptors close-on-exec
// (go-fuse opens its own without the flag). A container process that
// inherited one would keep the FUSE connection alive after the monitor's
// death, and a request it made in that moment would wait forever for an
// answer that no one is left to give.
func closeOnExecFUSE() error {
	fds, err := fuseFDs()
	for _, fd := range fds {
		unix.CloseOnExec(fd)
	}
	return err
}

// dropFUSE closes the descriptors of /dev/fuse a container's init
// inherited: the monitor mounts the rootfs while it starts the init, and
// a clone between go-fuse's open of /dev/fuse and closeOnExecFUSE hands
// the init a copy. Until dropFUSE the init makes no request of that
// mount, and it dies with the monitor (its parent-death signal), so the
// copy can keep no connection alive for long.
func dropFUSE() error {
	fds, err := fuseFDs()
	for _, fd := range fds {
		unix.Close(fd)
	}
	return err
}

// fuseFDs lists this process's descriptors of /dev/fuse.
func fuseFDs() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || (target != "/dev/fuse" && target != "/fuse") {
			continue
		}
		if fd, err := strconv.Atoi(e.Name()); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

// unmountAll lazily unmounts every mount stacked at dir.
func unmountAll(dir string) {
	for unix.Unmount(dir, unix.MNT_DETACH) == nil {
	}
}

func sysIDMap(m []userns.Mapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, e := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(e.ContainerID), HostID: int(e.HostID), Size: int(e.Size)}
	}
	return out
}

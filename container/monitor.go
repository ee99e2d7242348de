package container

import (
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
	ReapStale(root, nil)
	defer func() {
		// An image's container goes with its store record, which the
		// CLI removes from the store's side.
		if c.Remove && c.Image == "" {
			if rerr := removeState(root, c); rerr != nil && err == nil {
				err = fmt.Errorf("remove container %s: %w", c.ID, rerr)
			}
		}
	}()
	// Host mount events still reach us; ours never reach the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return ExitSetup, os.NewSyscallError("make / a slave mount", err)
	}
	merged := filepath.Join(c.StateDir, "merged")
	if err := mountRootfs(c, merged); err != nil {
		return ExitSetup, err
	}
	// A lazy unmount: the kernel drops the mount once the container's
	// mount namespace is gone too; removing the state dir then cannot
	// reach through it.
	defer unix.Unmount(merged, unix.MNT_DETACH)
	trace.Phase("mount", start)

	started := time.Now() // the spawn time reexec passes on for init-start
	cmd := reexec.Command(entryInit, "urun-init")
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
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return ExitSetup, fmt.Errorf("start the container's init: %w", err)
	}
	if console != nil {
		console.Close()
	}
	if err := write(); err != nil {
		cmd.Process.Kill()
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	*exited = time.Now()
	trace.Span("container", started, *exited)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return ExitSetup, err
	}
	return exitCode(cmd.ProcessState.Sys().(syscall.WaitStatus)), nil
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
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || (target != "/dev/fuse" && target != "/fuse") {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}

func sysIDMap(m []userns.Mapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, e := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(e.ContainerID), HostID: int(e.HostID), Size: int(e.Size)}
	}
	return out
}

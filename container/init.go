package container

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urun-dev/urun/internal/reexec"
	"github.com/urun-dev/urun/internal/trace"
	"golang.org/x/sys/unix"
)

// initMain is the container's first process: pid 1 of the new pid
// namespace, root of the user namespace. It builds the root filesystem,
// then becomes the command (or, with --init, starts it and reaps).
func initMain() {
	start := trace.Started("init-start")
	if err := dropFUSE(); err != nil {
		fail(fmt.Errorf("close inherited /dev/fuse descriptors: %w", err))
	}
	c, err := receiveConfig()
	if err != nil {
		fail(err)
	}
	// Waiting for the monitor's mount, which it makes meanwhile.
	trace.Phase("init-wait", start)
	start = time.Now()
	console := inheritedFile(envConsoleFD)
	var filter *seccompFilter
	if !c.Init {
		filter = compileSeccomp(c) // beside the set-up
	}
	unix.Umask(0o022)
	if err := setupContainer(c); err != nil {
		fail(err)
	}
	trace.Phase("init-setup", start)
	if c.Init {
		os.Exit(runInit(c, console))
	}
	fail(execProcess(c, console, filter))
}

// execMain is the command's process under --init.
func execMain() {
	trace.Started("exec-start")
	c, err := receiveConfig()
	if err != nil {
		fail(err)
	}
	fail(execProcess(c, inheritedFile(envConsoleFD), compileSeccomp(c)))
}

// setupContainer builds the container's mounts, enters its root and sets
// its hostname and loopback.
func setupContainer(c *Config) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return os.NewSyscallError("make / private", err)
	}
	merged := filepath.Join(c.StateDir, "merged")
	// A mount of our own over the monitor's: a mount inherited from a
	// more privileged user namespace is locked and cannot be pivoted to.
	if err := unix.Mount(merged, merged, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return &os.PathError{Op: "bind mount rootfs", Path: merged, Err: err}
	}
	fd, err := unix.Open(merged, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open rootfs", Path: merged, Err: err}
	}
	r := rootfs{root: merged, fd: fd, cfg: c}
	err = r.setup()
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := pivot(merged); err != nil {
		return err
	}
	if !c.Privileged {
		if err := maskPaths(); err != nil {
			return err
		}
	}
	if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
		return os.NewSyscallError("sethostname", err)
	}
	if c.Network != "host" {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	return nil
}

// runInit is urun's minimal init (--init): it starts the command, passes
// it the forwarded signals, reaps every orphan and exits with the
// command's status.
func runInit(c *Config, console *os.File) int {
	cmd := reexec.Command(entryExec, c.Args[0])
	cmd.Path = initBinary
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL}
	write, err := sendConfig(cmd, c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return ExitSetup
	}
	passFile(cmd, envConsoleFD, console)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "Error: start %s: %v\n", c.Args[0], err)
		return ExitSetup
	}
	if console != nil {
		console.Close()
	}
	if err := write(); err != nil {
		cmd.Process.Kill()
	}
	pid := cmd.Process.Pid
	go func() {
		for s := range sigs {
			unix.Kill(pid, s.(syscall.Signal))
		}
	}()
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "Error: wait: %v\n", err)
			return ExitSetup
		}
		if wpid == pid {
			return exitCode(syscall.WaitStatus(ws))
		}
	}
}

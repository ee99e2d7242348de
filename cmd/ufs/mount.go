package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urun-dev/urun/fusefs"
	"golang.org/x/sys/unix"
)

// readyEnv names the descriptor on which a background daemon reports that
// its mount is ready ("ok") or why it failed.
const readyEnv = "UFS_READY_FD"

type mountCmd struct {
	Options    []string `short:"o" sep:"none" help:"Mount options, comma-separated: br=DIR=PERM:DIR=PERM (topmost first), udba=none|reval, timeout=SECONDS, fsync=0|1, passthrough=0|1, metacopy=on (overlay mode: chmod/chown/utimes/xattr changes copy no data), ro, allow_other, nosuid, nodev, noexec, debug, log=FILE." placeholder:"OPTS"`
	Branch     []string `sep:"none" help:"A branch as DIR=PERM (PERM: rw, wh (ro+wh) or ro); repeat, topmost first." placeholder:"DIR=PERM"`
	Foreground bool     `short:"f" help:"Stay in the foreground and serve until unmounted or signalled."`
	Mountpoint string   `arg:"" help:"Where to mount the union." type:"path"`
}

func (m *mountCmd) config() (fusefs.Config, fusefs.MountOptions, error) {
	var cfg fusefs.Config
	for i, spec := range m.Branch {
		b, err := fusefs.ParseBranch(spec, i == 0 && !strings.Contains(spec, "="))
		if err != nil {
			return cfg, fusefs.MountOptions{}, err
		}
		cfg.Branches = append(cfg.Branches, b)
	}
	mo, err := fusefs.ParseOptions(&cfg, m.Options)
	if err != nil {
		return cfg, mo, err
	}
	if len(cfg.Branches) == 0 {
		return cfg, mo, fusefs.ErrNoBranches
	}
	return cfg, mo, nil
}

// Run mounts the union. Without -f it starts a copy of itself in the
// background that mounts and serves, and returns once that copy reports the
// mount ready (or its error).
func (m *mountCmd) Run() error {
	cfg, mo, err := m.config()
	if err != nil {
		return err
	}
	for _, o := range mo.Ignored {
		fmt.Fprintf(os.Stderr, "ufs: ignoring option %q: it has no meaning for ufs\n", o)
	}
	if fdStr := os.Getenv(readyEnv); fdStr != "" {
		return m.serve(cfg, mo, readyPipe(fdStr))
	}
	if m.Foreground {
		return m.serve(cfg, mo, nil)
	}
	// Check what can be checked here, so that errors come back quickly.
	if err := cfg.Validate(m.Mountpoint); err != nil {
		return err
	}
	return m.daemonize(mo.Log)
}

func readyPipe(fdStr string) *os.File {
	fd, err := strconv.Atoi(fdStr)
	if err != nil {
		return nil
	}
	os.Unsetenv(readyEnv)
	// Helpers the daemon runs (fusermount3) must not hold the pipe open.
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "ready")
}

func (m *mountCmd) daemonize(logPath string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	// The daemon inherits only the ready pipe and /dev/null for stdio.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close inherited descriptors: %w", err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), readyEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var logf *os.File
	if logPath != "" {
		logf, err = os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			w.Close()
			return fmt.Errorf("open log: %w", err)
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start daemon: %w", err)
	}
	w.Close()
	// The daemon writes "ok" once the mount is ready, or its error, and
	// closes the pipe.
	b, _ := io.ReadAll(r)
	msg := strings.Join(strings.Fields(string(b)), " ")
	if msg == "ok" {
		return cmd.Process.Release()
	}
	_ = cmd.Wait()
	if msg == "" {
		return errors.New("the daemon exited before the mount was ready (run with -f to see why)")
	}
	return errors.New(msg)
}

// serve mounts and serves until unmounted or signalled.
func (m *mountCmd) serve(cfg fusefs.Config, mo fusefs.MountOptions, ready *os.File) error {
	level := slog.LevelInfo
	if mo.Debug {
		level = slog.LevelDebug
	}
	var out io.Writer = os.Stderr
	cfg.Logger = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	// Files keep the modes the callers ask for: the kernel already applied
	// their umask.
	unix.Umask(0)
	// Signals are caught before the mount exists, so that none is lost.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	srv, u, err := fusefs.Mount(m.Mountpoint, cfg, mo)
	if err != nil {
		if ready != nil {
			fmt.Fprintf(ready, "%v\n", err)
			ready.Close()
		}
		return err
	}
	defer u.Close()
	// fusefs.Mount returns once the kernel serves the mount (go-fuse's
	// fs.Mount waits for it).
	if ready != nil {
		// Detach from the caller's terminal and working directory before
		// the caller is told to go on.
		if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
			_ = syscall.Dup2(int(devnull.Fd()), 0)
			devnull.Close()
		}
		_ = os.Chdir("/")
		fmt.Fprintln(ready, "ok")
		ready.Close()
	}
	go func() {
		<-sigs
		// Unmount; a busy mount is detached so that the daemon can exit.
		if err := srv.Unmount(); err != nil {
			_ = fusefs.Unmount(context.Background(), m.Mountpoint, true)
		}
	}()
	srv.Wait()
	return nil
}

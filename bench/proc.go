package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// command returns a command that dies with us (Pdeathsig) and lives in its
// own process group, so that a Ctrl-C on the terminal reaches only the
// harness, which then tears its mounts down in order.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs a command to completion; its error carries the command line and
// the tail of its output.
func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, nil, name, args...)
	return err
}

// output runs a command and returns its standard output.
func output(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := command(ctx, name, args...)
	if env != nil {
		cmd.Env = env
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), cmdError(cmd, err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func cmdError(cmd *exec.Cmd, err error, stderr []byte) error {
	msg := strings.TrimSpace(string(stderr))
	if len(msg) > 600 {
		msg = "…" + msg[len(msg)-600:]
	}
	line := strings.Join(cmd.Args, " ")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	if msg == "" {
		return fmt.Errorf("%s: %w", line, err)
	}
	return fmt.Errorf("%s: %w: %s", line, err, msg)
}

// daemon is a helper process serving a mount in the foreground.
type daemon struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exitR  *os.File // readable once the process has exited
	done   chan struct{}
	err    error // set before done is closed
}

// startDaemon starts a foreground helper and reaps it in the background.
// It is not killed when ctx ends: it ends when its mount is unmounted, so
// that an interrupted run takes its mounts down in order.
func startDaemon(ctx context.Context, name string, args ...string) (*daemon, error) {
	d := &daemon{cmd: command(context.WithoutCancel(ctx), name, args...), stderr: new(bytes.Buffer), done: make(chan struct{})}
	d.cmd.Stderr = d.stderr
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	d.exitR = r
	if err := d.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
		w.Close()
	}()
	return d, nil
}

// exited reports the helper's exit as an error with its output.
func (d *daemon) exited() error {
	<-d.done
	err := d.err
	if err == nil {
		err = errors.New("exited")
	}
	return cmdError(d.cmd, err, d.stderr.Bytes())
}

// stop waits for the helper to exit after its mount is gone, and kills it
// if it does not within half a minute.
func (d *daemon) stop() error {
	defer d.exitR.Close()
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("%s did not exit after its unmount; killed", d.cmd.Path)
	}
	var ee *exec.ExitError
	if d.err != nil && !errors.As(d.err, &ee) {
		return d.err
	}
	return nil
}

// waitMounted blocks until mnt appears in this process's mount table, the
// helper d exits (its error is returned), or ctx ends. It sleeps in poll(2)
// on /proc/self/mountinfo, which the kernel wakes on every change of the
// mount table.
func waitMounted(ctx context.Context, mnt string, d *daemon) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		b, err := readAt0(f)
		if err != nil {
			return fmt.Errorf("read mountinfo: %w", err)
		}
		if isMountPoint(b, mnt) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fds := []unix.PollFd{
			{Fd: int32(f.Fd()), Events: unix.POLLPRI},
			{Fd: int32(d.exitR.Fd()), Events: unix.POLLIN},
		}
		if _, err := unix.Poll(fds, 1000); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll mountinfo: %w", err)
		}
		if fds[1].Revents != 0 {
			if b, err := readAt0(f); err == nil && isMountPoint(b, mnt) {
				return nil
			}
			return fmt.Errorf("mount %s: %w", mnt, d.exited())
		}
	}
}

func readAt0(f *os.File) ([]byte, error) {
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(f)
	return buf.Bytes(), err
}

// isMountPoint reports whether mountinfo lists a mount at mnt.
func isMountPoint(mountinfo []byte, mnt string) bool {
	for line := range strings.Lines(string(mountinfo)) {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == mnt {
			return true
		}
	}
	return false
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

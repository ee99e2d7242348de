package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// setupTTY opens a pseudo-terminal in the container's own devpts, sends
// its master to the CLI over console (a unix socket), and makes the slave
// the controlling terminal and stdin, stdout and stderr of the calling
// process.
func setupTTY(console *os.File, id Identity) error {
	if console == nil {
		return errors.New("-t: no console socket")
	}
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return os.NewSyscallError("unlockpt", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		return os.NewSyscallError("ptsname", err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	slave, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer slave.Close()
	if err := unix.Fchown(int(slave.Fd()), int(id.UID), -1); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	if err := unix.Mount(name, "/dev/console", "", unix.MS_BIND, ""); err != nil {
		return &os.PathError{Op: "bind mount", Path: "/dev/console", Err: err}
	}
	rights := unix.UnixRights(int(master.Fd()))
	if err := unix.Sendmsg(int(console.Fd()), []byte("pty"), rights, nil, 0); err != nil {
		return os.NewSyscallError("send terminal to urun", err)
	}
	console.Close()
	if _, err := unix.Setsid(); err != nil {
		return os.NewSyscallError("setsid", err)
	}
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
		return os.NewSyscallError("ioctl(TIOCSCTTY)", err)
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(int(slave.Fd()), fd, 0); err != nil {
			return os.NewSyscallError("dup3", err)
		}
	}
	return nil
}

// consoleSocket is the CLI's end of the socket the container sends its
// terminal's master over.
type consoleSocket struct {
	local, remote *os.File
}

func newConsoleSocket() (*consoleSocket, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	return &consoleSocket{os.NewFile(uintptr(fds[0]), "console"), os.NewFile(uintptr(fds[1]), "console-remote")}, nil
}

// receive waits for the master; it returns nil, nil when the container
// ended without sending one (set-up failed).
func (s *consoleSocket) receive() (*os.File, error) {
	buf := make([]byte, 16)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(s.local.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("recvmsg", err)
	}
	if n == 0 && oobn == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("terminal from the container: bad control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("terminal from the container: no descriptor: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), "ptmx"), nil
}

// ttyRelay copies between the caller's terminal and the container's: the
// caller's stdin is put in raw mode (restored by stop, on every path), its
// window size follows SIGWINCH.
type ttyRelay struct {
	master   *os.File
	restore  func()
	done     chan struct{} // closed when the output copy ends
	stopOnce sync.Once
	sigs     chan os.Signal
}

func startRelay(master *os.File, in *os.File, out io.Writer, interactive bool) *ttyRelay {
	r := &ttyRelay{master: master, done: make(chan struct{}), restore: func() {}}
	inFd := int(in.Fd())
	if term.IsTerminal(inFd) {
		if st, err := term.MakeRaw(inFd); err == nil {
			r.restore = func() { term.Restore(inFd, st) }
		}
		r.resize(inFd)
		r.sigs = make(chan os.Signal, 1)
		signal.Notify(r.sigs, unix.SIGWINCH)
		go func() {
			for range r.sigs {
				r.resize(inFd)
			}
		}()
	}
	go func() {
		defer close(r.done)
		io.Copy(out, master) // ends with EIO once every slave is closed
	}()
	if interactive {
		go io.Copy(master, in)
	}
	return r
}

func (r *ttyRelay) resize(inFd int) {
	ws, err := unix.IoctlGetWinsize(inFd, unix.TIOCGWINSZ)
	if err == nil {
		unix.IoctlSetWinsize(int(r.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// stop waits (briefly) for the container's last output, then restores the
// terminal.
func (r *ttyRelay) stop() {
	r.stopOnce.Do(func() {
		select {
		case <-r.done:
		case <-time.After(2 * time.Second):
		}
		if r.sigs != nil {
			signal.Stop(r.sigs)
			close(r.sigs)
		}
		r.restore()
		r.master.Close()
	})
}

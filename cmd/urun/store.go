package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/urun-dev/urun/container"
	"github.com/urun-dev/urun/image"
	"github.com/urun-dev/urun/internal/reexec"
	"github.com/urun-dev/urun/userns"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// storeGlobals are the flags of the image store, shared by every command.
type storeGlobals struct {
	Config         string `help:"urun.conf to read (default: $$URUN_CONFIG, else $$XDG_CONFIG_HOME/urun/urun.conf if it exists)." placeholder:"FILE"`
	GraphRoot      string `name:"graphroot" help:"Image store directory (default: ROOT/storage with --root, else $$XDG_DATA_HOME/urun/storage)." placeholder:"DIR"`
	RunRoot        string `name:"runroot" help:"Image store run directory (default: $$XDG_RUNTIME_DIR/urun, else /tmp/urun-UID)." placeholder:"DIR"`
	RegistriesConf string `name:"registries-conf" help:"registries.conf to use instead of the system's (also $$CONTAINERS_REGISTRIES_CONF)." placeholder:"FILE"`
}

// storeEntry is the re-exec entry point that runs an image command inside
// the user namespace.
const storeEntry = "urun-store"

// registerStoreEntry adds the store's entry point to the binary; main
// calls it before reexec.Init.
func registerStoreEntry() {
	reexec.Register(storeEntry, func() {
		if err := userns.WaitMapped(); err != nil {
			fmt.Fprintf(os.Stderr, "Error: %v\n", err)
			os.Exit(container.ExitSetup)
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "Error: make / private in urun's mount namespace: %v\n", err)
			os.Exit(container.ExitSetup)
		}
		os.Exit(run(os.Args[1:]))
	})
}

// storeOptions turns the flags (and urun.conf) into store options.
func (g *globals) storeOptions() (image.Options, error) {
	o := image.Options{
		GraphRoot:      g.GraphRoot,
		RunRoot:        g.RunRoot,
		RegistriesConf: g.RegistriesConf,
		Logger:         g.logger(),
	}
	if o.GraphRoot == "" && g.Root != "" {
		o.GraphRoot = g.Root + "/storage"
	}
	if err := o.LoadConfig(g.Config); err != nil {
		return o, err
	}
	return o, nil
}

// openStore opens the image store the flags (and urun.conf) name, with
// containers-storage's own log on stderr at urun's level. The caller is
// root of urun's user namespace (or real root).
func (g *globals) openStore(ctx context.Context) (*image.Store, error) {
	logrus.SetOutput(os.Stderr)
	if lvl, err := logrus.ParseLevel(g.LogLevel); err == nil {
		logrus.SetLevel(lvl)
	}
	o, err := g.storeOptions()
	if err != nil {
		return nil, err
	}
	return image.Open(ctx, o)
}

// withStore runs fn on the image store inside urun's user namespace: as
// an unprivileged user it runs urun again as root of a new user namespace
// (subordinate ids mapped, as podman does) and a new mount namespace, and
// ends with that run's exit code; as root, or in that run, it opens the
// store and calls fn, with a context cancelled by SIGINT and SIGTERM (an
// interrupted pull stores nothing).
func withStore(ctx context.Context, g *globals, fn func(ctx context.Context, s *image.Store) error) error {
	if os.Geteuid() != 0 {
		return reexecInUserNS(g)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	s, err := g.openStore(ctx)
	if err != nil {
		return err
	}
	err = fn(ctx, s)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// reexecInUserNS runs this command line again in new user and mount
// namespaces and returns its exit code as an *exitCodeError (0 included:
// the caller must not act as if it had done the work itself).
func reexecInUserNS(g *globals) error {
	maps, err := userns.Plan(userns.Config{Logger: g.logger()})
	if err != nil {
		return err
	}
	cmd := reexec.Command(storeEntry, os.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	// reexec wants its entry's name last.
	cmd.Env = slices.Insert(cmd.Env, len(cmd.Env)-1, fmt.Sprintf("URUN_HOST_UID=%d", os.Getuid()))
	// Signals for urun go to the run inside, which ends its work cleanly
	// (an interrupted pull stores nothing); we wait for its end. (A
	// terminal's SIGINT reaches both; the inside run takes a repeat.)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := userns.Start(cmd, maps); err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case sig := <-sigs:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	// The run inside did the work and said so: its exit code, even 0,
	// ends this urun without more output.
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code < 0 {
			code = container.ExitSetup
		}
		return &exitCodeError{Code: code}
	}
	if err != nil {
		return err
	}
	return &exitCodeError{Code: 0}
}

// progress is where pulls report: stderr unless quiet.
func progress(quiet bool) io.Writer {
	if quiet {
		return nil
	}
	return os.Stderr
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

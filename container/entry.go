package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/urun-dev/urun/internal/reexec"
)

// Entry points of the re-executed binary.
const (
	entryMonitor = "urun-monitor"
	entryInit    = "urun-init"
	entryExec    = "urun-exec"
)

// Images is the image store as the monitor of a container from an image
// uses it, inside the user namespace.
type Images interface {
	// Prepare makes the store record c.ID of the image c.Image (pulled
	// as c.ImageOptions say) and fills in c's layers, upper and work
	// directories, and its process from the image's config.
	Prepare(ctx context.Context, c *Config) error
	// Release removes the store record of container c, if it has one.
	Release(c *Config) error
	Close() error
}

// OpenImages opens the image store for container c (c.ImageOptions say
// where it is).
type OpenImages func(ctx context.Context, c *Config) (Images, error)

// openImages is Register's argument, set before any goroutine runs.
var openImages OpenImages

// Register adds the container's entry points to the binary; main and
// TestMain call it before reexec.Init. images opens the image store for
// containers from images (nil: the binary runs none).
func Register(images OpenImages) {
	openImages = images
	reexec.Register(entryMonitor, monitorMain)
	reexec.Register(entryInit, initMain)
	reexec.Register(entryExec, execMain)
}

// Descriptors handed down the chain CLI → monitor → init (→ exec child).
// The environment names them, so the order of ExtraFiles does not matter.
const (
	envConfigFD  = "_URUN_CONFIG_FD"
	envConsoleFD = "_URUN_CONSOLE_FD"
	envLockFD    = "_URUN_LOCK_FD"
)

// passFile adds f to cmd's ExtraFiles and names its descriptor in env.
func passFile(cmd *exec.Cmd, env string, f *os.File) {
	if f == nil {
		return
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", env, 2+len(cmd.ExtraFiles)))
}

// inheritedFile returns the descriptor named in env, or nil.
func inheritedFile(env string) *os.File {
	v := os.Getenv(env)
	os.Unsetenv(env)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	// Ours alone: the container's processes must not inherit it.
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), env)
}

// sendConfig passes c to cmd through a pipe; call write after cmd.Start.
func sendConfig(cmd *exec.Cmd, c *Config) (write func() error, err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	passFile(cmd, envConfigFD, r)
	return func() error {
		r.Close()
		defer w.Close()
		return json.NewEncoder(w).Encode(c)
	}, nil
}

// receiveConfig reads the config the parent sent.
func receiveConfig() (*Config, error) {
	f := inheritedFile(envConfigFD)
	if f == nil {
		return nil, fmt.Errorf("no configuration from the parent (%s unset)", envConfigFD)
	}
	defer f.Close()
	var c Config
	if err := json.NewDecoder(f).Decode(&c); err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	return &c, nil
}

// fail prints err as podman does and exits with its code.
func fail(err error) {
	code := ExitSetup
	if e, ok := err.(*ExitError); ok {
		code = e.Code
	}
	fmt.Fprintf(os.Stderr, "Error: %v\n", err)
	os.Exit(code)
}

// exitCode turns a wait status into a shell-style exit code: the
// command's own, or 128+N when signal N killed it.
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return exitSignalShift + int(ws.Signal())
	}
	return ws.ExitStatus()
}

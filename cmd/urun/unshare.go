package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

type unshareCmd struct {
	Command []string `arg:"" optional:"" passthrough:"" help:"Command to run (default: $$SHELL)."`
}

// Run runs the command in urun's user and mount namespaces, as root of
// them, like podman unshare: there the store's files have their image
// owners, and can be examined or removed.
func (c *unshareCmd) Run(ctx context.Context, g *globals) error {
	if os.Geteuid() != 0 {
		return reexecInUserNS(g)
	}
	argv := c.Command
	if len(argv) == 0 {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		argv = []string{sh}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	return &os.PathError{Op: "execve", Path: path, Err: syscall.Exec(path, argv, os.Environ())}
}

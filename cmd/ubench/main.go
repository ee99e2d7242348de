// Command ubench runs the benchmarks of bench/: ufs and urun side by side
// with kernel overlayfs, fuse-overlayfs, podman, crun, runc and bwrap.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

type cli struct {
	Fs    fsCmd    `cmd:"" help:"Filesystem workloads on a plain directory, kernel overlayfs, fuse-overlayfs and ufs (root and rootless)."`
	Run   runCmd   `cmd:"" help:"Runtime: true in a container with urun, podman, crun, runc and bwrap."`
	All   allCmd   `cmd:"" help:"Both parts."`
	Agent agentCmd `cmd:"" hidden:"" help:"Serve the harness as the rootless user (started by ubench itself)."`
}

func main() {
	// Ctrl-C and SIGTERM cancel the run; every mount and process is then
	// taken down before ubench exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	var c cli
	k := kong.Parse(&c,
		kong.Name("ubench"),
		kong.Description("Benchmarks of ufs and urun against their peers: a Markdown table on stdout; JSON and SVG charts in the results directory."),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.UsageOnError(),
	)
	if err := k.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "ubench: %v\n", err)
		stop()
		os.Exit(1)
	}
}

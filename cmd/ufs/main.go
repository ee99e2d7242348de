// Command ufs mounts a FUSE union filesystem with aufs branch semantics.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

type cli struct {
	Mount   mountCmd   `cmd:"" help:"Mount a union of branches."`
	Unmount unmountCmd `cmd:"" help:"Unmount a union (also one left by a killed daemon)."`
}

// args are the command-line arguments in ufs's own form, after the
// rewriting of compatible command lines; the background daemon is started
// with them.
var args []string

func main() {
	var c cli
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	parser, err := kong.New(&c,
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.Name("ufs"),
		kong.Description("A FUSE union filesystem with aufs branch semantics. Also accepts fuse-overlayfs's command line (ufs -o lowerdir=...,upperdir=...,workdir=... TARGET) and mount(8)'s (ufs SOURCE TARGET -o OPTS)."),
		kong.UsageOnError(),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ufs: %v\n", err)
		os.Exit(1)
	}
	args = compatArgs(os.Args[0], os.Args[1:])
	k, err := parser.Parse(args)
	parser.FatalIfErrorf(err)
	if err := k.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "ufs: %v\n", err)
		os.Exit(1)
	}
}

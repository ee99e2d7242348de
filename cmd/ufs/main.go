// Command ufs mounts a FUSE union filesystem with aufs branch semantics.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

type cli struct {
	Mount   mountCmd   `cmd:"" help:"Mount a union of branches."`
	Unmount unmountCmd `cmd:"" help:"Unmount a union (also one left by a killed daemon)."`
}

func main() {
	var c cli
	k := kong.Parse(&c,
		kong.Name("ufs"),
		kong.Description("A FUSE union filesystem with aufs branch semantics."),
		kong.UsageOnError(),
	)
	if err := k.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "ufs: %v\n", err)
		os.Exit(1)
	}
}

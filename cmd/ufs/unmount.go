package main

import (
	"context"

	"github.com/urun-dev/urun/fusefs"
)

type unmountCmd struct {
	Lazy       bool   `short:"z" help:"Lazy unmount: detach now, clean up when no longer busy."`
	Mountpoint string `arg:"" help:"The mountpoint." type:"path"`
}

// Run unmounts the union at the mountpoint.
func (c *unmountCmd) Run(ctx context.Context) error {
	return fusefs.Unmount(ctx, c.Mountpoint, c.Lazy)
}

package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urun-dev/urun/image"
)

type saveCmd struct {
	Output string `short:"o" help:"File to write (default: standard output, which must not be a terminal)." placeholder:"FILE"`
	Format string `help:"Archive format: docker-archive (several images) or oci-archive (one)." default:"docker-archive" enum:"docker-archive,oci-archive"`
	Quiet  bool   `short:"q" help:"No progress output."`

	Images []string `arg:"" help:"Images (names or IDs)."`
}

func (c *saveCmd) Run(ctx context.Context, g *globals) error {
	f, err := image.ParseArchiveFormat(c.Format)
	if err != nil {
		return err
	}
	if c.Output == "" && isTerminal(os.Stdout) {
		return fmt.Errorf("save: refusing to write an archive to a terminal: use -o FILE or redirect the output")
	}
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		if c.Output == "" {
			return s.Save(ctx, c.Images, f, os.Stdout, progress(c.Quiet))
		}
		return s.SaveFile(ctx, c.Images, f, c.Output, progress(c.Quiet))
	})
}

package main

import (
	"context"
	"fmt"

	"github.com/urun-dev/urun/image"
)

type importCmd struct {
	Change []string `short:"c" sep:"none" help:"Set a default of the image's process, as a Dockerfile instruction: CMD, ENTRYPOINT, ENV, LABEL, WORKDIR, USER, STOPSIGNAL, EXPOSE, VOLUME." placeholder:"INSTRUCTION"`
	Quiet  bool     `short:"q" help:"No progress output."`

	Tarball string `arg:"" help:"Tarball of a root file system (uncompressed, gzip, bzip2, xz or zstd)." type:"existingfile"`
	Name    string `arg:"" optional:"" help:"Name of the new image (a short name goes under localhost/)."`
}

func (c *importCmd) Run(ctx context.Context, g *globals) error {
	var o image.ImportOptions
	for _, ch := range c.Change {
		if err := image.ApplyChange(&o.Config, ch); err != nil {
			return err
		}
	}
	o.Report = progress(c.Quiet)
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		img, err := s.Import(ctx, c.Tarball, c.Name, o)
		if err != nil {
			return err
		}
		fmt.Println(img.ID)
		return nil
	})
}

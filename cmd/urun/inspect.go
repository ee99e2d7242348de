package main

import (
	"context"
	"encoding/json"
	"os"

	"github.com/urun-dev/urun/image"
)

type inspectCmd struct {
	Images []string `arg:"" help:"Images (names or IDs)."`
}

func (c *inspectCmd) Run(ctx context.Context, g *globals) error {
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		out := make([]*image.Inspection, 0, len(c.Images))
		for _, n := range c.Images {
			in, err := s.Inspect(ctx, n)
			if err != nil {
				return err
			}
			out = append(out, in)
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	})
}

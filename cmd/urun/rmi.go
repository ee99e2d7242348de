package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urun-dev/urun/image"
)

type rmiCmd struct {
	Force  bool     `short:"f" help:"Also remove the containers that use the images."`
	Images []string `arg:"" help:"Images (names or IDs)."`
}

func (c *rmiCmd) Run(ctx context.Context, g *globals) error {
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		var errs []error
		for _, n := range c.Images {
			r, err := s.Remove(n, c.Force)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, u := range r.Untagged {
				fmt.Println("Untagged: " + u)
			}
			if r.Deleted != "" {
				fmt.Println("Deleted: " + r.Deleted)
			}
		}
		return errors.Join(errs...)
	})
}

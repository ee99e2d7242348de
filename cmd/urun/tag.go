package main

import (
	"context"

	"github.com/urun-dev/urun/image"
)

type tagCmd struct {
	Image string   `arg:"" help:"Image (name or ID)."`
	Names []string `arg:"" help:"New names (a short name goes under localhost/)."`
}

func (c *tagCmd) Run(ctx context.Context, g *globals) error {
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		for _, n := range c.Names {
			if _, err := s.Tag(c.Image, n); err != nil {
				return err
			}
		}
		return nil
	})
}

type untagCmd struct {
	Names []string `arg:"" help:"Names to take off their images."`
}

func (c *untagCmd) Run(ctx context.Context, g *globals) error {
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		for _, n := range c.Names {
			if err := s.Untag(n); err != nil {
				return err
			}
		}
		return nil
	})
}

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urun-dev/urun/container"
	"github.com/urun-dev/urun/image"
)

type rmCmd struct {
	Containers []string `arg:"" help:"Containers (names, ids or id prefixes) that are not running."`
}

// Run removes stopped containers: their state and, for an image's, the
// store record and its writable layer. It works as root of urun's user
// namespace, where the files of the container's subordinate ids can go.
func (c *rmCmd) Run(ctx context.Context, g *globals) error {
	root, err := dataRoot(g)
	if err != nil {
		return err
	}
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		var errs []error
		for _, ref := range c.Containers {
			cfg, err := container.Find(root, ref)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			err = container.RemoveStopped(root, cfg, func(cfg *container.Config) error {
				err := s.RemoveContainer(cfg.ID)
				if errors.Is(err, image.ErrContainerNotFound) {
					return nil
				}
				return err
			})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Println(cfg.ID)
		}
		return errors.Join(errs...)
	})
}

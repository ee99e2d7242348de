package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/urun-dev/urun/image"
)

type loadCmd struct {
	Input string `short:"i" help:"Archive to read, docker-archive or oci-archive (default: standard input)." placeholder:"FILE"`
	Quiet bool   `short:"q" help:"No progress output."`
}

func (c *loadCmd) Run(ctx context.Context, g *globals) error {
	if c.Input == "" && isTerminal(os.Stdin) {
		return fmt.Errorf("load: no archive: use -i FILE or redirect standard input")
	}
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		path := c.Input
		if path == "" {
			tmp, err := stdinToFile(s.GraphRoot())
			if err != nil {
				return err
			}
			defer os.Remove(tmp)
			path = tmp
		}
		imgs, err := s.Load(ctx, path, progress(c.Quiet))
		for _, img := range imgs {
			for _, n := range img.Names {
				fmt.Println("Loaded image: " + n)
			}
			if len(img.Names) == 0 {
				fmt.Println("Loaded image: " + img.ID)
			}
		}
		return err
	})
}

// stdinToFile copies standard input into a temporary file beside the
// store (archives are read at random).
func stdinToFile(dir string) (string, error) {
	f, err := os.CreateTemp(dir, "load-*.tar")
	if err != nil {
		return "", fmt.Errorf("load: %w", err)
	}
	if _, err := io.Copy(f, os.Stdin); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("load: read standard input: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("load: %w", err)
	}
	return f.Name(), nil
}

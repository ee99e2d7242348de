package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urun-dev/urun/container"
)

type psCmd struct {
	All   bool `short:"a" help:"Also show containers that are not running (kept without --rm)."`
	Quiet bool `short:"q" help:"Print the container ids only."`
}

func (c *psCmd) Run(ctx context.Context, g *globals) error {
	root, err := dataRoot(g)
	if err != nil {
		return err
	}
	list, err := container.List(root)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	if !c.Quiet {
		fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tNAMES")
	}
	for _, ci := range list {
		if !ci.Running && !c.All {
			continue
		}
		if c.Quiet {
			fmt.Fprintln(tw, ci.ID[:12])
			continue
		}
		img := ci.Image
		if img == "" && len(ci.Layers) > 0 {
			img = "rootfs:" + ci.Layers[0]
		}
		status := "Exited"
		if ci.Running {
			status = "Running"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ci.ID[:12], img, shorten(strings.Join(ci.Command, " "), 20), ago(ci.Created), status, ci.Name)
	}
	return tw.Flush()
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// dataRoot is --root, or urun's default data directory.
func dataRoot(g *globals) (string, error) {
	if g.Root != "" {
		return g.Root, nil
	}
	return container.DefaultRoot()
}

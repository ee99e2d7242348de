package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urun-dev/urun/image"
	"go.podman.io/image/v5/docker/reference"
)

type imagesCmd struct {
	Format  string `help:"Output format: table or json." default:"table" enum:"table,json"`
	Quiet   bool   `short:"q" help:"Only image IDs."`
	NoTrunc bool   `help:"Full image IDs."`
}

// imageJSON is a line of urun images --format json (podman's field names).
type imageJSON struct {
	ID      string   `json:"Id"`
	Names   []string `json:"Names"`
	Digest  string   `json:"Digest"`
	Created int64    `json:"Created"`
	Size    int64    `json:"Size"`
}

func (c *imagesCmd) Run(ctx context.Context, g *globals) error {
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		imgs, err := s.Images()
		if err != nil {
			return err
		}
		return c.print(imgs)
	})
}

func (c *imagesCmd) print(imgs []image.Summary) error {
	id := func(i image.Summary) string {
		if c.NoTrunc {
			return "sha256:" + i.ID
		}
		return i.ShortID()
	}
	switch {
	case c.Quiet:
		for _, i := range imgs {
			fmt.Println(id(i))
		}
		return nil
	case c.Format == "json":
		out := make([]imageJSON, 0, len(imgs))
		for _, i := range imgs {
			out = append(out, imageJSON{ID: i.ID, Names: append([]string{}, i.Names...), Digest: i.Digest.String(), Created: i.Created.Unix(), Size: i.Size})
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
	for _, i := range imgs {
		rows := repoTags(i.Names)
		if len(rows) == 0 {
			rows = [][2]string{{"<none>", "<none>"}}
		}
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r[0], r[1], id(i), ago(i.Created), humanSize(i.Size))
		}
	}
	return tw.Flush()
}

// repoTags splits names into repository and tag (digest names show their
// digest as the tag, as <none> would hide them).
func repoTags(names []string) [][2]string {
	var out [][2]string
	for _, n := range names {
		r, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			continue
		}
		switch t := r.(type) {
		case reference.NamedTagged:
			out = append(out, [2]string{r.Name(), t.Tag()})
		case reference.Digested:
			out = append(out, [2]string{r.Name(), "<none>"})
		default:
			out = append(out, [2]string{r.Name(), "<none>"})
		}
	}
	return out
}

func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "Less than a minute ago"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	s := fmt.Sprintf("%.3g", f)
	return strings.TrimSuffix(s, ".0") + " " + units[i]
}

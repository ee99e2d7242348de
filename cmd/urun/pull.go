package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urun-dev/urun/image"
)

// pullFlags are the flags of every command that may pull.
type pullFlags struct {
	TLSVerify bool   `name:"tls-verify" default:"true" negatable:"" help:"Verify the registry's certificate; --tls-verify=false also allows plain HTTP."`
	Platform  string `help:"Platform to pull from a multi-arch image (default: the host's)." placeholder:"OS/ARCH[/VARIANT]"`
	Quiet     bool   `short:"q" help:"No progress output."`
}

type pullCmd struct {
	pullFlags
	Name string `help:"Name for an image from a source without one (oci: layout without ref, untagged docker-archive)."`

	Ref string `arg:"" help:"Image: a short or qualified name (busybox, quay.io/x/y:tag, x@sha256:…), or docker://, oci:, oci-archive:, docker-archive: sources."`
}

func (c *pullCmd) Run(ctx context.Context, g *globals) error {
	o, err := c.options()
	if err != nil {
		return err
	}
	return withStore(ctx, g, func(ctx context.Context, s *image.Store) error {
		img, err := s.Pull(ctx, c.Ref, o)
		if err != nil {
			return err
		}
		fmt.Println(img.ID)
		return nil
	})
}

func (c *pullCmd) options() (image.PullOptions, error) {
	o, err := c.pullFlags.options()
	o.Name = c.Name
	return o, err
}

func (c *pullFlags) options() (image.PullOptions, error) {
	o := image.PullOptions{SkipTLSVerify: !c.TLSVerify, Report: progress(c.Quiet)}
	if c.Platform != "" {
		p, err := parsePlatform(c.Platform)
		if err != nil {
			return o, err
		}
		o.OS, o.Arch, o.Variant = p[0], p[1], p[2]
	}
	return o, nil
}

// parsePlatform splits OS/ARCH[/VARIANT].
func parsePlatform(s string) ([3]string, error) {
	f := strings.Split(s, "/")
	if len(f) < 2 || len(f) > 3 || f[0] == "" || f[1] == "" {
		return [3]string{}, fmt.Errorf("--platform %q: want OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64", s)
	}
	var p [3]string
	copy(p[:], f)
	return p, nil
}

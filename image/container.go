package image

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
)

// Container is a container record of the store: a writable layer on top
// of an image's layers. The runtime mounts the union itself (fusefs, with
// Lowers, Upper and Work) rather than through Mount, so that the FUSE
// server lives and dies with the container.
type Container struct {
	// ID is the container's ID; Name its name ("" if none).
	ID   string
	Name string
	// ImageID is the image it was made from; LayerID its writable layer.
	ImageID string
	LayerID string

	lowers []string
	upper  string
	work   string
	config imgspecv1.Image
}

// Lowers are the image's layer directories, topmost first (overlayfs's
// lowerdir order). An image without layers has none.
func (c *Container) Lowers() []string { return append([]string(nil), c.lowers...) }

// Upper is the container's writable layer directory.
func (c *Container) Upper() string { return c.upper }

// Work is the overlay work directory, on Upper's file system.
func (c *Container) Work() string { return c.work }

// Config is the image's default process: Entrypoint, Cmd, Env,
// WorkingDir, User, StopSignal, Labels...
func (c *Container) Config() imgspecv1.ImageConfig { return c.config.Config }

// Platform is the image's OS and architecture.
func (c *Container) Platform() imgspecv1.Platform { return c.config.Platform }

// NewContainer creates a container record for img, named name ("" for
// none; a name in use is an error). Remove it with RemoveContainer.
func (s *Store) NewContainer(ctx context.Context, img *Image, name string) (*Container, error) {
	return s.NewContainerID(ctx, img, "", name)
}

// NewContainerID is NewContainer with the record's ID chosen by the
// caller (64 hex digits; "" lets the store choose): urun gives the record
// its container's ID, so that the state of a killed container leads to
// its record.
func (s *Store) NewContainerID(ctx context.Context, img *Image, id, name string) (*Container, error) {
	if img == nil {
		return nil, fmt.Errorf("new container: no image")
	}
	var names []string
	if name != "" {
		names = []string{name}
	}
	cfg, err := s.ociConfig(ctx, img.ID)
	if err != nil {
		return nil, err
	}
	sc, err := s.store.CreateContainer(id, names, img.ID, "", "", nil)
	if errors.Is(err, storage.ErrDuplicateName) {
		return nil, fmt.Errorf("new container: the name %q is in use (pick another, or remove that container)", name)
	}
	if err != nil {
		return nil, fmt.Errorf("new container of image %s: %w", img.ShortID(), err)
	}
	c, err := s.container(sc, cfg)
	if err != nil {
		if derr := s.store.DeleteContainer(sc.ID); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove container record %s: %w", shortID(sc.ID), derr))
		}
		return nil, err
	}
	return c, nil
}

// Container returns the container record with that ID or name.
func (s *Store) Container(ctx context.Context, idOrName string) (*Container, error) {
	sc, err := s.store.Container(idOrName)
	if errors.Is(err, storage.ErrContainerUnknown) {
		return nil, fmt.Errorf("%w: %s", ErrContainerNotFound, idOrName)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", idOrName, err)
	}
	cfg, err := s.ociConfig(ctx, sc.ImageID)
	if err != nil {
		return nil, err
	}
	return s.container(sc, cfg)
}

func (s *Store) container(sc *storage.Container, cfg *imgspecv1.Image) (*Container, error) {
	drv, err := s.store.GraphDriver()
	if err != nil {
		return nil, fmt.Errorf("graph driver: %w", err)
	}
	md, err := drv.Metadata(sc.LayerID)
	if err != nil {
		return nil, fmt.Errorf("layer directories of container %s: %w", shortID(sc.ID), err)
	}
	c := &Container{
		ID: sc.ID, ImageID: sc.ImageID, LayerID: sc.LayerID,
		upper: md["UpperDir"], work: md["WorkDir"], config: *cfg,
	}
	if len(sc.Names) > 0 {
		c.Name = sc.Names[0]
	}
	if l := md["LowerDir"]; l != "" {
		c.lowers = strings.Split(l, ":")
	}
	if c.upper == "" || c.work == "" || !filepath.IsAbs(c.upper) {
		return nil, fmt.Errorf("container %s: the graph driver gave no upper/work directory (driver %s)", shortID(sc.ID), drv.String())
	}
	return c, nil
}

// RemoveContainer deletes a container record and its writable layer (it
// must not be mounted).
func (s *Store) RemoveContainer(idOrName string) error {
	err := s.store.DeleteContainer(idOrName)
	if errors.Is(err, storage.ErrContainerUnknown) || errors.Is(err, storage.ErrNotAContainer) {
		return fmt.Errorf("%w: %s", ErrContainerNotFound, idOrName)
	}
	if err != nil {
		return fmt.Errorf("remove container %s: %w", idOrName, err)
	}
	return nil
}

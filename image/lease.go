package image

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urun-dev/urun/image/lease"
	"go.podman.io/storage"
)

// Lease is a hold on an image's layers without a container record: a
// container that is removed when it ends (urun run --rm) keeps its
// writable layer outside the store and needs the image's layers only
// while it runs. The lease is a shared lock on a file of the image;
// Remove takes it exclusively, so an image cannot go while a lease on it
// is held. The kernel drops the lock when its holder dies: a killed
// container leaves nothing in the store.
//
// Making and removing a container record costs several fdatasyncs of the
// store's JSON files and a layer; a lease costs an open and a flock.
type Lease struct {
	// ImageID is the image it holds.
	ImageID string

	lowers []string
	config imgspecv1.Image
	held   *lease.Lease
}

// Lowers are the image's layer directories, topmost first (as
// Container.Lowers).
func (l *Lease) Lowers() []string { return append([]string(nil), l.lowers...) }

// Config is the image's default process (as Container.Config).
func (l *Lease) Config() imgspecv1.ImageConfig { return l.config.Config }

// Platform is the image's OS and architecture.
func (l *Lease) Platform() imgspecv1.Platform { return l.config.Platform }

// Release lets go of the image.
func (l *Lease) Release() error { return l.held.Release() }

// Lease takes a lease on img (see Lease, and package lease), and reads
// its layer directories and config. Release it when the container has
// ended.
func (s *Store) Lease(ctx context.Context, img *Image) (*Lease, error) {
	if img == nil {
		return nil, fmt.Errorf("lease: no image")
	}
	held, err := lease.Take(lease.Ref{GraphRoot: s.opts.GraphRoot, ImageID: img.ID})
	if errors.Is(err, lease.ErrGone) {
		err = fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	l := &Lease{ImageID: img.ID, held: held}
	if err := s.fillLease(ctx, l, img); err != nil {
		held.Release()
		return nil, err
	}
	return l, nil
}

func (s *Store) fillLease(ctx context.Context, l *Lease, img *Image) error {
	si, err := s.store.Image(img.ID)
	if errors.Is(err, storage.ErrImageUnknown) {
		return fmt.Errorf("%w: %s (removed while the container started)", ErrNotFound, img.ShortID())
	}
	if err != nil {
		return fmt.Errorf("image %s: %w", img.ShortID(), err)
	}
	cfg, err := s.ociConfig(ctx, img.ID)
	if err != nil {
		return err
	}
	l.config = *cfg
	if si.TopLayer == "" {
		return nil
	}
	drv, err := s.store.GraphDriver()
	if err != nil {
		return fmt.Errorf("graph driver: %w", err)
	}
	md, err := drv.Metadata(si.TopLayer)
	if err != nil {
		return fmt.Errorf("layer directories of image %s: %w", img.ShortID(), err)
	}
	top := md["UpperDir"]
	if top == "" || !filepath.IsAbs(top) {
		return fmt.Errorf("image %s: the graph driver gave no directory for layer %s (driver %s)", img.ShortID(), shortID(si.TopLayer), drv.String())
	}
	l.lowers = []string{top}
	if lower := md["LowerDir"]; lower != "" {
		l.lowers = append(l.lowers, strings.Split(lower, ":")...)
	}
	return nil
}

// lockOut takes the image's lease lock exclusively (lease.LockOut): it
// fails with ErrInUse while a lease is held.
func (s *Store) lockOut(img *storage.Image) (unlock func(deleted bool), err error) {
	return lease.LockOut(lease.Ref{GraphRoot: s.opts.GraphRoot, ImageID: img.ID})
}

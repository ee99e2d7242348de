package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
	"golang.org/x/sys/unix"
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
	lock   *os.File
}

// Lowers are the image's layer directories, topmost first (as
// Container.Lowers).
func (l *Lease) Lowers() []string { return append([]string(nil), l.lowers...) }

// Config is the image's default process (as Container.Config).
func (l *Lease) Config() imgspecv1.ImageConfig { return l.config.Config }

// Platform is the image's OS and architecture.
func (l *Lease) Platform() imgspecv1.Platform { return l.config.Platform }

// Release lets go of the image.
func (l *Lease) Release() error { return l.lock.Close() }

// leaseFile is the lock file of an image's leases
// (GRAPHROOT/urun-leases/IMAGEID), made by the first lease; Remove deletes
// it with the image.
func (s *Store) leaseFile(imageID string) string {
	return filepath.Join(s.opts.GraphRoot, "urun-leases", imageID)
}

// Lease takes a lease on img (see Lease), and reads its layer directories
// and config. Release it when the container has ended.
func (s *Store) Lease(ctx context.Context, img *Image) (*Lease, error) {
	if img == nil {
		return nil, fmt.Errorf("lease: no image")
	}
	path := s.leaseFile(img.ID)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lease on image %s: %w", img.ShortID(), err)
	}
	// Waits while Remove of the image runs; then the image may be gone.
	if err := flock(f, unix.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("lease on image %s: %w", img.ShortID(), err)
	}
	l := &Lease{ImageID: img.ID, lock: f}
	if err := s.fillLease(ctx, l, img); err != nil {
		if errors.Is(err, ErrNotFound) {
			os.Remove(path) // ours: a lease of no image
		}
		f.Close()
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

// lockOut takes the image's lease lock exclusively, without waiting: it
// fails with ErrInUse while a lease is held. unlock removes the lock file
// (when the image was deleted) and lets go.
func (s *Store) lockOut(img *storage.Image) (unlock func(deleted bool), err error) {
	path := s.leaseFile(img.ID)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return func(bool) {}, nil // never leased
	}
	if err != nil {
		return nil, fmt.Errorf("lease lock of image %s: %w", shortID(img.ID), err)
	}
	if err := flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("remove image %s: %w: a running container (urun run --rm) uses it; stop it first", shortID(img.ID), ErrInUse)
		}
		return nil, fmt.Errorf("lease lock of image %s: %w", shortID(img.ID), err)
	}
	return func(deleted bool) {
		if deleted {
			os.Remove(path)
		}
		f.Close()
	}, nil
}

// flock wraps flock(2), retrying EINTR.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

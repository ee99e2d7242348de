package image

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/storage"
)

// Summary is a line of urun images.
type Summary struct {
	Image
	// Size is the size of all its layers, shared ones included.
	Size int64
}

// Images lists the store's images, newest first.
func (s *Store) Images() ([]Summary, error) {
	imgs, err := s.store.Images()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]Summary, 0, len(imgs))
	for i := range imgs {
		size, err := s.store.ImageSize(imgs[i].ID)
		if err != nil {
			return nil, fmt.Errorf("size of image %s: %w", shortID(imgs[i].ID), err)
		}
		out = append(out, Summary{Image: *fromStorage(&imgs[i]), Size: size})
	}
	slices.SortStableFunc(out, func(a, b Summary) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// Inspection is what urun inspect prints: the store's record and the
// image's OCI config.
type Inspection struct {
	ID           string
	Digest       digest.Digest
	RepoTags     []string
	RepoDigests  []string
	Created      *time.Time
	Stored       time.Time
	Architecture string
	Os           string
	Variant      string `json:",omitempty"`
	Author       string `json:",omitempty"`
	Size         int64
	Config       imgspecv1.ImageConfig
	// RootFS lists the layers' uncompressed digests, lowest first.
	RootFS imgspecv1.RootFS
	// Layers lists the store's layer IDs, lowest first.
	Layers      []string
	History     []imgspecv1.History `json:",omitempty"`
	Annotations map[string]string   `json:",omitempty"`
}

// Inspect describes the image called name (see Resolve).
func (s *Store) Inspect(ctx context.Context, name string) (*Inspection, error) {
	img, err := s.resolve(name)
	if err != nil {
		return nil, err
	}
	cfg, err := s.ociConfig(ctx, img.ID)
	if err != nil {
		return nil, err
	}
	size, err := s.store.ImageSize(img.ID)
	if err != nil {
		return nil, fmt.Errorf("size of image %s: %w", shortID(img.ID), err)
	}
	layers, err := s.layerChain(img.TopLayer)
	if err != nil {
		return nil, err
	}
	in := &Inspection{
		ID: img.ID, Digest: img.Digest, Created: cfg.Created, Stored: img.Created,
		Architecture: cfg.Architecture, Os: cfg.OS, Variant: cfg.Variant, Author: cfg.Author,
		Size: size, Config: cfg.Config, RootFS: cfg.RootFS, Layers: layers, History: cfg.History,
		RepoTags: []string{}, RepoDigests: []string{},
	}
	for _, n := range img.Names {
		r, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			continue
		}
		if _, ok := r.(reference.Digested); ok {
			in.RepoDigests = append(in.RepoDigests, n)
			continue
		}
		in.RepoTags = append(in.RepoTags, n)
		for _, d := range img.Digests {
			if rd, err := reference.WithDigest(reference.TrimNamed(r), d); err == nil && !slices.Contains(in.RepoDigests, rd.String()) {
				in.RepoDigests = append(in.RepoDigests, rd.String())
			}
		}
	}
	return in, nil
}

// ociConfig reads an image's config, converted to OCI form.
func (s *Store) ociConfig(ctx context.Context, id string) (*imgspecv1.Image, error) {
	ref, err := istorage.Transport.NewStoreReference(s.store, nil, id)
	if err != nil {
		return nil, fmt.Errorf("store reference: %w", err)
	}
	ic, err := ref.NewImage(ctx, s.systemContext())
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", shortID(id), err)
	}
	defer ic.Close()
	cfg, err := ic.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("config of image %s: %w", shortID(id), err)
	}
	return cfg, nil
}

// layerChain lists a layer and its parents, lowest first.
func (s *Store) layerChain(top string) ([]string, error) {
	var ids []string
	for id := top; id != ""; {
		l, err := s.store.Layer(id)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", shortID(id), err)
		}
		ids = append(ids, l.ID)
		id = l.Parent
	}
	slices.Reverse(ids)
	return ids, nil
}

// Removal reports what Remove did.
type Removal struct {
	// Untagged are names taken off; Deleted is the ID of a deleted image.
	Untagged []string
	Deleted  string
	// Layers are the layers deleted with it (those no other image or
	// container used).
	Layers []string
}

// Remove removes the image called name. Given one of several names of an
// image, it only takes that name off (as podman rmi). Otherwise it deletes
// the image and the layers nothing else uses; an image a container uses is
// refused (ErrInUse) unless force is set, which deletes those containers'
// records first. An image a Lease holds is refused (ErrInUse), --force
// or not.
func (s *Store) Remove(name string, force bool) (*Removal, error) {
	img, err := s.resolve(name)
	if err != nil {
		return nil, err
	}
	r := &Removal{}
	if n, ok := s.nameOf(img, name); ok && len(img.Names) > 1 {
		if err := s.store.RemoveNames(img.ID, []string{n}); err != nil {
			return nil, fmt.Errorf("untag %s: %w", n, err)
		}
		r.Untagged = []string{n}
		return r, nil
	}
	// Leases first: --force removes records, never running containers.
	unlock, err := s.lockOut(img)
	if err != nil {
		return nil, err
	}
	deleted := false
	defer func() { unlock(deleted) }()
	ctrs, err := s.store.Containers()
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs {
		if c.ImageID != img.ID {
			continue
		}
		if !force {
			return nil, fmt.Errorf("remove image %s: %w %s (remove the container first, or use --force)", shortID(img.ID), ErrInUse, shortID(c.ID))
		}
		if err := s.store.DeleteContainer(c.ID); err != nil {
			return nil, fmt.Errorf("remove container %s of image %s: %w", shortID(c.ID), shortID(img.ID), err)
		}
	}
	layers, err := s.store.DeleteImage(img.ID, true)
	if errors.Is(err, storage.ErrImageUsedByContainer) {
		return nil, fmt.Errorf("remove image %s: %w (a container was created meanwhile)", shortID(img.ID), ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("remove image %s: %w", shortID(img.ID), err)
	}
	deleted = true
	r.Untagged, r.Deleted, r.Layers = img.Names, img.ID, layers
	return r, nil
}

// nameOf returns the stored name that the user's name designates, if it
// is a name (not an ID).
func (s *Store) nameOf(img *storage.Image, name string) (string, bool) {
	if slices.Contains(img.Names, name) {
		return name, true
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err == nil {
		if n := reference.TagNameOnly(named).String(); slices.Contains(img.Names, n) {
			return n, true
		}
	}
	if cands, err := NormalizeName(name); err == nil && slices.Contains(img.Names, cands.String()) {
		return cands.String(), true
	}
	return "", false
}

// Tag gives the image called name the extra name newName (normalized with
// NormalizeName; it moves from any image that had it).
func (s *Store) Tag(name, newName string) (string, error) {
	img, err := s.resolve(name)
	if err != nil {
		return "", err
	}
	named, err := NormalizeName(newName)
	if err != nil {
		return "", err
	}
	if _, ok := named.(reference.Digested); ok {
		return "", fmt.Errorf("%w: %q: a tag cannot contain a digest", ErrBadReference, newName)
	}
	if err := s.store.AddNames(img.ID, []string{named.String()}); err != nil {
		return "", fmt.Errorf("tag %s as %s: %w", shortID(img.ID), named, err)
	}
	return named.String(), nil
}

// Untag takes the name off the image that has it.
func (s *Store) Untag(name string) error {
	img, err := s.resolve(name)
	if err != nil {
		return err
	}
	n, ok := s.nameOf(img, name)
	if !ok {
		return fmt.Errorf("untag %s: %w: not a name of image %s", name, ErrBadReference, shortID(img.ID))
	}
	if err := s.store.RemoveNames(img.ID, []string{n}); err != nil {
		return fmt.Errorf("untag %s: %w", n, err)
	}
	return nil
}

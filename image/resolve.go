package image

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
)

// Image is one image of the store.
type Image struct {
	// ID is the image ID: the hex digest of its config.
	ID string
	// Names are its references, normalized (docker.io/library/busybox:latest).
	Names []string
	// Digest is the digest of its manifest; Digests all manifest digests
	// it is known by (an image pulled through an index has two).
	Digest  digest.Digest
	Digests []digest.Digest
	// Created is when the image was stored.
	Created time.Time
	// TopLayer is the ID of its topmost layer ("" for an image without layers).
	TopLayer string
}

func fromStorage(img *storage.Image) *Image {
	return &Image{
		ID:       img.ID,
		Names:    append([]string(nil), img.Names...),
		Digest:   img.Digest,
		Digests:  append([]digest.Digest(nil), img.Digests...),
		Created:  img.Created,
		TopLayer: img.TopLayer,
	}
}

// ShortID is the first 12 characters of the ID.
func (i *Image) ShortID() string { return shortID(i.ID) }

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Resolve finds an image of the store by full or abbreviated ID, by name
// (normalized: "busybox" finds docker.io/library/busybox:latest), by short
// name through the registries.conf aliases and search registries (as
// podman's local lookup), or by name@digest. It returns an error wrapping
// ErrNotFound when nothing matches.
func (s *Store) Resolve(name string) (*Image, error) {
	img, err := s.resolve(name)
	if err != nil {
		return nil, err
	}
	return fromStorage(img), nil
}

func (s *Store) resolve(name string) (*storage.Image, error) {
	return resolveIn(s.store, s.systemContext(), name)
}

// resolveIn is Resolve on idx, with the registries configuration of sys.
func resolveIn(idx imageIndex, sys *types.SystemContext, name string) (*storage.Image, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty image name", ErrBadReference)
	}
	id := strings.TrimPrefix(name, "sha256:")
	if isHex(id) && len(id) >= 3 {
		img, err := idx.Image(id)
		if err == nil {
			return img, nil
		}
		if !errors.Is(err, storage.ErrImageUnknown) {
			return nil, fmt.Errorf("look up image %s: %w", name, err)
		}
	}
	cands, err := shortnames.ResolveLocally(sys, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadReference, name, err)
	}
	for _, c := range cands {
		img, err := lookupNamed(idx, c)
		if err != nil {
			return nil, err
		}
		if img != nil {
			return img, nil
		}
	}
	return nil, fmt.Errorf("%w: %s (urun images lists the store; urun pull %s fetches it)", ErrNotFound, name, name)
}

// lookupNamed returns the image with that name, or nil.
func lookupNamed(idx imageIndex, named reference.Named) (*storage.Image, error) {
	img, err := idx.Image(named.String())
	if err == nil {
		return img, nil
	}
	if !errors.Is(err, storage.ErrImageUnknown) {
		return nil, fmt.Errorf("look up image %s: %w", named, err)
	}
	dg, ok := named.(reference.Digested)
	if !ok {
		return nil, nil
	}
	imgs, err := idx.ImagesByDigest(dg.Digest())
	if err != nil && !errors.Is(err, storage.ErrImageUnknown) {
		return nil, fmt.Errorf("look up image %s: %w", named, err)
	}
	for _, img := range imgs {
		for _, n := range img.Names {
			if r, err := reference.ParseNormalizedNamed(n); err == nil && r.Name() == named.Name() {
				return img, nil
			}
		}
	}
	return nil, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// NormalizeName turns a name given to tag, import or load into its stored
// form, as podman does: a short name goes under localhost/ ("demo" is
// localhost/demo:latest), and the tag is latest by default.
func NormalizeName(name string) (reference.Named, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty image name", ErrBadReference)
	}
	first, _, hasSlash := strings.Cut(name, "/")
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		name = "localhost/" + name
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadReference, name, err)
	}
	return reference.TagNameOnly(named), nil
}

package image

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/truncindex"
)

// LocalImage is an image of the store as LookupLocal finds it: what a
// container removed when it ends (urun run --rm) needs of it.
type LocalImage struct {
	// ID is the image's ID; GraphRoot the store's graph root (for its
	// lease, package lease).
	ID, GraphRoot string
	// Lowers are the image's layer directories, topmost first (as
	// Lease.Lowers).
	Lowers []string
	// Config is the image's config: its default process and platform.
	Config imgspecv1.Image
}

// LookupLocal finds the image called name (as Resolve does: ID or a
// prefix of it, name, short name, name@digest) in the store o describes,
// and reads its layer directories and config, without opening the store:
// it reads containers-storage's files (images.json, the image's config,
// its top layer's list of lower layers) as their owner, outside urun's
// user namespace. It serves urun run --rm, whose CLI hands the result
// to the monitor, which takes a lease on the image (package lease) and
// needs no store at all; the lease makes sure that the image is still
// there.
//
// containers-storage replaces these files by renames, so each read sees
// one whole version. LookupLocal answers ErrNotFound for an image that
// is not there and another error for one it cannot read this way (an
// incomplete pull, a config that is not the image's ID's): the caller
// then does the full store step, which pulls, or says what is wrong.
func LookupLocal(o Options, name string) (*LocalImage, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	idx, err := readImageIndex(filepath.Join(o.GraphRoot, "overlay-images", "images.json"))
	if err != nil {
		return nil, err
	}
	img, err := resolveIn(idx, &types.SystemContext{SystemRegistriesConfPath: o.RegistriesConf}, name)
	if err != nil {
		return nil, err
	}
	if img.Flags["incomplete"] == true {
		return nil, fmt.Errorf("image %s: an incomplete pull", shortID(img.ID))
	}
	l := &LocalImage{ID: img.ID, GraphRoot: o.GraphRoot}
	// The config is a big-data item under its digest, which is the
	// image's ID (images with a config: OCI and Docker schema 2).
	key := "sha256:" + img.ID
	b, err := os.ReadFile(filepath.Join(o.GraphRoot, "overlay-images", img.ID, bigDataName(key)))
	if err != nil {
		return nil, fmt.Errorf("config of image %s: %w", shortID(img.ID), err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != img.ID {
		return nil, fmt.Errorf("config of image %s: its digest is not the image's ID", shortID(img.ID))
	}
	// Docker schema 2 and OCI configs share the fields read here: as
	// containers/image's OCIConfig, a plain decode.
	if err := json.Unmarshal(b, &l.Config); err != nil {
		return nil, fmt.Errorf("config of image %s: %w", shortID(img.ID), err)
	}
	if img.TopLayer == "" {
		return l, nil
	}
	if l.Lowers, err = overlayLowers(filepath.Join(o.GraphRoot, "overlay"), img.TopLayer); err != nil {
		return nil, fmt.Errorf("layer directories of image %s: %w", shortID(img.ID), err)
	}
	return l, nil
}

// overlayLowers are the directories of layer id and its parents, topmost
// first, as the overlay driver's Metadata gives them: the layer's diff,
// then those of the layers its "lower-layers" file names, or else those
// its "lower" file's links lead to (none for a base layer).
func overlayLowers(home, id string) ([]string, error) {
	if !validLayerID(id) {
		return nil, fmt.Errorf("bad layer ID %q", id)
	}
	diff := func(id string) string { return filepath.Join(home, id, "diff") }
	dirs := []string{diff(id)}
	b, err := os.ReadFile(filepath.Join(home, id, "lower-layers"))
	if err == nil {
		for _, l := range strings.Split(string(b), ":") {
			if !validLayerID(l) {
				return nil, fmt.Errorf("layer %s: bad entry %q in lower-layers", shortID(id), l)
			}
			dirs = append(dirs, diff(l))
		}
		return dirs, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b, err = os.ReadFile(filepath.Join(home, id, "lower"))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(dirs[0]); err != nil {
			return nil, err
		}
		return dirs, nil
	}
	if err != nil {
		return nil, err
	}
	for _, link := range strings.Split(string(b), ":") {
		// l/NAME -> ../ID/diff
		lp, err := os.Readlink(filepath.Join(home, link))
		if err != nil {
			return nil, err
		}
		l := filepath.Base(filepath.Dir(lp))
		if !validLayerID(l) {
			return nil, fmt.Errorf("layer %s: link %s leads to %q, not a layer", shortID(id), link, lp)
		}
		dirs = append(dirs, diff(l))
	}
	return dirs, nil
}

// validLayerID reports whether id can name a layer directory.
func validLayerID(id string) bool {
	return id != "" && id != "." && id != ".." && id != "l" && !strings.ContainsRune(id, '/')
}

// bigDataName is the file name containers-storage gives a big-data item
// (makeBigDataBaseName): the key itself when it has only [.0-9a-z], else
// "=" and its base64.
func bigDataName(key string) string {
	for _, c := range key {
		if c != '.' && (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return "=" + base64.StdEncoding.EncodeToString([]byte(key))
		}
	}
	return key
}

// imageIndex is what resolving a name needs of the store: a
// containers-storage Store, or imageFile read by LookupLocal.
type imageIndex interface {
	// Image finds an image by ID, name or unique ID prefix
	// (storage.ErrImageUnknown if none).
	Image(id string) (*storage.Image, error)
	// ImagesByDigest lists the images a manifest digest names.
	ImagesByDigest(d digest.Digest) ([]*storage.Image, error)
}

var _ imageIndex = storage.Store(nil)

// imageFile is containers-storage's images.json, indexed as its image
// store indexes it.
type imageFile struct {
	byID, byName map[string]*storage.Image
	byDigest     map[digest.Digest][]*storage.Image
	ids          *truncindex.TruncIndex
}

var _ imageIndex = (*imageFile)(nil)

// readImageIndex reads images.json at path (a missing file is an empty
// store).
func readImageIndex(path string) (*imageFile, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the image list: %w", err)
	}
	var imgs []*storage.Image
	if len(b) > 0 {
		if err := json.Unmarshal(b, &imgs); err != nil {
			return nil, fmt.Errorf("read the image list %s: %w", path, err)
		}
	}
	f := &imageFile{byID: map[string]*storage.Image{}, byName: map[string]*storage.Image{}, byDigest: map[digest.Digest][]*storage.Image{}}
	ids := make([]string, 0, len(imgs))
	for _, img := range imgs {
		f.byID[img.ID] = img
		ids = append(ids, img.ID)
		// A name two images claim is the last one's, as the store's load
		// decides (and saves).
		for _, n := range img.Names {
			f.byName[n] = img
		}
		// The digests the store computes (recomputeDigests): Digest,
		// then those of the manifests among the big data.
		seen := map[digest.Digest]bool{}
		for _, d := range append([]digest.Digest{img.Digest}, manifestDigests(img)...) {
			if d == "" || seen[d] {
				continue
			}
			seen[d] = true
			img.Digests = append(img.Digests, d)
			f.byDigest[d] = append(f.byDigest[d], img)
		}
	}
	f.ids = truncindex.NewTruncIndex(ids)
	return f, nil
}

func manifestDigests(img *storage.Image) []digest.Digest {
	var ds []digest.Digest
	for n, d := range img.BigDataDigests {
		if strings.HasPrefix(n, storage.ImageDigestManifestBigDataNamePrefix) {
			ds = append(ds, d)
		}
	}
	return ds
}

func (f *imageFile) Image(id string) (*storage.Image, error) {
	if img, ok := f.byID[id]; ok {
		return img, nil
	}
	if img, ok := f.byName[id]; ok {
		return img, nil
	}
	if long, err := f.ids.Get(id); err == nil {
		if img, ok := f.byID[long]; ok {
			return img, nil
		}
	}
	return nil, fmt.Errorf("locating image with ID %q: %w", id, storage.ErrImageUnknown)
}

func (f *imageFile) ImagesByDigest(d digest.Digest) ([]*storage.Image, error) {
	if imgs, ok := f.byDigest[d]; ok {
		return imgs, nil
	}
	return nil, fmt.Errorf("locating image with digest %q: %w", d, storage.ErrImageUnknown)
}

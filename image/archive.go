package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	ociarchive "go.podman.io/image/v5/oci/archive"
	"go.podman.io/image/v5/pkg/compression"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/tarball"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// Config is the new image's default process: Entrypoint, Cmd, Env,
	// WorkingDir, User, Labels...
	Config imgspecv1.ImageConfig
	// Report receives progress (see PullOptions.Report).
	Report io.Writer
}

// Import makes a single-layer image of a root file system tarball
// (uncompressed, gzip, bzip2, xz or zstd) and names it name (see
// NormalizeName; "" leaves it unnamed). The platform is the host's.
func (s *Store) Import(ctx context.Context, tarPath, name string, o ImportOptions) (*Image, error) {
	if st, err := os.Stat(tarPath); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("import %s: not a regular file (give a tarball of a root file system)", tarPath)
	}
	var named reference.Named
	if name != "" {
		n, err := NormalizeName(name)
		if err != nil {
			return nil, err
		}
		named = n
	}
	if err := s.ensureTempDir(); err != nil {
		return nil, err
	}
	src, err := tarball.NewReference([]string{tarPath}, nil)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", tarPath, err)
	}
	now := time.Now().UTC()
	cfg := imgspecv1.Image{
		Created:  &now,
		Platform: imgspecv1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH},
		Config:   o.Config,
		History:  []imgspecv1.History{{Created: &now, CreatedBy: "urun import " + filepath.Base(tarPath)}},
	}
	if err := src.(tarball.ConfigUpdater).ConfigUpdate(cfg, nil); err != nil {
		return nil, fmt.Errorf("import %s: %w", tarPath, err)
	}
	img, err := s.copyIn(ctx, s.systemContext(), src, named, o.Report)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", tarPath, err)
	}
	return img, nil
}

// ArchiveFormat is the format of Save's output.
type ArchiveFormat string

// Archive formats.
const (
	// DockerArchive is docker save's format; it holds several images.
	DockerArchive ArchiveFormat = "docker-archive"
	// OCIArchive is a tar of an OCI image layout; it holds one image.
	OCIArchive ArchiveFormat = "oci-archive"
)

// ParseArchiveFormat checks a --format value.
func ParseArchiveFormat(s string) (ArchiveFormat, error) {
	switch f := ArchiveFormat(s); f {
	case DockerArchive, OCIArchive:
		return f, nil
	case "":
		return DockerArchive, nil
	}
	return "", fmt.Errorf("bad archive format %q: use docker-archive or oci-archive", s)
}

// Save writes the images called names to w as one archive of format. It
// stages the archive in the store's temporary directory, so a failure
// writes nothing.
func (s *Store) Save(ctx context.Context, names []string, format ArchiveFormat, w io.Writer, report io.Writer) error {
	if len(names) == 0 {
		return fmt.Errorf("save: no image named")
	}
	if format == OCIArchive && len(names) > 1 {
		return fmt.Errorf("save: an oci-archive holds one image, %d given (use --format docker-archive)", len(names))
	}
	if err := s.ensureTempDir(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(s.pullTempDir(), "save-")
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "archive.tar")
	if err := s.saveTo(ctx, names, format, path, report); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("save: write archive: %w", err)
	}
	return nil
}

// SaveFile is Save into the file path, written under a temporary name and
// renamed into place.
func (s *Store) SaveFile(ctx context.Context, names []string, format ArchiveFormat, path string, report io.Writer) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = s.Save(ctx, names, format, f, report)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("save: %w", cerr)
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

func (s *Store) saveTo(ctx context.Context, names []string, format ArchiveFormat, path string, report io.Writer) error {
	sys := s.systemContext()
	pc, err := s.policyContext(sys)
	if err != nil {
		return err
	}
	defer pc.Destroy()
	copyOut := func(img *Image, dest types.ImageReference) error {
		src, err := istorage.Transport.NewStoreReference(s.store, nil, img.ID)
		if err != nil {
			return fmt.Errorf("store reference: %w", err)
		}
		if _, err := copy.Image(ctx, pc, dest, src, &copy.Options{ReportWriter: report, SourceCtx: sys, DestinationCtx: sys}); err != nil {
			return fmt.Errorf("save image %s: %w", img.ShortID(), err)
		}
		return nil
	}
	if format == OCIArchive {
		img, err := s.Resolve(names[0])
		if err != nil {
			return err
		}
		refName := ""
		if t := s.tagFor(img, names[0]); t != nil {
			refName = t.String()
		}
		dest, err := ociarchive.NewReference(path, refName)
		if err != nil {
			return fmt.Errorf("save: %w", err)
		}
		return copyOut(img, dest)
	}
	w, err := dockerarchive.NewWriter(sys, path)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	for _, n := range names {
		img, err := s.Resolve(n)
		if err != nil {
			w.Close()
			return err
		}
		dest, err := w.NewReference(s.tagFor(img, n))
		if err == nil {
			err = copyOut(img, dest)
		}
		if err != nil {
			w.Close()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

// tagFor is the name an image is saved under: the name the user gave if
// it is one of the image's, else its first tagged name, else none.
func (s *Store) tagFor(img *Image, given string) reference.NamedTagged {
	var cands []string
	if n, err := s.resolve(given); err == nil {
		if name, ok := s.nameOf(n, given); ok {
			cands = append(cands, name)
		}
	}
	cands = append(cands, img.Names...)
	for _, c := range cands {
		r, err := reference.ParseNormalizedNamed(c)
		if err != nil {
			continue
		}
		if t, ok := r.(reference.NamedTagged); ok {
			return t
		}
	}
	return nil
}

// Load stores the images of a docker-archive or oci-archive file (found
// out from its content; it may be compressed) and returns them.
func (s *Store) Load(ctx context.Context, path string, report io.Writer) ([]*Image, error) {
	kind, ociName, err := sniffArchive(path)
	if err != nil {
		return nil, err
	}
	if err := s.ensureTempDir(); err != nil {
		return nil, err
	}
	sys := s.systemContext()
	if kind == OCIArchive {
		src, err := ociarchive.NewReference(path, "")
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", path, err)
		}
		var named reference.Named
		if strings.Contains(ociName, "/") {
			if r, err := reference.ParseNormalizedNamed(ociName); err == nil {
				named = reference.TagNameOnly(r)
			}
		}
		img, err := s.copyIn(ctx, sys, src, named, report)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", path, err)
		}
		return []*Image{img}, nil
	}
	r, err := dockerarchive.NewReader(sys, path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer r.Close()
	lists, err := r.List()
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	var out []*Image
	for _, refs := range lists {
		if len(refs) == 0 {
			continue
		}
		img, err := s.copyIn(ctx, sys, refs[0], refs[0].DockerReference(), report)
		if err != nil {
			return out, fmt.Errorf("load %s: %s: %w", path, transports.ImageName(refs[0]), err)
		}
		var more []string
		for _, ref := range refs[1:] {
			if n := ref.DockerReference(); n != nil {
				more = append(more, n.String())
			}
		}
		if len(more) > 0 {
			if err := s.store.AddNames(img.ID, more); err != nil {
				return out, fmt.Errorf("load %s: name image %s: %w", path, img.ShortID(), err)
			}
			img.Names = append(img.Names, more...)
		}
		out = append(out, img)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load %s: the archive holds no image", path)
	}
	return out, nil
}

// sniffArchive tells a docker-archive (manifest.json) from an oci-archive
// (index.json and oci-layout), and returns the oci-archive's ref name.
func sniffArchive(path string) (ArchiveFormat, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	r, _, err := compression.AutoDecompress(f)
	if err != nil {
		return "", "", fmt.Errorf("load %s: %w", path, err)
	}
	defer r.Close()
	tr := tar.NewReader(r)
	var index []byte
	layout := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", "", fmt.Errorf("load %s: not a tar archive: %w", path, err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "manifest.json":
			return DockerArchive, "", nil
		case "oci-layout":
			layout = true
		case "index.json":
			if index, err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
				return "", "", fmt.Errorf("load %s: %w", path, err)
			}
		}
	}
	if !layout || index == nil {
		return "", "", fmt.Errorf("load %s: neither a docker-archive (no manifest.json) nor an oci-archive (no oci-layout and index.json)", path)
	}
	var idx imgspecv1.Index
	if err := json.Unmarshal(index, &idx); err != nil {
		return "", "", fmt.Errorf("load %s: index.json: %w", path, err)
	}
	name := ""
	if len(idx.Manifests) == 1 {
		name = idx.Manifests[0].Annotations[imgspecv1.AnnotationRefName]
	}
	return OCIArchive, name, nil
}

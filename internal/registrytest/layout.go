package registrytest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecs "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Entry is one tar entry of a layer. Type defaults to a regular file;
// Mode to 0644 for files and 0755 for directories.
type Entry struct {
	Name     string
	Type     byte
	Mode     int64
	Body     []byte
	Link     string
	UID, GID int
}

// Layer is a layer's entries in order.
type Layer []Entry

// Dir, File, Symlink and Whiteout make entries.
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir} }

// File is a regular file.
func File(name, body string) Entry { return Entry{Name: name, Body: []byte(body)} }

// Symlink is a symbolic link to target.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Link: target}
}

// Whiteout deletes name of lower layers (OCI ".wh." entry).
func Whiteout(name string) Entry {
	return File(filepath.Join(filepath.Dir(name), ".wh."+filepath.Base(name)), "")
}

// Opaque hides what lower layers hold in dir (OCI ".wh..wh..opq").
func Opaque(dir string) Entry { return File(filepath.Join(dir, ".wh..wh..opq"), "") }

// Image is one image to build.
type Image struct {
	Layers []Layer
	Config imgspecv1.ImageConfig
	// OS, Arch, Variant default to linux and the host's architecture.
	OS, Arch, Variant string
}

// WriteTar writes l as an uncompressed tar stream.
func WriteTar(w io.Writer, l Layer) error {
	tw := tar.NewWriter(w)
	mtime := time.Unix(1700000000, 0)
	for _, e := range l {
		h := &tar.Header{
			Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Link,
			Uid: e.UID, Gid: e.GID, ModTime: mtime, Format: tar.FormatPAX,
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar %s: %w", e.Name, err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(e.Body); err != nil {
				return fmt.Errorf("tar %s: %w", e.Name, err)
			}
		}
	}
	return tw.Close()
}

// Busybox is a root file system layer: /bin/busybox from Debian's
// busybox-static with a symlink per applet, /etc/passwd and /etc/group
// with root and app (1000:1000), and the usual empty directories.
func Busybox() (Layer, error) {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox-static: %w (install the Debian package busybox-static)", err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	l := Layer{Dir("bin"), {Name: "bin/busybox", Body: bin, Mode: 0o755}}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			l = append(l, Symlink("bin/"+a, "busybox"))
		}
	}
	l = append(l,
		Dir("etc"),
		File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"),
		File("etc/group", "root:x:0:\napp:x:1000:\n"),
		Dir("root"), Dir("home"), Entry{Name: "home/app", Type: tar.TypeDir, UID: 1000, GID: 1000},
		Entry{Name: "tmp", Type: tar.TypeDir, Mode: 0o1777},
		Dir("proc"), Dir("sys"), Dir("dev"),
	)
	return l, nil
}

// WriteLayout writes an OCI image layout into dir (created if needed) with
// the images under the ref name tag: one image as a manifest, several as
// an index of their manifests.
func WriteLayout(dir, tag string, imgs ...Image) error {
	if len(imgs) == 0 {
		return fmt.Errorf("no image")
	}
	w := layoutWriter{dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	var descs []imgspecv1.Descriptor
	for _, img := range imgs {
		d, err := w.image(img)
		if err != nil {
			return err
		}
		descs = append(descs, d)
	}
	top := descs[0]
	if len(imgs) > 1 {
		idx := imgspecv1.Index{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: descs}
		d, err := w.json(imgspecv1.MediaTypeImageIndex, idx)
		if err != nil {
			return err
		}
		top = d
	}
	top.Platform = nil
	top.Annotations = map[string]string{imgspecv1.AnnotationRefName: tag}
	index := imgspecv1.Index{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: []imgspecv1.Descriptor{top}}
	b, err := json.Marshal(index)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, imgspecv1.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

type layoutWriter struct{ dir string }

func (w layoutWriter) blob(mediaType string, b []byte) (imgspecv1.Descriptor, error) {
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(w.dir, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
		return imgspecv1.Descriptor{}, err
	}
	return imgspecv1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}

func (w layoutWriter) json(mediaType string, v any) (imgspecv1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return imgspecv1.Descriptor{}, err
	}
	return w.blob(mediaType, b)
}

// image writes an image's layers, config and manifest, and returns the
// manifest's descriptor with its platform.
func (w layoutWriter) image(img Image) (imgspecv1.Descriptor, error) {
	plat := imgspecv1.Platform{OS: img.OS, Architecture: img.Arch, Variant: img.Variant}
	if plat.OS == "" {
		plat.OS = "linux"
	}
	if plat.Architecture == "" {
		plat.Architecture = runtime.GOARCH
	}
	created := time.Unix(1700000000, 0).UTC()
	cfg := imgspecv1.Image{Created: &created, Platform: plat, Config: img.Config, RootFS: imgspecv1.RootFS{Type: "layers"}}
	var layers []imgspecv1.Descriptor
	for i, l := range img.Layers {
		gz, diffID, err := compressLayer(l)
		if err != nil {
			return imgspecv1.Descriptor{}, err
		}
		d, err := w.blob(imgspecv1.MediaTypeImageLayerGzip, gz)
		if err != nil {
			return imgspecv1.Descriptor{}, err
		}
		layers = append(layers, d)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		cfg.History = append(cfg.History, imgspecv1.History{Created: &created, CreatedBy: fmt.Sprintf("registrytest layer %d", i)})
	}
	cd, err := w.json(imgspecv1.MediaTypeImageConfig, cfg)
	if err != nil {
		return imgspecv1.Descriptor{}, err
	}
	m := imgspecv1.Manifest{Versioned: imgspecs.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageManifest, Config: cd, Layers: layers}
	md, err := w.json(imgspecv1.MediaTypeImageManifest, m)
	if err != nil {
		return imgspecv1.Descriptor{}, err
	}
	md.Platform = &plat
	return md, nil
}

// compressLayer returns the gzip blob of l (deterministic: the same
// entries give the same blob) and its diff ID.
func compressLayer(l Layer) ([]byte, digest.Digest, error) {
	var raw, gz bytes.Buffer
	if err := WriteTar(&raw, l); err != nil {
		return nil, "", err
	}
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), digest.FromBytes(raw.Bytes()), nil
}

// BlobDigest is the digest of l's blob as WriteLayout writes and a
// registry serves it.
func BlobDigest(l Layer) (digest.Digest, error) {
	gz, _, err := compressLayer(l)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(gz), nil
}

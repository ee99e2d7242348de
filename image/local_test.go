package image_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urun-dev/urun/image"
	rt "github.com/urun-dev/urun/internal/registrytest"
)

// TestLookupLocal: reading an image from the store's files finds what the
// store finds (by name, tag, ID and its prefix, name@digest), with the
// layer directories and config of a lease; a missing image is
// ErrNotFound, an image whose config is not its ID's an error.
func TestLookupLocal(t *testing.T) {
	e := newEnv(t)
	cfg := imgspecv1.ImageConfig{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "true"}, Env: []string{"A=1"}, WorkingDir: "/w", User: "1:2"}
	ref := e.push("test/local", rt.Image{Layers: []rt.Layer{busybox(t), {rt.File("etc/motd", "top\n")}}, Config: cfg})
	img := e.pull(ref)
	ctx := context.Background()
	l, err := e.s.Lease(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := e.s.Tag(ref, "mine/local:v1"); err != nil {
		t.Fatal(err)
	}
	repo := strings.TrimSuffix(ref, ":latest")
	for _, name := range []string{ref, "mine/local:v1", "localhost/mine/local:v1", img.ID, img.ID[:12], "sha256:" + img.ID, repo + "@" + img.Digest.String()} {
		got, err := image.LookupLocal(e.opts, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got.ID != img.ID {
			t.Errorf("%s: image %s, want %s", name, got.ID, img.ID)
		}
		if !slices.Equal(got.Lowers, l.Lowers()) {
			t.Errorf("%s: lowers %v, want the lease's %v", name, got.Lowers, l.Lowers())
		}
		c := got.Config.Config
		if !slices.Equal(c.Entrypoint, cfg.Entrypoint) || !slices.Equal(c.Cmd, cfg.Cmd) || !slices.Contains(c.Env, "A=1") || c.WorkingDir != cfg.WorkingDir || c.User != cfg.User {
			t.Errorf("%s: config %+v, want %+v", name, c, cfg)
		}
		if p := l.Platform(); got.Config.OS != p.OS || got.Config.Architecture != p.Architecture || got.Config.OS == "" {
			t.Errorf("%s: platform %+v, want %+v", name, got.Config.Platform, l.Platform())
		}
		if got.GraphRoot != e.s.GraphRoot() {
			t.Errorf("%s: graph root %s, want %s", name, got.GraphRoot, e.s.GraphRoot())
		}
	}
	if b, err := os.ReadFile(filepath.Join(l.Lowers()[0], "etc/motd")); err != nil || string(b) != "top\n" {
		t.Errorf("top layer: %q %v", b, err)
	}
	for _, name := range []string{"localhost/nosuch", "nosuch:v2", strings.Repeat("f", 64)} {
		if _, err := image.LookupLocal(e.opts, name); !errors.Is(err, image.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := image.LookupLocal(e.opts, "Bad Name"); !errors.Is(err, image.ErrBadReference) {
		t.Errorf("a bad name: %v, want ErrBadReference", err)
	}
	// A config that does not hash to the ID is not taken for it.
	dir := filepath.Join(e.s.GraphRoot(), "overlay-images", img.ID)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	changed := false
	for _, ent := range ents {
		p := filepath.Join(dir, ent.Name())
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), `"WorkingDir":"/w"`) {
			os.WriteFile(p, []byte(strings.Replace(string(b), `"/w"`, `"/x"`, 1)), 0o600)
			changed = true
		}
	}
	if !changed {
		t.Fatalf("no config among %v", ents)
	}
	if _, err := image.LookupLocal(e.opts, ref); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("a config that is not the image's: %v", err)
	}
}

// TestLookupLocalEmptyStore: a store without images has none.
func TestLookupLocalEmptyStore(t *testing.T) {
	o := image.Options{GraphRoot: t.TempDir(), RunRoot: t.TempDir(), MountProgram: "/bin/true", RegistriesConf: filepath.Join(t.TempDir(), "none.conf")}
	os.WriteFile(o.RegistriesConf, []byte("unqualified-search-registries = []\n"), 0o644)
	if _, err := image.LookupLocal(o, "localhost/x"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("empty store: %v, want ErrNotFound", err)
	}
	if err := os.MkdirAll(filepath.Join(o.GraphRoot, "overlay-images"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(o.GraphRoot, "overlay-images", "images.json"), []byte("[{"), 0o600)
	if _, err := image.LookupLocal(o, "localhost/x"); err == nil || errors.Is(err, image.ErrNotFound) {
		t.Errorf("a broken images.json: %v", err)
	}
}

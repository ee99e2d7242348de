package image_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urun-dev/urun/image"
	rt "github.com/urun-dev/urun/internal/registrytest"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

func layerIDs(t *testing.T, s *image.Store) []string {
	t.Helper()
	ls, err := s.Storage().Layers()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	return ids
}

func TestRemoveKeepsSharedLayers(t *testing.T) {
	e := newEnv(t)
	bb := busybox(t)
	refA := e.push("test/a", rt.Image{Layers: []rt.Layer{bb}})
	refB := e.push("test/b", rt.Image{Layers: []rt.Layer{bb, {rt.File("extra", "b")}}})
	a, b := e.pull(refA), e.pull(refB)
	if got := layerIDs(t, e.s); len(got) != 2 {
		t.Fatalf("layers %v, want 2 (the busybox layer shared)", got)
	}
	// A second name: rmi of one name only untags.
	if _, err := e.s.Tag(refB, "mine/b:v1"); err != nil {
		t.Fatal(err)
	}
	if got, err := e.s.Resolve("mine/b:v1"); err != nil || got.ID != b.ID {
		t.Fatalf("resolve the new tag: %v %v", got, err)
	}
	r, err := e.s.Remove("mine/b:v1", false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Deleted != "" || !slices.Equal(r.Untagged, []string{"localhost/mine/b:v1"}) {
		t.Errorf("removal %+v, want only the untag of localhost/mine/b:v1", r)
	}
	// In use by a container: refused, then forced.
	c, err := e.s.NewContainer(context.Background(), b, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Remove(refB, false); !errors.Is(err, image.ErrInUse) {
		t.Fatalf("remove an image in use: %v, want ErrInUse", err)
	}
	r, err = e.s.Remove(refB, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Deleted != b.ID || len(r.Layers) != 1 {
		t.Errorf("removal %+v, want image %s and its own layer", r, b.ID)
	}
	if _, err := e.s.Container(context.Background(), c.ID); !errors.Is(err, image.ErrContainerNotFound) {
		t.Errorf("container of the forced removal: %v", err)
	}
	if got := layerIDs(t, e.s); !slices.Equal(got, []string{a.TopLayer}) {
		t.Errorf("layers after rmi of b: %v, want only a's %s", got, a.TopLayer)
	}
	if _, err := e.s.Resolve(refA); err != nil {
		t.Errorf("a after rmi b: %v", err)
	}
	if _, err := e.s.Remove(a.ID[:12], false); err != nil {
		t.Fatal(err)
	}
	if got := layerIDs(t, e.s); len(got) != 0 {
		t.Errorf("layers after rmi of everything: %v", got)
	}
	if _, err := e.s.Remove(refA, false); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("remove a removed image: %v, want ErrNotFound", err)
	}
}

func TestImport(t *testing.T) {
	e := newEnv(t)
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	var buf bytes.Buffer
	if err := rt.WriteTar(&buf, busybox(t)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := e.s.Import(context.Background(), tarPath, "demo", image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.Names, []string{"localhost/demo:latest"}) {
		t.Errorf("names %v", img.Names)
	}
	got, err := e.s.Resolve("demo")
	if err != nil || got.ID != img.ID {
		t.Fatalf("resolve demo: %v %v", got, err)
	}
	c, err := e.s.NewContainer(context.Background(), img, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.s.RemoveContainer(c.ID)
	if !exists(filepath.Join(c.Lowers()[0], "bin/sh")) {
		t.Error("bin/sh missing from the imported layer")
	}
	_, err = e.s.Import(context.Background(), filepath.Join(t.TempDir(), "nothing.tar"), "x", image.ImportOptions{})
	wantErr(t, err, "nothing.tar", "no such file")
}

func TestSaveLoad(t *testing.T) {
	e := newEnv(t)
	ref := e.push("test/saved", rt.Image{Layers: []rt.Layer{busybox(t), {rt.File("etc/motd", "saved")}}})
	img := e.pull(ref)
	for _, f := range []image.ArchiveFormat{image.DockerArchive, image.OCIArchive} {
		t.Run(string(f), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "img.tar")
			if err := e.s.SaveFile(context.Background(), []string{ref}, f, path, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := e.s.Remove(ref, false); err != nil {
				t.Fatal(err)
			}
			loaded, err := e.s.Load(context.Background(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded) != 1 || loaded[0].ID != img.ID || !slices.Contains(loaded[0].Names, ref) {
				t.Fatalf("loaded %+v, want %s named %s", loaded, img.ID, ref)
			}
			c, err := e.s.NewContainer(context.Background(), loaded[0], "")
			if err != nil {
				t.Fatal(err)
			}
			defer e.s.RemoveContainer(c.ID)
			if b, err := os.ReadFile(filepath.Join(c.Lowers()[0], "etc/motd")); err != nil || string(b) != "saved" {
				t.Errorf("etc/motd after load: %q %v", b, err)
			}
		})
	}
	err := e.s.SaveFile(context.Background(), []string{"no/such:image"}, image.DockerArchive, filepath.Join(t.TempDir(), "x.tar"), nil)
	if !errors.Is(err, image.ErrNotFound) {
		t.Errorf("save of a missing image: %v", err)
	}
	_, err = e.s.Load(context.Background(), "/etc/passwd", nil)
	wantErr(t, err, "/etc/passwd")
}

func TestShortNames(t *testing.T) {
	e := newEnv(t)
	ref := e.push("test/single", rt.Image{Layers: []rt.Layer{busybox(t)}})
	repo := strings.TrimSuffix(ref, ":latest")
	e.writeRegistries("\n[aliases]\n\"mytest\" = \"" + repo + "\"\n")
	img := e.pull("mytest")
	if !slices.Contains(img.Names, ref) {
		t.Errorf("names %v, want %s", img.Names, ref)
	}
	for _, n := range []string{"mytest", "mytest:latest"} {
		if got, err := e.s.Resolve(n); err != nil || got.ID != img.ID {
			t.Errorf("resolve %s: %v %v", n, got, err)
		}
	}
	// No alias and no search registry: the error says what to do.
	_, err := e.s.Pull(context.Background(), "nosuchalias", image.PullOptions{SkipTLSVerify: true})
	wantErr(t, err, "nosuchalias", "fully qualified")
	if _, err := e.s.Resolve("nosuchalias"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("resolve an unknown short name: %v", err)
	}
	// Get pulls only when missing, and never with PullNever.
	if _, err := e.s.Get(context.Background(), "nosuchalias", image.PullNever, image.PullOptions{}); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("get with pull never: %v", err)
	}
	got, err := e.s.Get(context.Background(), "mytest", image.PullMissing, image.PullOptions{})
	if err != nil || got.ID != img.ID {
		t.Errorf("get mytest: %v %v", got, err)
	}
}

func TestPullBadDigest(t *testing.T) {
	e := newEnv(t)
	bb := busybox(t)
	p := rt.NewProxy(t, e.reg)
	e.push("test/bad", rt.Image{Layers: []rt.Layer{bb}})
	blob := layerBlob(t, bb)
	p.Set(blob, rt.Corrupt)
	_, err := e.s.Pull(context.Background(), p.Addr+"/test/bad:latest", image.PullOptions{SkipTLSVerify: true})
	wantErr(t, err, blob.Encoded()[:12], "registry "+p.Addr, "digest")
	if got := names(t, e.s); len(got) != 0 {
		t.Errorf("images after a bad digest: %v", got)
	}
	if got := layerIDs(t, e.s); len(got) != 0 {
		t.Errorf("layers after a bad digest: %v", got)
	}
}

func TestPullInterrupted(t *testing.T) {
	e := newEnv(t)
	bb := busybox(t)
	top := rt.Layer{rt.File("big", strings.Repeat("x", 1<<20))}
	p := rt.NewProxy(t, e.reg)
	e.push("test/cut", rt.Image{Layers: []rt.Layer{bb, top}})
	ref := p.Addr + "/test/cut:latest"
	base, upper := layerBlob(t, bb), layerBlob(t, top)

	t.Run("connection cut", func(t *testing.T) {
		p.Set(base, rt.Cut)
		defer p.Set(base, rt.Pass)
		_, err := e.s.Pull(context.Background(), ref, image.PullOptions{SkipTLSVerify: true})
		wantErr(t, err, "registry "+p.Addr)
		if got := names(t, e.s); len(got) != 0 {
			t.Errorf("images after a cut pull: %v", got)
		}
		if got := layerIDs(t, e.s); len(got) != 0 {
			t.Errorf("layers after a pull cut in the first layer: %v", got)
		}
	})

	t.Run("puller killed", func(t *testing.T) {
		// The top layer stalls; the base layer completes and is committed.
		p.Set(upper, rt.Stall)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd, out := e.helper(ctx, "pull", ref)
		done := p.StartUntilStalled(ctx, t, cmd, out)
		// Bounded poll: the base layer is committed while the top stalls.
		var committed []string
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for len(committed) == 0 {
			committed = layerIDs(t, e.s)
			select {
			case <-tick.C:
			case <-ctx.Done():
				t.Fatal("the base layer was not committed while the top layer stalled")
			}
		}
		cmd.Process.Kill()
		<-done
		if got := names(t, e.s); len(got) != 0 {
			t.Errorf("images after a killed pull: %v", got)
		}
		stale := filepath.Join(e.opts.GraphRoot, "tmp", "pull-"+itoa(cmd.Process.Pid))
		if !exists(stale) {
			t.Errorf("the killed pull left no staging directory %s (the test would not see its removal)", stale)
		}
		baseGets := p.Gets(base)
		p.Set(upper, rt.Pass)
		cmd2, out2 := e.helper(ctx, "pull", ref)
		if err := cmd2.Run(); err != nil {
			t.Fatalf("pull after the kill: %v\n%s", err, out2)
		}
		if exists(stale) {
			t.Errorf("staging directory %s of the killed pull is still there", stale)
		}
		if got := p.Gets(base); got != baseGets {
			t.Errorf("the base layer was downloaded again (%d downloads, %d before): not reused", got, baseGets)
		}
		if got := layerIDs(t, e.s); len(got) != 2 || !slices.Contains(got, committed[0]) {
			t.Errorf("layers %v, want 2 including the reused %s", got, committed[0])
		}
	})

	if got := names(t, e.s); !slices.Equal(got, []string{ref}) {
		t.Errorf("images after the complete pull: %v, want %s", got, ref)
	}
}

func TestConcurrentPulls(t *testing.T) {
	e := newEnv(t)
	ref := e.push("test/conc", rt.Image{Layers: []rt.Layer{busybox(t), {rt.File("f", "2")}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i := range ids {
		cmd, out := e.helper(ctx, "pull", ref)
		wg.Go(func() {
			if err := cmd.Run(); err != nil {
				t.Errorf("pull %d: %v\n%s", i, err, out)
				return
			}
			ids[i] = strings.TrimSpace(out.String())
		})
	}
	wg.Wait()
	if ids[0] == "" || ids[0] != ids[1] {
		t.Errorf("image IDs %q", ids)
	}
	if got := names(t, e.s); !slices.Equal(got, []string{ref}) {
		t.Errorf("images %v, want one %s", got, ref)
	}
	if got := layerIDs(t, e.s); len(got) != 2 {
		t.Errorf("layers %v, want 2", got)
	}
}

func TestPullOtherSources(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	if err := rt.WriteLayout(dir, "v1", rt.Image{Layers: []rt.Layer{busybox(t)}}); err != nil {
		t.Fatal(err)
	}
	img, err := e.s.Pull(context.Background(), "oci:"+dir+":v1", image.PullOptions{Name: "fromoci"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.Names, []string{"localhost/fromoci:latest"}) {
		t.Errorf("names %v", img.Names)
	}
	// Unnamed: stored by ID only.
	anon, err := e.s.Pull(context.Background(), "oci:"+dir+":v1", image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if anon.ID != img.ID {
		t.Errorf("unnamed pull gave %s, want %s", anon.ID, img.ID)
	}
	arch := filepath.Join(t.TempDir(), "a.tar")
	if err := e.s.SaveFile(context.Background(), []string{"fromoci"}, image.DockerArchive, arch, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Remove(img.ID, false); err != nil {
		t.Fatal(err)
	}
	got, err := e.s.Pull(context.Background(), "docker-archive:"+arch, image.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != img.ID || !slices.Contains(got.Names, "localhost/fromoci:latest") {
		t.Errorf("docker-archive pull: %+v", got)
	}
	_, err = e.s.Pull(context.Background(), "oci:"+filepath.Join(dir, "missing")+":v1", image.PullOptions{})
	wantErr(t, err, "missing")
}

func TestPullDiskFull(t *testing.T) {
	e := newEnv(t)
	ref := e.push("test/full", rt.Image{Layers: []rt.Layer{busybox(t)}})
	small := t.TempDir()
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=512k"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	o := e.opts
	o.GraphRoot = filepath.Join(small, "graph")
	s, err := image.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Pull(context.Background(), ref, image.PullOptions{SkipTLSVerify: true})
	wantErr(t, err, "full")
	if got := names(t, s); len(got) != 0 {
		t.Errorf("images after a full disk: %v", got)
	}
}

func TestPullAuth(t *testing.T) {
	testutil.RequireNamespaceRoot(t)
	reg := rt.StartWith(t, rt.Options{User: "alice", Password: "s3cret"})
	e := newEnvWith(t, reg)
	ref := e.push("test/private", rt.Image{Layers: []rt.Layer{busybox(t)}})

	_, err := e.s.Pull(context.Background(), ref, image.PullOptions{SkipTLSVerify: true})
	wantErr(t, err, "log in")

	authJSON := func(user, pass string) []byte {
		return []byte(`{"auths":{"` + reg.Addr + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + `"}}}`)
	}
	// Wrong password: refused, with the same advice.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, authJSON("alice", "wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := e.opts
	o.AuthFile = bad
	s := openStore(t, o)
	_, err = s.Pull(context.Background(), ref, image.PullOptions{SkipTLSVerify: true})
	wantErr(t, err, "log in")

	// Credentials where podman login puts them: $XDG_RUNTIME_DIR/containers/auth.json.
	rundir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rundir)
	if err := os.MkdirAll(filepath.Join(rundir, "containers"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rundir, "containers", "auth.json"), authJSON("alice", "s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Pull(context.Background(), ref, image.PullOptions{SkipTLSVerify: true}); err != nil {
		t.Fatalf("pull with auth.json in XDG_RUNTIME_DIR: %v", err)
	}
}

// TestTwoStoresOneRoot: containers-storage shares one store per root in a
// process; closing one Store leaves the other working.
func TestTwoStoresOneRoot(t *testing.T) {
	e := newEnv(t)
	ref := e.push("test/two", rt.Image{Layers: []rt.Layer{busybox(t)}})
	other, err := image.Open(context.Background(), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	img := e.pull(ref)
	if _, err := e.s.Inspect(context.Background(), img.ID); err != nil {
		t.Fatal(err)
	}
}

// TestLease: a lease gives the image's layer directories and config as a
// container record does, without one; while it is held the image cannot
// be removed (--force neither), after its release it can, and a lease on
// a removed image fails with ErrNotFound.
func TestLease(t *testing.T) {
	e := newEnv(t)
	ref := e.push("test/lease", rt.Image{Layers: []rt.Layer{busybox(t), {rt.File("etc/motd", "top\n")}}})
	img := e.pull(ref)
	ctx := context.Background()
	c, err := e.s.NewContainer(ctx, img, "")
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.s.Lease(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Lowers(), c.Lowers(); len(got) != 2 || !slices.Equal(got, want) {
		t.Errorf("lease lowers %v, want the record's %v", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(l.Lowers()[0], "etc/motd")); err != nil || string(b) != "top\n" {
		t.Errorf("top layer's etc/motd: %q %v", b, err)
	}
	if got, want := l.Config(), c.Config(); !slices.Equal(got.Cmd, want.Cmd) || !slices.Equal(got.Env, want.Env) {
		t.Errorf("lease config %+v, want %+v", got, want)
	}
	if err := e.s.RemoveContainer(c.ID); err != nil {
		t.Fatal(err)
	}
	for _, force := range []bool{false, true} {
		if _, err := e.s.Remove(ref, force); !errors.Is(err, image.ErrInUse) {
			t.Errorf("remove a leased image (force %t): %v, want ErrInUse", force, err)
		}
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Remove(ref, false); err != nil {
		t.Fatalf("remove after the lease's release: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.s.GraphRoot(), "urun-leases", img.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lease file of the removed image: %v", err)
	}
	if _, err := e.s.Lease(ctx, img); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("lease on a removed image: %v, want ErrNotFound", err)
	}
}

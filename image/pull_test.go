package image_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urun-dev/urun/image"
	rt "github.com/urun-dev/urun/internal/registrytest"
	"github.com/urun-dev/urun/internal/testutil"
)

// mountUnion mounts a container's layers with ufs in overlay mode, as the
// runtime does with fusefs, and unmounts at the end of the test.
func mountUnion(t *testing.T, ufs string, c *image.Container) string {
	t.Helper()
	testutil.RequireFUSE(t)
	mnt := t.TempDir()
	opts := "lowerdir=" + strings.Join(c.Lowers(), ":") + ",upperdir=" + c.Upper() + ",workdir=" + c.Work()
	if out, err := exec.Command(ufs, "mount", "-o", opts, mnt).CombinedOutput(); err != nil {
		t.Fatalf("ufs mount: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ufs, "unmount", mnt).CombinedOutput(); err != nil {
			t.Errorf("ufs unmount: %v\n%s", err, out)
		}
	})
	return mnt
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func TestPullByTagAndDigest(t *testing.T) {
	e := newEnv(t)
	ref := e.push("test/single", rt.Image{Layers: []rt.Layer{busybox(t)}})
	img := e.pull(ref)
	if !slices.Contains(img.Names, ref) {
		t.Errorf("names %v, want %s", img.Names, ref)
	}
	for _, n := range []string{ref, img.ID, img.ID[:12], strings.TrimSuffix(ref, ":latest"), ref[:strings.LastIndex(ref, ":")] + "@" + img.Digest.String()} {
		got, err := e.s.Resolve(n)
		if err != nil {
			t.Errorf("resolve %s: %v", n, err)
		} else if got.ID != img.ID {
			t.Errorf("resolve %s: %s, want %s", n, got.ID, img.ID)
		}
	}
	byDigest := ref[:strings.LastIndex(ref, ":")] + "@" + img.Digest.String()
	img2 := e.pull(byDigest)
	if img2.ID != img.ID {
		t.Errorf("pull by digest: image %s, want %s", img2.ID, img.ID)
	}
	if got := names(t, e.s); len(got) < 1 || !slices.Contains(got, ref) {
		t.Errorf("images: %v", got)
	}
	imgs, err := e.s.Images()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Size < 1<<20 {
		t.Errorf("images: %+v, want one image of at least 1 MiB", imgs)
	}

	c, err := e.s.NewContainer(context.Background(), img, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Lowers()) != 1 {
		t.Fatalf("lowers %v, want 1", c.Lowers())
	}
	bb, err := os.Stat(filepath.Join(c.Lowers()[0], "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if bb.Mode()&0o111 == 0 {
		t.Errorf("bin/busybox mode %v", bb.Mode())
	}
	// Owners are kept: home/app is 1000:1000 inside the namespace.
	st, err := os.Stat(filepath.Join(c.Lowers()[0], "home/app"))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 1000 || sys.Gid != 1000 {
		t.Errorf("home/app owned by %d:%d, want 1000:1000", sys.Uid, sys.Gid)
	}
	if _, err := e.s.NewContainer(context.Background(), img, "c1"); err == nil {
		t.Error("a second container named c1 was created")
	}
	if err := e.s.RemoveContainer(c.ID); err != nil {
		t.Fatal(err)
	}
	if exists(c.Upper()) {
		t.Errorf("upper %s left after RemoveContainer", c.Upper())
	}
	if _, err := e.s.Container(context.Background(), c.ID); !errors.Is(err, image.ErrContainerNotFound) {
		t.Errorf("removed container: %v", err)
	}
}

func TestPullWhiteoutsAndOpaque(t *testing.T) {
	e := newEnv(t)
	lower := append(busybox(t),
		rt.Dir("data"), rt.File("data/keep", "keep"), rt.File("data/gone", "gone"),
		rt.Dir("opq"), rt.File("opq/old1", "1"), rt.Dir("opq/sub"), rt.File("opq/sub/old2", "2"))
	upper := rt.Layer{rt.Dir("data"), rt.Whiteout("data/gone"), rt.Dir("opq"), rt.Opaque("opq"), rt.File("opq/new", "new")}
	ref := e.push("test/layered", rt.Image{Layers: []rt.Layer{lower, upper}})
	img := e.pull(ref)
	c, err := e.s.NewContainer(context.Background(), img, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.s.RemoveContainer(c.ID) })
	if len(c.Lowers()) != 2 {
		t.Fatalf("lowers %v, want 2", c.Lowers())
	}
	// Topmost first: the upper layer's whiteouts, in the aufs format that
	// containers-storage writes when a mount_program is set.
	for _, p := range []string{"data/.wh.gone", "opq/.wh..wh..opq"} {
		if !exists(filepath.Join(c.Lowers()[0], p)) {
			t.Errorf("%s missing from the top layer %s", p, c.Lowers()[0])
		}
	}
	check := func(root string) {
		t.Helper()
		for p, want := range map[string]bool{
			"data/keep": true, "data/gone": false, "opq/new": true,
			"opq/old1": false, "opq/sub": false, "bin/busybox": true,
		} {
			if got := exists(filepath.Join(root, p)); got != want {
				t.Errorf("%s in the union: present=%v, want %v", p, got, want)
			}
		}
	}
	check(mountUnion(t, e.opts.MountProgram, c))

	// The podman path: the overlay driver mounts through ufs.
	mnt, err := e.s.Storage().Mount(c.ID, "")
	if err != nil {
		t.Fatalf("store mount through ufs: %v", err)
	}
	check(mnt)
	if _, err := e.s.Storage().Unmount(c.ID, true); err != nil {
		t.Fatalf("store unmount: %v", err)
	}
}

func TestImageConfig(t *testing.T) {
	e := newEnv(t)
	cfg := imgspecv1.ImageConfig{
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{"echo hello"},
		Env:        []string{"PATH=/bin", "GREETING=hi"},
		WorkingDir: "/home/app",
		User:       "1000:1000",
		Labels:     map[string]string{"purpose": "test"},
	}
	ref := e.push("test/config", rt.Image{Layers: []rt.Layer{busybox(t)}, Config: cfg})
	img := e.pull(ref)
	c, err := e.s.NewContainer(context.Background(), img, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.s.RemoveContainer(c.ID)
	got := c.Config()
	if !slices.Equal(got.Entrypoint, cfg.Entrypoint) || !slices.Equal(got.Cmd, cfg.Cmd) ||
		!slices.Equal(got.Env, cfg.Env) || got.WorkingDir != cfg.WorkingDir || got.User != cfg.User || got.Labels["purpose"] != "test" {
		t.Errorf("config %+v, want %+v", got, cfg)
	}
	in, err := e.s.Inspect(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != img.ID || in.Config.User != "1000:1000" || in.Architecture != runtime.GOARCH || len(in.Layers) != 1 || len(in.RootFS.DiffIDs) != 1 {
		t.Errorf("inspect: %+v", in)
	}
	if !slices.Contains(in.RepoTags, ref) || len(in.RepoDigests) == 0 {
		t.Errorf("inspect names: tags %v digests %v", in.RepoTags, in.RepoDigests)
	}
}

func TestPullMultiArch(t *testing.T) {
	e := newEnv(t)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	bb := busybox(t)
	mk := func(arch string) rt.Image {
		return rt.Image{Arch: arch, Layers: []rt.Layer{bb, {rt.File("arch", arch)}}}
	}
	ref := e.push("test/multi", mk(other), mk(runtime.GOARCH))
	img := e.pull(ref)
	c, err := e.s.NewContainer(context.Background(), img, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.s.RemoveContainer(c.ID)
	b, err := os.ReadFile(filepath.Join(c.Lowers()[0], "arch"))
	if err != nil || string(b) != runtime.GOARCH {
		t.Errorf("arch file %q (%v), want %s", b, err, runtime.GOARCH)
	}
	in, err := e.s.Inspect(context.Background(), img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if in.Architecture != runtime.GOARCH {
		t.Errorf("architecture %s, want %s", in.Architecture, runtime.GOARCH)
	}
	// Another platform on request.
	o, err := e.s.Pull(context.Background(), ref, image.PullOptions{SkipTLSVerify: true, Arch: other})
	if err != nil {
		t.Fatal(err)
	}
	if o.ID == img.ID {
		t.Error("the other platform's pull gave the host's image")
	}

	// An index without the host's platform says so.
	ref2 := e.push("test/foreign", mk("s390x"), mk("riscv64"))
	_, err = e.s.Pull(context.Background(), ref2, image.PullOptions{SkipTLSVerify: true})
	wantErr(t, err, "test/foreign", runtime.GOARCH, "--platform")
}

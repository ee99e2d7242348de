package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urun-dev/urun/image"
	rt "github.com/urun-dev/urun/internal/registrytest"
	"github.com/urun-dev/urun/internal/testutil"
	"golang.org/x/sys/unix"
)

// imageCLI runs the urun binary on a store in temporary directories, as
// an unprivileged user (urun enters its user namespace itself) or as root.
type imageCLI struct {
	t    *testing.T
	bin  string
	g    *globals
	args []string
}

func newImageCLI(t *testing.T, reg *rt.Registry, registriesExtra string) *imageCLI {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	body := fmt.Sprintf("unqualified-search-registries = []\n\n[[registry]]\nlocation = %q\ninsecure = true\n%s", reg.Addr, registriesExtra)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// urun.conf names the ufs under test (urun would look beside itself).
	cfg := filepath.Join(dir, "urun.conf")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[storage]\nmount_program = %q\n", testutil.UfsBin(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	g := &globals{storeGlobals: storeGlobals{
		Config: cfg, GraphRoot: filepath.Join(dir, "graph"), RunRoot: filepath.Join(dir, "run"), RegistriesConf: conf,
	}}
	c := &imageCLI{t: t, bin: testutil.UrunBin(t), g: g, args: g.storeArgs()}
	// The store's files belong to subordinate ids: remove them from
	// inside the user namespace, before TempDir's own clean-up.
	t.Cleanup(func() {
		if out, err := c.try("unshare", "rm", "-rf", filepath.Join(dir, "graph")); err != nil {
			t.Errorf("remove the store: %v\n%s", err, out)
		}
	})
	return c
}

func (c *imageCLI) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, append(append([]string{}, c.args...), args...)...)
	return cmd
}

// run runs urun and fails the test unless it exits 0; it returns stdout.
func (c *imageCLI) run(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("urun %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *imageCLI) try(args ...string) (string, error) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := c.cmd(context.Background(), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

func (c *imageCLI) imageNames() []string {
	c.t.Helper()
	var imgs []struct{ Names []string }
	if err := json.Unmarshal([]byte(c.run("images", "--format", "json")), &imgs); err != nil {
		c.t.Fatal(err)
	}
	var names []string
	for _, i := range imgs {
		names = append(names, i.Names...)
	}
	return names
}

func pushBusybox(t *testing.T, reg *rt.Registry, repo string, extra ...rt.Layer) string {
	t.Helper()
	bb, err := rt.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	img := rt.Image{Layers: append([]rt.Layer{bb}, extra...), Config: imageConfigForTest()}
	if err := rt.WriteLayout(dir, "latest", img); err != nil {
		t.Fatal(err)
	}
	return reg.Push(t, dir, "latest", repo)
}

func TestImageCommands(t *testing.T) {
	testutil.Integration(t)
	reg := rt.Start(t)
	ref := pushBusybox(t, reg, "test/cli")
	c := newImageCLI(t, reg, fmt.Sprintf("\n[aliases]\n\"clitest\" = %q\n", strings.TrimSuffix(ref, ":latest")))

	id := strings.TrimSpace(c.run("pull", "-q", "--tls-verify=false", "clitest"))
	if len(id) != 64 {
		t.Fatalf("pull printed %q, want an image ID", id)
	}
	if got := c.imageNames(); len(got) != 1 || got[0] != ref {
		t.Fatalf("images: %v, want [%s]", got, ref)
	}
	if out := c.run("images"); !strings.Contains(out, strings.TrimSuffix(ref, ":latest")) || !strings.Contains(out, id[:12]) {
		t.Errorf("images table:\n%s", out)
	}
	var in []struct {
		ID     string
		Config struct{ User, WorkingDir string }
	}
	if err := json.Unmarshal([]byte(c.run("inspect", "clitest")), &in); err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 || in[0].ID != id || in[0].Config.User != "1000" || in[0].Config.WorkingDir != "/home/app" {
		t.Errorf("inspect: %+v", in)
	}

	c.run("tag", "clitest", "mine:v1")
	archive := filepath.Join(t.TempDir(), "img.tar")
	c.run("save", "-q", "-o", archive, "mine:v1")
	out := c.run("rmi", "mine:v1")
	if !strings.Contains(out, "Untagged: localhost/mine:v1") || strings.Contains(out, "Deleted") {
		t.Errorf("rmi of one of two names:\n%s", out)
	}
	if out := c.run("rmi", ref); !strings.Contains(out, "Deleted: "+id) {
		t.Errorf("rmi:\n%s", out)
	}
	if got := c.imageNames(); len(got) != 0 {
		t.Fatalf("images after rmi: %v", got)
	}
	if out := c.run("load", "-q", "-i", archive); !strings.Contains(out, "Loaded image: localhost/mine:v1") {
		t.Errorf("load:\n%s", out)
	}

	// import of a root file system tarball, with --change.
	var tarBuf bytes.Buffer
	bb, _ := rt.Busybox()
	if err := rt.WriteTar(&tarBuf, bb); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(tarPath, tarBuf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c.run("import", "-q", "--change", `CMD ["/bin/echo", "hi"]`, tarPath, "imported")
	in = nil
	if err := json.Unmarshal([]byte(c.run("inspect", "imported")), &in); err != nil {
		t.Fatal(err)
	}
	if len(in) != 1 {
		t.Fatalf("inspect imported: %+v", in)
	}

	// Errors say what is wrong.
	if out, err := c.try("rmi", "nosuch"); err == nil || !strings.Contains(out, "nosuch") {
		t.Errorf("rmi nosuch: %v\n%s", err, out)
	}
	if out, err := c.try("pull", "-q", "--tls-verify=false", "unaliased"); err == nil || !strings.Contains(out, "fully qualified") {
		t.Errorf("pull of an unknown short name: %v\n%s", err, out)
	}
	if out, err := c.try("pull", "-q", "127.0.0.1:1/x:latest"); err == nil || !strings.Contains(out, "127.0.0.1:1") || !strings.Contains(out, "unreachable") {
		t.Errorf("pull from an unreachable registry: %v\n%s", err, out)
	}
	plain := strings.Replace(ref, "127.0.0.1", "localhost", 1) // not marked insecure
	if out, err := c.try("pull", "-q", plain); err == nil || !strings.Contains(out, "--tls-verify=false") {
		t.Errorf("pull over HTTPS from a plain-HTTP registry: %v\n%s", err, out)
	}
	if out, err := c.try("pull", "-q", "--tls-verify=false", strings.Replace(ref, ":latest", ":nosuchtag", 1)); err == nil || !strings.Contains(out, "no such image or tag") {
		t.Errorf("pull of a missing tag: %v\n%s", err, out)
	}
}

// TestPullInterruptedBySignal: SIGINT to the process group (as a
// terminal sends it) or SIGTERM to urun alone during a pull ends urun
// with no image stored and its staging directory removed (the run inside
// the user namespace shut down cleanly), and the next pull completes.
func TestPullInterruptedBySignal(t *testing.T) {
	testutil.Integration(t)
	reg := rt.Start(t)
	bb, err := rt.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	p := rt.NewProxy(t, reg)
	pushBusybox(t, reg, "test/sig")
	ref := p.Addr + "/test/sig:latest"
	c := newImageCLI(t, reg, "")
	c.run("images") // the store exists
	for _, tc := range []struct {
		name  string
		group bool
		sig   syscall.Signal
	}{
		{"SIGINT to the group", true, syscall.SIGINT},
		{"SIGTERM to urun", false, syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Set(blobDigest(t, bb), rt.Stall)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := c.cmd(ctx, "pull", "-q", "--tls-verify=false", ref)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			done := p.StartUntilStalled(ctx, t, cmd, &out)
			pid := cmd.Process.Pid
			if tc.group {
				pid = -pid
			}
			syscall.Kill(pid, tc.sig)
			if err := <-done; err == nil {
				t.Fatalf("interrupted pull exited 0:\n%s", out.String())
			}
			if ents, _ := os.ReadDir(filepath.Join(c.g.GraphRoot, "tmp")); len(ents) != 0 {
				t.Errorf("staging directories left by the interrupted pull: %v", ents)
			}
			if got := c.imageNames(); len(got) != 0 {
				t.Errorf("images after an interrupted pull: %v", got)
			}
		})
	}
	p.Set(blobDigest(t, bb), rt.Pass)
	c.run("pull", "-q", "--tls-verify=false", ref)
	if got := c.imageNames(); len(got) != 1 {
		t.Errorf("images after the pull: %v", got)
	}
}

func blobDigest(t *testing.T, l rt.Layer) digest.Digest {
	t.Helper()
	d, err := rt.BlobDigest(l)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func imageConfigForTest() imgspecv1.ImageConfig {
	return imgspecv1.ImageConfig{Cmd: []string{"/bin/sh"}, User: "1000", WorkingDir: "/home/app", Env: []string{"PATH=/bin"}}
}

// TestPrepareImage: the store step of urun run, from outside the user
// namespace: a container record on the image, its directories and config;
// then its removal.
func TestPrepareImage(t *testing.T) {
	testutil.Integration(t)
	reg := rt.Start(t)
	ref := pushBusybox(t, reg, "test/prep")
	c := newImageCLI(t, reg, "")
	selfExe = func() (string, error) { return c.bin, nil }
	t.Cleanup(func() { selfExe = os.Executable })
	ctx := context.Background()

	if _, err := prepareImage(ctx, c.g, ref, prepareOptions{Pull: image.PullNever}); err == nil || !strings.Contains(err.Error(), "image not known") {
		t.Fatalf("prepare with --pull=never of a missing image: %v", err)
	}
	p, err := prepareImage(ctx, c.g, ref, prepareOptions{Pull: image.PullMissing, Quiet: true, Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Lowers) != 1 || p.Upper == "" || p.Work == "" || p.ContainerID == "" {
		t.Fatalf("prepared %+v", p)
	}
	if p.Config.User != "1000" || p.Config.WorkingDir != "/home/app" || len(p.Config.Cmd) != 1 {
		t.Errorf("config %+v", p.Config)
	}
	// The directories exist, as the store made them, inside the namespace.
	c.run("unshare", "test", "-x", filepath.Join(p.Lowers[0], "bin/busybox"))
	c.run("unshare", "test", "-d", p.Upper)
	if out, err := c.try("rmi", ref); err == nil || !strings.Contains(out, "in use") {
		t.Errorf("rmi of an image a container record uses: %v\n%s", err, out)
	}
	if _, err := prepareImage(ctx, c.g, ref, prepareOptions{Pull: image.PullNever, Name: "web"}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second record named web: %v", err)
	}
	if err := removeContainerRecord(ctx, c.g, p.ContainerID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.try("unshare", "test", "-e", p.Upper); err == nil {
		t.Errorf("upper %s left after the record's removal", p.Upper)
	}
	if err := removeContainerRecord(ctx, c.g, p.ContainerID); err == nil || !strings.Contains(err.Error(), "not known") {
		t.Errorf("second removal: %v", err)
	}
	c.run("rmi", ref)
}

// openPTY returns a pseudo-terminal's master and slave.
func openPTY(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 100}); err != nil {
		t.Fatal(err)
	}
	return master, slave
}

// TestPullProgress: a bar per layer on a terminal, one line per blob
// otherwise, nothing with -q.
func TestPullProgress(t *testing.T) {
	testutil.Integration(t)
	reg := rt.Start(t)
	ref := pushBusybox(t, reg, "test/progress", rt.Layer{rt.File("second", "layer")})
	c := newImageCLI(t, reg, "")

	// Not a terminal: plain lines.
	var out bytes.Buffer
	cmd := c.cmd(context.Background(), "pull", "--tls-verify=false", ref)
	cmd.Stdout, cmd.Stderr = io.Discard, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("pull: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), "Copying blob sha256:"); n != 2 || strings.Contains(out.String(), "\x1b[") {
		t.Errorf("progress to a pipe: %d blob lines (want 2), escapes: %q", n, out.String())
	}
	if s := c.run("pull", "-q", "--tls-verify=false", ref); strings.Count(s, "\n") != 1 {
		t.Errorf("pull -q printed more than the ID: %q", s)
	}
	c.run("rmi", ref)

	// A terminal: bars drawn with escape sequences.
	master, slave := openPTY(t)
	cmd = c.cmd(context.Background(), "pull", "--tls-verify=false", ref)
	cmd.Stdout, cmd.Stderr = io.Discard, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var tty bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&tty, master); close(copied) }() // EIO once the last slave closes
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pull on a terminal: %v\n%s", err, tty.String())
	}
	<-copied
	if s := tty.String(); !strings.Contains(s, "\x1b[") || !strings.Contains(s, "Copying blob") {
		t.Errorf("progress on a terminal has no bars: %q", s)
	}
}

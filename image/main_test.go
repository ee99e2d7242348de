package image_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/urun-dev/urun/image"
	"github.com/urun-dev/urun/internal/registrytest"
	"github.com/urun-dev/urun/internal/testutil"
)

// helperEnv selects a helper mode of the test binary (see runHelper).
const helperEnv = "URUN_IMAGE_TEST_HELPER"

func TestMain(m *testing.M) {
	if image.Init() {
		return
	}
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	flag.Parse()
	os.Exit(testutil.RunInUserNS(m))
}

// runHelper runs one store operation in this process, as a separate urun
// would: "pull" pulls $URUN_TEST_REF into the store of $URUN_TEST_GRAPH.
func runHelper(mode string) int {
	ctx := context.Background()
	switch mode {
	case "pull":
		s, err := image.Open(ctx, helperOptions())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer s.Close()
		img, err := s.Pull(ctx, os.Getenv("URUN_TEST_REF"), image.PullOptions{SkipTLSVerify: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(img.ID)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", mode)
	return 2
}

func helperOptions() image.Options {
	return image.Options{
		GraphRoot:      os.Getenv("URUN_TEST_GRAPH"),
		RunRoot:        os.Getenv("URUN_TEST_RUN"),
		MountProgram:   os.Getenv("URUN_TEST_UFS"),
		RegistriesConf: os.Getenv("URUN_TEST_REGISTRIES"),
	}
}

// env is one test's registry and store.
type env struct {
	t    *testing.T
	reg  *registrytest.Registry
	opts image.Options
	s    *image.Store
}

// newEnv starts a registry and opens a store in temporary directories.
func newEnv(t *testing.T) *env {
	t.Helper()
	testutil.RequireNamespaceRoot(t)
	return newEnvWith(t, registrytest.Start(t))
}

// newEnvWith opens a store for tests against reg.
func newEnvWith(t *testing.T, reg *registrytest.Registry) *env {
	t.Helper()
	e := &env{t: t, reg: reg}
	dir := t.TempDir()
	e.opts = image.Options{
		GraphRoot:      filepath.Join(dir, "graph"),
		RunRoot:        filepath.Join(dir, "run"),
		MountProgram:   testutil.UfsBin(t),
		RegistriesConf: filepath.Join(dir, "registries.conf"),
	}
	e.writeRegistries("")
	e.s = e.open()
	return e
}

// writeRegistries writes the test registries.conf: the local registry is
// insecure (plain HTTP); extra is appended.
func (e *env) writeRegistries(extra string) {
	e.t.Helper()
	conf := fmt.Sprintf("unqualified-search-registries = []\nshort-name-mode = \"enforcing\"\n\n[[registry]]\nlocation = %q\ninsecure = true\n%s", e.reg.Addr, extra)
	if err := os.WriteFile(e.opts.RegistriesConf, []byte(conf), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) open() *image.Store {
	e.t.Helper()
	return openStore(e.t, e.opts)
}

// openStore opens a store closed at the end of the test.
func openStore(t *testing.T, o image.Options) *image.Store {
	t.Helper()
	s, err := image.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// push builds images into an OCI layout and pushes them as repo:latest.
func (e *env) push(repo string, imgs ...registrytest.Image) string {
	e.t.Helper()
	dir := e.t.TempDir()
	if err := registrytest.WriteLayout(dir, "latest", imgs...); err != nil {
		e.t.Fatal(err)
	}
	return e.reg.Push(e.t, dir, "latest", repo)
}

func (e *env) pull(ref string) *image.Image {
	e.t.Helper()
	img, err := e.s.Pull(context.Background(), ref, image.PullOptions{SkipTLSVerify: true})
	if err != nil {
		e.t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

// helper starts the test binary as a helper process on this store.
func (e *env) helper(ctx context.Context, mode, ref string) (*exec.Cmd, *bytes.Buffer) {
	e.t.Helper()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "URUN_TEST_REF="+ref,
		"URUN_TEST_GRAPH="+e.opts.GraphRoot, "URUN_TEST_RUN="+e.opts.RunRoot,
		"URUN_TEST_UFS="+e.opts.MountProgram, "URUN_TEST_REGISTRIES="+e.opts.RegistriesConf)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, &out
}

func busybox(t *testing.T) registrytest.Layer {
	t.Helper()
	l, err := registrytest.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// names returns the names of all images of the store.
func names(t *testing.T, s *image.Store) []string {
	t.Helper()
	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range imgs {
		out = append(out, i.Names...)
		if len(i.Names) == 0 {
			out = append(out, i.ID)
		}
	}
	return out
}

// layerBlob is the digest of a layer's blob in the registry.
func layerBlob(t *testing.T, l registrytest.Layer) digest.Digest {
	t.Helper()
	d, err := registrytest.BlobDigest(l)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not contain %q", err, p)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

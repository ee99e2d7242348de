// Package registrytest runs a real registry (Debian's docker-registry, the
// CNCF distribution server) on 127.0.0.1 for tests, builds OCI images from
// tar entries (busybox-static at least), pushes them, and puts a proxy that
// injects faults (cut, stalled or corrupted blobs) in front of it.
package registrytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"golang.org/x/crypto/bcrypt"
)

// Registry is a running docker-registry.
type Registry struct {
	// Addr is host:port.
	Addr string
	// User and Password are the credentials it asks for ("": none).
	User, Password string
}

// Options tune Start.
type Options struct {
	// User and Password make the registry ask for HTTP basic
	// authentication (an htpasswd file with that one user).
	User, Password string
}

// readyTimeout bounds the wait for the registry to answer.
const readyTimeout = 30 * time.Second

// Start runs docker-registry on a free port of 127.0.0.1 with its storage
// in a temporary directory; it is killed at the end of the test.
func Start(t testing.TB) *Registry {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skipf("docker-registry not installed (Debian package docker-registry; make deps): %v", err)
	}
	dir := t.TempDir()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	auth := ""
	if o.User != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(o.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(o.User+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", htpasswd)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), addr, auth)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := waitReady(ctx, "http://"+addr+"/v2/", exited); err != nil {
		t.Fatalf("docker-registry on %s: %v\n%s", addr, err, stderr.String())
	}
	return &Registry{Addr: addr, User: o.User, Password: o.Password}
}

// waitReady polls url until it answers 200, the process exits or ctx ends.
func waitReady(ctx context.Context, url string, exited <-chan error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			// 401: up, and asking for credentials.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before it was ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", readyTimeout, errors.Join(ctx.Err(), err))
		case <-tick.C:
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Push copies the image (or index) tagged tag in the OCI layout dir to
// the registry as repo:tag, and returns the full reference.
func (r *Registry) Push(t testing.TB, dir, tag, repo string) string {
	t.Helper()
	ref := fmt.Sprintf("%s/%s:%s", r.Addr, repo, tag)
	var auth *types.DockerAuthConfig
	if r.User != "" {
		auth = &types.DockerAuthConfig{Username: r.User, Password: r.Password}
	}
	if err := CopyToRegistry(context.Background(), dir, tag, ref, auth); err != nil {
		t.Fatal(err)
	}
	return ref
}

// CopyToRegistry copies oci:dir:tag (all instances of an index) to the
// plain-HTTP registry reference ref, with credentials auth (nil: none).
func CopyToRegistry(ctx context.Context, dir, tag, ref string, auth *types.DockerAuthConfig) error {
	src, err := layout.NewReference(dir, tag)
	if err != nil {
		return err
	}
	dest, err := docker.ParseReference("//" + ref)
	if err != nil {
		return err
	}
	pc, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return err
	}
	defer pc.Destroy()
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, DockerAuthConfig: auth}
	if _, err := copy.Image(ctx, pc, dest, src, &copy.Options{
		SourceCtx: sys, DestinationCtx: sys, ImageListSelection: copy.CopyAllImages,
	}); err != nil {
		return fmt.Errorf("push %s to %s: %w", dir, ref, err)
	}
	return nil
}

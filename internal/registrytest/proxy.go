package registrytest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"regexp"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Fault is what the proxy does to a blob download.
type Fault int

// Faults.
const (
	// Pass forwards the blob unchanged.
	Pass Fault = iota
	// Corrupt flips one byte in the middle of the blob (same length).
	Corrupt
	// Cut sends half of the blob and drops the connection; a resuming
	// Range request gets 503.
	Cut
	// Stall sends half of the blob, tells StartUntilStalled, and holds
	// the connection until the client goes away.
	Stall
)

// Proxy is an HTTP proxy in front of a registry that applies faults to
// chosen blobs.
type Proxy struct {
	// Addr is host:port of the proxy.
	Addr   string
	target *url.URL
	rp     *httputil.ReverseProxy
	// stalled receives the digest of each stalled download.
	stalled chan digest.Digest

	mu     sync.Mutex // guards faults and gets
	faults map[digest.Digest]Fault
	gets   map[digest.Digest]int
}

var blobPath = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[0-9a-f]{64})$`)

// NewProxy starts a proxy to r on 127.0.0.1; it stops at the end of the test.
func NewProxy(t testing.TB, r *Registry) *Proxy {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: r.Addr}
	p := &Proxy{
		target: target, rp: httputil.NewSingleHostReverseProxy(target),
		stalled: make(chan digest.Digest, 16), faults: map[digest.Digest]Fault{}, gets: map[digest.Digest]int{},
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	p.Addr = srv.Listener.Addr().String()
	return p
}

// Set gives the blob d the fault f.
func (p *Proxy) Set(d digest.Digest, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[d] = f
}

func (p *Proxy) fault(r *http.Request) (digest.Digest, Fault) {
	m := blobPath.FindStringSubmatch(r.URL.Path)
	if m == nil || r.Method != http.MethodGet {
		return "", Pass
	}
	d := digest.Digest(m[1])
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gets[d]++
	return d, p.faults[d]
}

// Gets is how many downloads of blob d the proxy has seen.
func (p *Proxy) Gets(d digest.Digest) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gets[d]
}

// ServeHTTP forwards r, applying the fault of the blob it asks for.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d, f := p.fault(r)
	if f == Pass {
		p.rp.ServeHTTP(w, r)
		return
	}
	if f == Cut && r.Header.Get("Range") != "" {
		http.Error(w, "cut by the test proxy", http.StatusServiceUnavailable)
		return
	}
	u := *p.target
	u.Path = r.URL.Path
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	switch f {
	case Corrupt:
		if len(body) > 0 {
			body[len(body)/2] ^= 0xff
		}
		w.Write(body)
	case Cut, Stall:
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		if f == Stall {
			select {
			case p.stalled <- d:
			default:
			}
			<-r.Context().Done()
		}
		panic(http.ErrAbortHandler)
	}
}

// StartUntilStalled starts cmd and returns once the proxy holds one of its
// downloads (a blob set to Stall); the channel then receives cmd.Wait's
// result. The test fails if cmd ends first or ctx ends; out is what cmd
// printed, for the message.
func (p *Proxy) StartUntilStalled(ctx context.Context, t testing.TB, cmd *exec.Cmd, out fmt.Stringer) <-chan error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-p.stalled:
	case err := <-done:
		t.Fatalf("%s ended before its download stalled: %v\n%s", cmd.Path, err, out)
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s: no stalled download: %v", cmd.Path, ctx.Err())
	}
	return done
}

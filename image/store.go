package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"golang.org/x/sys/unix"
)

// Store is the image store: a containers-storage store with the overlay
// driver, mounting through ufs. It is safe for concurrent use, and other
// processes may use the same graph root at the same time (containers-storage
// locks its files).
type Store struct {
	store storage.Store
	opts  Options
	log   *slog.Logger
	// tmpDir stages blobs of this process's pulls (GRAPHROOT/tmp/pull-PID);
	// removed by the last Close, or by a later Open if this process dies.
	tmpDir string
}

// usernsEnv is containers-storage's marker for "running inside a user
// namespace as its root" (unshare.UsernsEnvName): with it the overlay
// driver writes user.overlay.* xattrs, which a user namespace may set,
// instead of trusted.overlay.*, which it may not.
const usernsEnv = "_CONTAINERS_USERNS_CONFIGURED"

// Open opens (creating it if needed) the store described by o. The caller
// must already be inside the user namespace that maps the subordinate ids
// (or be real root): store operations change file owners.
func Open(ctx context.Context, o Options) (*Store, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("image store: uid %d is not root of a user namespace: store operations must run inside urun's user namespace (run through the urun command, which enters it), or as root", os.Geteuid())
	}
	if err := markUserNS(); err != nil {
		return nil, err
	}
	for _, d := range []string{o.GraphRoot, o.RunRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create store directory: %w", err)
		}
	}
	driverOpts := []string{
		"overlay.mount_program=" + o.MountProgram,
		// The bind mount of the graph root over itself only serves
		// shared-propagation hosts; we run in a mount namespace of our own.
		"overlay.skip_mount_home=true",
	}
	if o.MountOptions != "" {
		driverOpts = append(driverOpts, "overlay.mountopt="+o.MountOptions)
	}
	st, err := storage.GetStore(storage.StoreOptions{
		RunRoot:            o.RunRoot,
		GraphRoot:          o.GraphRoot,
		GraphDriverName:    "overlay",
		GraphDriverOptions: driverOpts,
	})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", o.GraphRoot, err)
	}
	openMu.Lock()
	openStores[storeKey(o)]++
	openMu.Unlock()
	s := &Store{store: st, opts: o, log: o.Logger,
		tmpDir: filepath.Join(o.GraphRoot, "tmp", "pull-"+strconv.Itoa(os.Getpid()))}
	if err := s.cleanStaleTemp(); err != nil {
		s.log.Warn("cleaning stale pull directories", "err", err)
	}
	s.log.DebugContext(ctx, "store open", "graphroot", o.GraphRoot, "runroot", o.RunRoot, "mount_program", o.MountProgram)
	return s, nil
}

// containers-storage hands out one store per graph root and run root in a
// process; Close shuts it down when the last Store on it closes.
var (
	openMu     sync.Mutex
	openStores = map[string]int{} // Stores open per storeKey; guarded by openMu
)

func storeKey(o Options) string { return o.GraphRoot + "\x00" + o.RunRoot }

// Close releases the store. The last Store of a graph root in the process
// shuts containers-storage down, which fails (ErrLayerUsedByContainer)
// while a layer is still mounted through Storage().Mount; it unmounts
// nothing.
func (s *Store) Close() error {
	var errs []error
	openMu.Lock()
	key := storeKey(s.opts)
	openStores[key]--
	last := openStores[key] == 0
	if last {
		delete(openStores, key)
	}
	openMu.Unlock()
	if last {
		errs = append(errs, os.RemoveAll(s.tmpDir))
		if _, err := s.store.Shutdown(false); err != nil {
			errs = append(errs, fmt.Errorf("shut down store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// GraphRoot and RunRoot return the store's directories.
func (s *Store) GraphRoot() string { return s.opts.GraphRoot }

// RunRoot returns the store's run root.
func (s *Store) RunRoot() string { return s.opts.RunRoot }

// MountProgram returns the ufs binary the overlay driver mounts with.
func (s *Store) MountProgram() string { return s.opts.MountProgram }

// Storage returns the underlying containers-storage store, for callers
// that need what this package does not wrap (e.g. Mount).
func (s *Store) Storage() storage.Store { return s.store }

// systemContext carries the registry and policy configuration to
// containers/image.
func (s *Store) systemContext() *types.SystemContext {
	return &types.SystemContext{
		SystemRegistriesConfPath: s.opts.RegistriesConf,
		SignaturePolicyPath:      s.opts.SignaturePolicy,
		AuthFilePath:             s.opts.AuthFile,
		BigFilesTemporaryDir:     s.pullTempDir(),
		// The blob-info cache (which registry has which blob) lives in
		// the store, not in /var/lib/containers or ~/.local/share/containers.
		BlobInfoCacheDir: filepath.Join(s.opts.GraphRoot, "cache"),
	}
}

// policyContext is the signature policy: the configured or system
// policy.json, and accept-anything when there is none at all.
func (s *Store) policyContext(sys *types.SystemContext) (*signature.PolicyContext, error) {
	pol, err := signature.DefaultPolicy(sys)
	if errors.Is(err, fs.ErrNotExist) && s.opts.SignaturePolicy == "" {
		s.log.Debug("no policy.json; accepting every image")
		pol = &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}}
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("signature policy: %w", err)
	}
	pc, err := signature.NewPolicyContext(pol)
	if err != nil {
		return nil, fmt.Errorf("signature policy: %w", err)
	}
	return pc, nil
}

// pullTempDir is where this process's pulls stage blobs:
// GRAPHROOT/tmp/pull-PID, on the store's file system.
func (s *Store) pullTempDir() string { return s.tmpDir }

// ensureTempDir creates the staging directory.
func (s *Store) ensureTempDir() error {
	if err := os.MkdirAll(s.pullTempDir(), 0o700); err != nil {
		return fmt.Errorf("create pull staging directory: %w", err)
	}
	return nil
}

// cleanStaleTemp removes staging directories of processes that died
// during a pull (SIGKILL, power loss).
func (s *Store) cleanStaleTemp() error {
	dir := filepath.Join(s.opts.GraphRoot, "tmp")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		pid, ok := strings.CutPrefix(e.Name(), "pull-")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(pid)
		if err != nil || n == os.Getpid() {
			continue
		}
		if err := unix.Kill(n, 0); errors.Is(err, syscall.ESRCH) {
			s.log.Debug("removing stale pull directory", "dir", e.Name())
			errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// markUserNS tells containers-storage and containers/image that they run
// as root of a user namespace, before they first ask (they cache the
// answer): _CONTAINERS_USERNS_CONFIGURED makes the overlay driver write
// user.overlay.* xattrs (a user namespace may not set trusted.*), and
// _CONTAINERS_ROOTLESS_UID (the uid mapped to 0) points their per-user
// paths (signature lookaside, auth.json under /run/user/UID, registries.d)
// at the user's, as podman's re-exec does.
func markUserNS() error {
	f, err := os.Open("/proc/self/uid_map")
	if err != nil {
		return fmt.Errorf("read uid map: %w", err)
	}
	defer f.Close()
	initial, rootUID, err := parseUIDMap(f)
	if err != nil || initial {
		return err
	}
	if os.Getenv(usernsEnv) == "" {
		if err := os.Setenv(usernsEnv, "done"); err != nil {
			return err
		}
	}
	if os.Getenv(rootlessUIDEnv) == "" && rootUID > 0 {
		return os.Setenv(rootlessUIDEnv, strconv.Itoa(rootUID))
	}
	return nil
}

// rootlessUIDEnv is containers' "uid of the user outside" variable.
const rootlessUIDEnv = "_CONTAINERS_ROOTLESS_UID"

// parseUIDMap reads a uid_map: whether it is the initial namespace's
// identity map of all 2^32-1 ids, and the outside uid of uid 0 (-1 when 0
// is not mapped).
func parseUIDMap(r io.Reader) (initial bool, rootUID int, err error) {
	sc := bufio.NewScanner(r)
	rootUID = -1
	n := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return false, -1, fmt.Errorf("uid map: bad line %q", sc.Text())
		}
		in, err1 := strconv.ParseUint(f[0], 10, 32)
		out, err2 := strconv.ParseUint(f[1], 10, 32)
		cnt, err3 := strconv.ParseUint(f[2], 10, 32)
		if err := errors.Join(err1, err2, err3); err != nil {
			return false, -1, fmt.Errorf("uid map: bad line %q: %w", sc.Text(), err)
		}
		n++
		if in == 0 && cnt > 0 {
			rootUID = int(out)
		}
		initial = n == 1 && in == 0 && out == 0 && cnt == 4294967295
	}
	if err := sc.Err(); err != nil {
		return false, -1, fmt.Errorf("read uid map: %w", err)
	}
	return initial && n == 1, rootUID, nil
}

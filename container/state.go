package container

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNameInUse says that --name names a container that still exists.
var ErrNameInUse = errors.New("that name is already in use")

// DefaultRoot returns urun's data directory: $XDG_DATA_HOME/urun, or
// ~/.local/share/urun.
func DefaultRoot() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "urun"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no data directory: set XDG_DATA_HOME or HOME (or pass --root): %w", err)
	}
	return filepath.Join(home, ".local", "share", "urun"), nil
}

// NewID returns a random 64-hex-digit container id.
func NewID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// state files of a container directory.
const (
	configFile = "config.json"
	lockFile   = "lock"
)

func containersDir(root string) string { return filepath.Join(root, "containers") }
func namesDir(root string) string      { return filepath.Join(root, "names") }

// create makes the container's directory below root, reserves its name
// and writes its config and /etc files. On error nothing is left behind.
func create(root string, c *Config) (lock *os.File, err error) {
	dir := filepath.Join(containersDir(root), c.ID)
	if err := os.MkdirAll(containersDir(root), 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(namesDir(root), 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	// The lock first: ReapStale skips a directory without config.json,
	// and one with it is locked from its first moment.
	if err := os.WriteFile(filepath.Join(dir, lockFile), nil, 0o600); err != nil {
		return nil, err
	}
	lock, err = lockState(dir, true)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	c.StateDir = dir
	if c.Name == "" {
		c.Name = c.ID[:12]
	}
	if err := reserveName(root, c.Name, c.ID); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.Remove(filepath.Join(namesDir(root), c.Name))
		}
	}()
	for _, d := range []string{"merged", "upper", "work"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := writeEtcFiles(c); err != nil {
		return nil, err
	}
	if err := writeConfig(c); err != nil {
		return nil, err
	}
	return lock, nil
}

// writeConfig records c in its state directory, atomically.
func writeConfig(c *Config) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.StateDir, configFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(c.StateDir, configFile))
}

// validName is podman's rule for container names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// reserveName links names/NAME to the id; an existing link to a container
// that is gone is replaced.
func reserveName(root, name, id string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("%w: --name %q: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*", ErrBadSpec, name)
	}
	link := filepath.Join(namesDir(root), name)
	for range 2 {
		err := os.Symlink(id, link)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrExist) {
			return err
		}
		old, rerr := os.Readlink(link)
		if rerr != nil {
			return rerr
		}
		if _, serr := os.Stat(filepath.Join(containersDir(root), old)); serr == nil {
			return fmt.Errorf("the container name %q is already in use by %s. You have to remove that container to be able to reuse that name: %w", name, old, ErrNameInUse)
		}
		os.Remove(link)
	}
	return fmt.Errorf("reserve name %q: %w", name, ErrNameInUse)
}

// writeEtcFiles writes the hostname, hosts and resolv.conf the container
// gets bound over its own.
func writeEtcFiles(c *Config) error {
	if c.Hostname == "" {
		c.Hostname = c.ID[:12]
	}
	hosts := "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if c.Network == "host" {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
	}
	hosts += "127.0.1.1\t" + c.Hostname + " " + c.Name + "\n"
	resolv := "nameserver 127.0.0.1\n"
	if c.Network == "host" {
		resolv = hostResolvConf()
	}
	files := map[string]string{
		"hostname":    c.Hostname, // no newline, as podman writes it
		"hosts":       hosts,
		"resolv.conf": resolv,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(c.StateDir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// hostResolvConf returns the host's resolver configuration, skipping the
// systemd-resolved stub (unreachable from another network namespace).
func hostResolvConf() string {
	for _, p := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		b, err := os.ReadFile(p)
		if err == nil && !strings.Contains(string(b), "127.0.0.53") {
			return string(b)
		}
	}
	return ""
}

// lockState takes the container's lock for as long as the returned file
// stays open: a container whose lock is free is not running.
func lockState(dir string, wait bool) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReapStale removes what --rm containers killed before they could clean
// up left behind: their state directories, once nothing holds their lock.
// For a container from an image with a store record (not a lease),
// release(c) first removes its record from
// the image store (and the state stays if it fails); with a nil release
// such containers are left alone. It runs inside the user namespace, where
// root may remove the files of every mapped id.
func ReapStale(root string, release func(c *Config) error) {
	ents, err := os.ReadDir(containersDir(root))
	if err != nil {
		return
	}
	for _, e := range ents {
		dir := filepath.Join(containersDir(root), e.Name())
		// The lock first: it is cheaper than reading the config, and
		// usually held (by this start's own container, for one).
		l, err := lockState(dir, false)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, configFile))
		var c Config
		if err == nil && json.Unmarshal(b, &c) == nil && c.Remove &&
			(!c.hasRecord() || (release != nil && release(&c) == nil)) {
			removeState(root, &c)
		}
		l.Close()
	}
}

// removeState deletes a container's directory and name. The caller holds
// its lock or knows it is not running; the rootfs must not be mounted.
func removeState(root string, c *Config) error {
	link := filepath.Join(namesDir(root), c.Name)
	if id, err := os.Readlink(link); err == nil && id == c.ID {
		os.Remove(link)
	}
	return os.RemoveAll(c.StateDir)
}

package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ErrNoContainer says that no container has the given name or id.
var ErrNoContainer = errors.New("no such container")

// ErrRunning says that a container to remove is still running.
var ErrRunning = errors.New("the container is running")

// Info describes a container whose state exists below a data root.
type Info struct {
	ID, Name string
	// Image names the image, or is empty for a --rootfs container.
	Image   string
	Layers  []string
	Command []string
	Created time.Time
	Running bool
	Remove  bool // --rm
}

// List returns the containers whose state exists below root, oldest
// first. A container is running while its lock is held.
func List(root string) ([]Info, error) {
	ents, err := os.ReadDir(containersDir(root))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range ents {
		c, created, err := readState(filepath.Join(containersDir(root), e.Name()))
		if err != nil {
			continue // being created, or not urun's
		}
		info := Info{ID: c.ID, Name: c.Name, Image: c.Image, Layers: c.Layers, Command: c.Args, Created: created, Remove: c.Remove}
		if l, err := lockState(c.StateDir, false); err == nil {
			l.Close()
		} else {
			info.Running = true
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func readState(dir string) (*Config, time.Time, error) {
	p := filepath.Join(dir, configFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, time.Time{}, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, time.Time{}, fmt.Errorf("%s: %w", p, err)
	}
	// The lock file is made with the state and never written to.
	st, err := os.Stat(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, time.Time{}, err
	}
	c.StateDir = dir
	return &c, st.ModTime(), nil
}

// Find returns the container called ref: a name, a full id or a unique
// prefix of one.
func Find(root, ref string) (*Config, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: empty name", ErrNoContainer)
	}
	if id, err := os.Readlink(filepath.Join(namesDir(root), ref)); err == nil && !strings.Contains(ref, "/") {
		if c, _, err := readState(filepath.Join(containersDir(root), id)); err == nil {
			return c, nil
		}
	}
	ents, err := os.ReadDir(containersDir(root))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var match []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ref) {
			match = append(match, e.Name())
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrNoContainer, ref)
	case 1:
		c, _, err := readState(filepath.Join(containersDir(root), match[0]))
		return c, err
	default:
		return nil, fmt.Errorf("%q is a prefix of %d container ids: give more of it", ref, len(match))
	}
}

// RemoveStopped deletes the state of container c, which must not be
// running; release first removes an image container's store record (nil:
// there is none). It runs as root of urun's user namespace, where the
// files of every mapped id may be removed.
func RemoveStopped(root string, c *Config, release func(*Config) error) error {
	l, err := lockState(c.StateDir, false)
	if err != nil {
		return fmt.Errorf("remove %s: %w (stop it first)", c.Name, ErrRunning)
	}
	defer l.Close()
	if c.hasRecord() && release != nil {
		if err := release(c); err != nil {
			return err
		}
	}
	return removeState(root, c)
}

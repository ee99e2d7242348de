package container

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrBadSpec marks an invalid -v, --tmpfs, -e or --env-file value.
var ErrBadSpec = errors.New("invalid value")

// ParseVolume parses a -v HOST:CTR[:OPTIONS] spec (podman's syntax). HOST
// must be an existing absolute or ./relative path (named volumes are not
// supported), CTR an absolute path; OPTIONS is a comma list of ro, rw and
// the relabel/ownership flags podman accepts (z, Z, U), which change
// nothing here.
func ParseVolume(spec string) (Mount, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Mount{}, fmt.Errorf("%w: -v %q: want HOST-PATH:CONTAINER-PATH[:ro]", ErrBadSpec, spec)
	}
	m := Mount{Type: "bind", Source: parts[0], Destination: parts[1]}
	if m.Source == "" || m.Destination == "" {
		return Mount{}, fmt.Errorf("%w: -v %q: empty path; want HOST-PATH:CONTAINER-PATH[:ro]", ErrBadSpec, spec)
	}
	if !strings.HasPrefix(m.Source, "/") && !strings.HasPrefix(m.Source, ".") {
		return Mount{}, fmt.Errorf("%w: -v %q: named volumes are not supported; give an absolute host path", ErrBadSpec, spec)
	}
	if !filepath.IsAbs(m.Destination) {
		return Mount{}, fmt.Errorf("%w: -v %q: the container path %q must be absolute", ErrBadSpec, spec, m.Destination)
	}
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro":
				m.ReadOnly = true
			case "rw":
				m.ReadOnly = false
			case "z", "Z", "U", "rbind", "bind", "rprivate", "private", "rslave", "slave", "":
			default:
				return Mount{}, fmt.Errorf("%w: -v %q: unknown option %q (known: ro, rw, z, Z, U)", ErrBadSpec, spec, o)
			}
		}
	}
	abs, err := filepath.Abs(m.Source)
	if err != nil {
		return Mount{}, err
	}
	if _, err := os.Stat(abs); err != nil {
		return Mount{}, fmt.Errorf("%w: -v %q: host path: %w", ErrBadSpec, spec, err)
	}
	m.Source = abs
	m.Destination = filepath.Clean(m.Destination)
	return m, nil
}

// ParseTmpfs parses --tmpfs PATH[:OPTIONS]; options are tmpfs's own
// (size=64m, mode=1777) plus ro/rw and the generic noexec, nosuid, nodev
// and exec/suid/dev. Defaults are what podman does (rw,nosuid,nodev; its
// manual says noexec too, its code does not add it).
func ParseTmpfs(spec string) (Mount, error) {
	dst, opts, _ := strings.Cut(spec, ":")
	if !filepath.IsAbs(dst) {
		return Mount{}, fmt.Errorf("%w: --tmpfs %q: the path must be absolute", ErrBadSpec, spec)
	}
	m := Mount{Type: "tmpfs", Destination: filepath.Clean(dst), Options: []string{"nosuid", "nodev"}}
	if opts == "" {
		return m, nil
	}
	for _, o := range strings.Split(opts, ",") {
		k, _, _ := strings.Cut(o, "=")
		switch k {
		case "ro":
			m.ReadOnly = true
		case "rw":
			m.ReadOnly = false
		case "exec", "suid", "dev":
			m.Options = removeString(m.Options, "no"+k)
		case "noexec", "nosuid", "nodev":
			if !contains(m.Options, k) {
				m.Options = append(m.Options, k)
			}
		case "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks":
			m.Options = append(m.Options, o)
		default:
			return Mount{}, fmt.Errorf("%w: --tmpfs %q: unknown option %q", ErrBadSpec, spec, o)
		}
	}
	return m, nil
}

// ParseEnv turns -e values into KEY=VALUE pairs: "KEY=VALUE" as is,
// "KEY" takes the value from lookup (dropped when unset, as podman does).
func ParseEnv(vals []string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	for _, v := range vals {
		k, _, hasVal := strings.Cut(v, "=")
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, fmt.Errorf("%w: -e %q: want KEY=VALUE or KEY", ErrBadSpec, v)
		}
		if hasVal {
			out = append(out, v)
			continue
		}
		if val, ok := lookup(k); ok {
			out = append(out, k+"="+val)
		}
	}
	return out, nil
}

// ParseEnvFile reads an --env-file: one KEY=VALUE or KEY per line, blank
// lines and lines starting with # skipped.
func ParseEnvFile(r io.Reader, name string, lookup func(string) (string, bool)) ([]string, error) {
	var vals []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "=") {
			return nil, fmt.Errorf("%w: %s:%d: %q: no variable name", ErrBadSpec, name, n, line)
		}
		vals = append(vals, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ParseEnv(vals, lookup)
}

// MergeEnv returns base overridden by over, keeping the order of first
// appearance (later values win).
func MergeEnv(base []string, over ...[]string) []string {
	idx := map[string]int{}
	var out []string
	for _, list := range append([][]string{base}, over...) {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// LookupEnv returns the value of key in env.
func LookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func removeString(list []string, s string) []string {
	out := list[:0:0]
	for _, e := range list {
		if e != s {
			out = append(out, e)
		}
	}
	return out
}

package seccomp

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	mobyseccomp "github.com/moby/profiles/seccomp"
)

// Profile is a seccomp profile in the format podman, Docker and moby share
// (containers.conf seccomp_profile, --security-opt seccomp=FILE): a default
// action, and rules naming system calls with an action, argument
// conditions, and conditions on the container's capabilities, the
// architecture and the kernel version.
type Profile struct {
	p *mobyseccomp.Seccomp
}

// Default returns the default profile: moby's (github.com/moby/profiles
// seccomp v0.3.0), the one podman's containers/common profile derives from.
func Default() *Profile { return &Profile{p: mobyseccomp.DefaultProfile()} }

// Load reads a profile in JSON.
func Load(r io.Reader) (*Profile, error) {
	var p mobyseccomp.Seccomp
	dec := json.NewDecoder(r)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: decode JSON: %w", ErrProfile, err)
	}
	if p.DefaultAction == "" {
		return nil, fmt.Errorf("%w: no defaultAction (use --security-opt seccomp=unconfined to run without a filter)", ErrProfile)
	}
	if len(p.Architectures) != 0 && len(p.ArchMap) != 0 {
		return nil, fmt.Errorf("%w: both \"architectures\" and \"archMap\" are given; use one of them", ErrProfile)
	}
	for i, s := range p.Syscalls {
		if s == nil {
			return nil, fmt.Errorf("%w: syscalls[%d] is null", ErrProfile, i)
		}
		//lint:ignore SA1019 old profiles still say "name": it is read once here, into Names
		if name := s.Name; name != "" {
			if len(s.Names) != 0 {
				return nil, fmt.Errorf("%w: syscalls[%d] has both \"name\" and \"names\"; use \"names\"", ErrProfile, i)
			}
			s.Names = []string{name}
		}
	}
	return &Profile{p: &p}, nil
}

// LoadFile reads a profile from the JSON file path.
func LoadFile(path string) (*Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	defer f.Close()
	p, err := Load(f)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %w", path, err)
	}
	return p, nil
}

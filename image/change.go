package image

import (
	"encoding/json"
	"fmt"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ApplyChange applies one Dockerfile-style instruction to cfg, as podman
// import --change does: CMD, ENTRYPOINT (JSON array, or shell form run by
// /bin/sh -c), ENV KEY=VALUE…, WORKDIR, USER, LABEL KEY=VALUE…,
// STOPSIGNAL, EXPOSE PORT[/PROTO]…, VOLUME PATH….
func ApplyChange(cfg *imgspecv1.ImageConfig, change string) error {
	instr, arg, _ := strings.Cut(strings.TrimSpace(change), " ")
	arg = strings.TrimSpace(arg)
	if arg == "" {
		return fmt.Errorf("change %q: no value (e.g. CMD [\"/bin/sh\"], ENV KEY=VALUE, WORKDIR /app)", change)
	}
	switch strings.ToUpper(instr) {
	case "CMD", "ENTRYPOINT":
		argv := []string{"/bin/sh", "-c", arg}
		if strings.HasPrefix(arg, "[") {
			argv = nil
			if err := json.Unmarshal([]byte(arg), &argv); err != nil {
				return fmt.Errorf("change %q: not a JSON array of strings: %w", change, err)
			}
		}
		if strings.EqualFold(instr, "CMD") {
			cfg.Cmd = argv
		} else {
			cfg.Entrypoint = argv
		}
	case "ENV":
		kvs, err := keyValues(change, arg)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			cfg.Env = setEnv(cfg.Env, kv[0], kv[1])
		}
	case "LABEL":
		kvs, err := keyValues(change, arg)
		if err != nil {
			return err
		}
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range kvs {
			cfg.Labels[kv[0]] = kv[1]
		}
	case "WORKDIR":
		cfg.WorkingDir = arg
	case "USER":
		cfg.User = arg
	case "STOPSIGNAL":
		cfg.StopSignal = arg
	case "EXPOSE":
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range strings.Fields(arg) {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			cfg.ExposedPorts[p] = struct{}{}
		}
	case "VOLUME":
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range strings.Fields(arg) {
			cfg.Volumes[v] = struct{}{}
		}
	default:
		return fmt.Errorf("change %q: unknown instruction %s (supported: CMD, ENTRYPOINT, ENV, LABEL, WORKDIR, USER, STOPSIGNAL, EXPOSE, VOLUME)", change, instr)
	}
	return nil
}

// keyValues splits "K=V K2=V2" (or the old "K V" form).
func keyValues(change, arg string) ([][2]string, error) {
	if !strings.Contains(arg, "=") {
		k, v, ok := strings.Cut(arg, " ")
		if !ok {
			return nil, fmt.Errorf("change %q: want KEY=VALUE", change)
		}
		return [][2]string{{k, strings.TrimSpace(v)}}, nil
	}
	var out [][2]string
	for _, f := range strings.Fields(arg) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("change %q: %q is not KEY=VALUE", change, f)
		}
		out = append(out, [2]string{k, strings.Trim(v, `"`)})
	}
	return out, nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if strings.HasPrefix(e, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

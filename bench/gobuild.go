package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
)

// goEnv is the whole environment of the go commands of the gobuild
// workload and of the seeding of its cache: nothing from the caller's.
func goEnv(goroot, home, cache, flags string) []string {
	return []string{
		"PATH=" + goroot + "/bin:/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"GOENV=off",
		"GOCACHE=" + cache,
		"GOPATH=" + filepath.Join(home, "gopath"),
		"GOMODCACHE=" + filepath.Join(home, "gomod"),
		"GOFLAGS=" + flags,
		"GOPROXY=off",
		"GOTOOLCHAIN=local",
		"CGO_ENABLED=0",
		"LANG=C",
	}
}

// buildGo makes the gomod stack: the module in the top layer, a build
// cache holding the standard library packages it needs in the bottom one,
// as in an image for Go builds. The timed build then compiles the module
// and its dependencies and links.
func (f *Fixture) buildGo(ctx context.Context, cfg *Config) error {
	st := &Stack{Layers: []string{stackGo + "/l1", stackGo + "/l0"}}
	f.Stacks[stackGo] = st
	ls := f.LayerPathsOf(st)
	src, cache := filepath.Join(ls[0], goSrc), filepath.Join(ls[1], goCache)
	for _, d := range []string{src, cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	goroot, err := output(ctx, nil, "go", "env", "GOROOT")
	if err != nil {
		return err
	}
	f.GoRoot = strings.TrimSpace(string(goroot))
	if cfg.Smoke {
		f.GoBuild, f.GoFlags = ".", "-buildvcs=false"
		if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644); err != nil {
			return err
		}
	} else {
		f.GoBuild, f.GoFlags = "./cmd/ufs", "-mod=vendor -buildvcs=false"
		if err := copyModule(cfg.SourceDir, src); err != nil {
			return err
		}
		vendor := command(ctx, "go", "mod", "vendor")
		vendor.Dir = src
		vendor.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := vendor.CombinedOutput(); err != nil {
			return cmdError(vendor, err, out)
		}
	}
	home := f.Path(stackGo + "/seed-home")
	defer removeAll(home)
	env := goEnv(f.GoRoot, home, cache, f.GoFlags)
	list := command(ctx, "go", "list", "-deps", "-f", "{{if .Standard}}{{.ImportPath}}{{end}}", f.GoBuild)
	list.Dir, list.Env = src, env
	out, err := list.Output()
	if err != nil {
		return cmdError(list, err, nil)
	}
	build := command(ctx, "go", append([]string{"build"}, strings.Fields(string(out))...)...)
	build.Dir, build.Env = src, env
	if b, err := build.CombinedOutput(); err != nil {
		return cmdError(build, err, b)
	}
	return nil
}

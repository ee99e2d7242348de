package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
)

func TestParseUIDMap(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		initial  bool
		root     int
		err      bool
	}{
		{"initial", "         0          0 4294967295\n", true, 0, false},
		{"rootless", "0 1000 1\n1 100000 65536\n", false, 1000, false},
		{"single", "0 1000 1\n", false, 1000, false},
		{"no root", "1000 1000 1\n", false, -1, false},
		{"partial identity", "0 0 65536\n", false, 0, false},
		{"garbage", "0 x 1\n", false, -1, true},
		{"short", "0 1\n", false, -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			initial, root, err := parseUIDMap(strings.NewReader(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if err == nil && (initial != tc.initial || root != tc.root) {
				t.Errorf("got initial=%v root=%d, want %v %d", initial, root, tc.initial, tc.root)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(strings.NewReader(`
[storage]
graphroot = "/g"
runroot = "/r"
mount_program = "/usr/bin/ufs"

[registries]
conf = "/etc/reg.conf"
`), "t")
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.GraphRoot != "/g" || c.Storage.RunRoot != "/r" || c.Storage.MountProgram != "/usr/bin/ufs" || c.Registries.Conf != "/etc/reg.conf" {
		t.Errorf("parsed %+v", c)
	}
	for _, bad := range []string{"[storage]\ngraphrot = \"/g\"\n", "[storage\n", "[storage]\ngraphroot = 1\n"} {
		if _, err := ParseConfig(strings.NewReader(bad), "bad.conf"); err == nil || !strings.Contains(err.Error(), "bad.conf") {
			t.Errorf("config %q: error %v, want one naming the file", bad, err)
		}
	}
}

func TestLoadConfigAndDefaults(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(dir, "run"))
	t.Setenv("URUN_CONFIG", "")
	ufs := filepath.Join(dir, "ufs")
	if err := os.WriteFile(ufs, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// No config file: XDG defaults.
	var o Options
	o.MountProgram = ufs
	if err := o.LoadConfig(""); err != nil {
		t.Fatal(err)
	}
	d, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if d.GraphRoot != filepath.Join(dir, "data/urun/storage") || d.RunRoot != filepath.Join(dir, "run/urun") {
		t.Errorf("defaults: %+v", d)
	}
	// The default file fills what flags left empty.
	p, _ := ConfigPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("[storage]\ngraphroot = \"/from/file\"\nrunroot = \"/run/file\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o = Options{RunRoot: "/flag/run"}
	if err := o.LoadConfig(""); err != nil {
		t.Fatal(err)
	}
	if o.GraphRoot != "/from/file" || o.RunRoot != "/flag/run" {
		t.Errorf("with config: %+v", o)
	}
	// An explicit file that is missing is an error.
	if err := (&Options{}).LoadConfig(filepath.Join(dir, "missing.conf")); err == nil {
		t.Error("missing explicit config: no error")
	}
	// Without XDG_RUNTIME_DIR: /tmp/urun-UID, the uid outside the namespace.
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("URUN_HOST_UID", "4242")
	if got := defaultRunRoot(); got != filepath.Join(os.TempDir(), "urun-4242") {
		t.Errorf("run root without XDG_RUNTIME_DIR: %s", got)
	}
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"demo":                      "localhost/demo:latest",
		"demo:v1":                   "localhost/demo:v1",
		"me/demo":                   "localhost/me/demo:latest",
		"localhost/demo":            "localhost/demo:latest",
		"quay.io/x/y":               "quay.io/x/y:latest",
		"127.0.0.1:5000/x:t":        "127.0.0.1:5000/x:t",
		"docker.io/library/busybox": "docker.io/library/busybox:latest",
	} {
		got, err := NormalizeName(in)
		if err != nil || got.String() != want {
			t.Errorf("NormalizeName(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "UPPER", "a b", "x:"} {
		if _, err := NormalizeName(bad); err == nil {
			t.Errorf("NormalizeName(%q): no error", bad)
		}
	}
}

func TestApplyChange(t *testing.T) {
	var c imgspecv1.ImageConfig
	for _, ch := range []string{
		`CMD ["/bin/echo", "a b"]`,
		`ENTRYPOINT /bin/sh`,
		`ENV A=1 B=2`,
		`ENV A=3`,
		`env C 4 5`,
		`WORKDIR /app`,
		`USER 1000:1000`,
		`LABEL k=v`,
		`EXPOSE 80 53/udp`,
		`VOLUME /data`,
		`STOPSIGNAL SIGINT`,
	} {
		if err := ApplyChange(&c, ch); err != nil {
			t.Fatalf("%s: %v", ch, err)
		}
	}
	if !slices.Equal(c.Cmd, []string{"/bin/echo", "a b"}) || !slices.Equal(c.Entrypoint, []string{"/bin/sh", "-c", "/bin/sh"}) ||
		!slices.Equal(c.Env, []string{"A=3", "B=2", "C=4 5"}) || c.WorkingDir != "/app" || c.User != "1000:1000" ||
		c.Labels["k"] != "v" || len(c.ExposedPorts) != 2 || len(c.Volumes) != 1 || c.StopSignal != "SIGINT" {
		t.Errorf("config %+v", c)
	}
	for _, bad := range []string{"CMD", `CMD ["x"`, "FROM x", "ENV =x", "ENV A"} {
		if err := ApplyChange(&c, bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParsePolicies(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "missing": true, "always": true, "never": true, "sometimes": false} {
		if _, err := ParsePullPolicy(in); (err == nil) != ok {
			t.Errorf("ParsePullPolicy(%q): %v", in, err)
		}
	}
	for in, ok := range map[string]bool{"": true, "docker-archive": true, "oci-archive": true, "tar": false} {
		if _, err := ParseArchiveFormat(in); (err == nil) != ok {
			t.Errorf("ParseArchiveFormat(%q): %v", in, err)
		}
	}
}

func TestPullHint(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("write: %w", syscall.ENOSPC), "full"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "unreachable"},
		{docker.ErrUnauthorizedForCredentials{Err: errors.New("401")}, "log in"},
		{errors.New("reading manifest latest: requested access to the resource is denied"), "log in"},
		{errors.New(`Get "https://x/v2/": http: server gave HTTP response to HTTPS client`), "--tls-verify=false"},
		{errors.New("x509: certificate signed by unknown authority"), "CA certificate"},
		{errors.New(`no image found in manifest list for architecture "amd64"`), "--platform"},
		{errors.New("reading manifest v9: manifest unknown"), "no such image or tag"},
		{errors.New("something else"), ""},
	} {
		got := pullHint(tc.err)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("pullHint(%v) = %q, want it to contain %q", tc.err, got, tc.want)
		}
	}
}

package userns

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	const file = `# comment
alice:100000:65536

bob:200000:1000
1000:300000:10
alice:400000:5
`
	tests := []struct {
		name string
		id   uint32
		want []Range
	}{
		{"alice", 999, []Range{{100000, 65536}, {400000, 5}}},
		{"bob", 1001, []Range{{200000, 1000}}},
		{"carol", 1000, []Range{{300000, 10}}},
		{"dave", 5, nil},
	}
	for _, tc := range tests {
		got, err := ParseSubIDs(strings.NewReader(file), tc.name, tc.id)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{"alice:1", "alice:x:1", "alice:1:0", "alice:4294967295:2"} {
		if _, err := ParseSubIDs(strings.NewReader(bad), "alice", 1); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err %v, want a line-1 error", bad, err)
		}
	}
}

func TestBuild(t *testing.T) {
	subs := []Range{{100000, 65536}}
	tests := []struct {
		name string
		mode Mode
		id   uint32
		subs []Range
		want []Mapping
	}{
		{"root", ModeRoot, 1000, subs, []Mapping{{0, 1000, 1}, {1, 100000, 65536}}},
		{"root two ranges", ModeRoot, 1000, []Range{{100000, 10}, {200000, 5}},
			[]Mapping{{0, 1000, 1}, {1, 100000, 10}, {11, 200000, 5}}},
		{"root alone", ModeRoot, 1000, nil, []Mapping{{0, 1000, 1}}},
		{"keep-id", ModeKeepID, 1000, subs,
			[]Mapping{{1000, 1000, 1}, {0, 100000, 1000}, {1001, 101000, 64536}}},
		{"keep-id alone", ModeKeepID, 1000, nil, []Mapping{{1000, 1000, 1}}},
		{"keep-id split ranges", ModeKeepID, 5, []Range{{100, 3}, {200, 4}},
			[]Mapping{{5, 5, 1}, {0, 100, 3}, {3, 200, 2}, {6, 202, 2}}},
	}
	for _, tc := range tests {
		got := Build(tc.mode, tc.id, tc.subs)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
		if Size(got) != Size(tc.want) {
			t.Errorf("%s: size %d", tc.name, Size(got))
		}
	}
}

func TestParseMapAndToHost(t *testing.T) {
	m, err := ParseMap(strings.NewReader("         0       1000          1\n         1     100000      65536\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{0, 1000, 1}, {1, 100000, 65536}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %v", m)
	}
	for _, tc := range []struct {
		c, h uint32
		ok   bool
	}{{0, 1000, true}, {1, 100000, true}, {65536, 165535, true}, {65537, 0, false}} {
		h, ok := ToHost(m, tc.c)
		if h != tc.h || ok != tc.ok {
			t.Errorf("ToHost(%d) = %d,%v want %d,%v", tc.c, h, ok, tc.h, tc.ok)
		}
	}
	if _, err := ParseMap(strings.NewReader("0 1\n")); err == nil {
		t.Error("short line accepted")
	}
}

func TestNestedKeepID(t *testing.T) {
	tests := []struct {
		id   uint32
		size uint64
		want []Mapping
	}{
		{1000, 65537, []Mapping{{1000, 0, 1}, {0, 1, 1000}, {1001, 1001, 64536}}},
		{0, 10, []Mapping{{0, 0, 1}, {1, 1, 9}}},
		{9, 10, []Mapping{{9, 0, 1}, {0, 1, 9}}},
		{10, 10, nil},
		{0, 1, nil},
	}
	for _, tc := range tests {
		got := NestedKeepID(tc.id, tc.size)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("NestedKeepID(%d, %d) = %v, want %v", tc.id, tc.size, got, tc.want)
		}
		if got != nil && Size(got) != tc.size {
			t.Errorf("NestedKeepID(%d, %d) maps %d ids", tc.id, tc.size, Size(got))
		}
	}
}

func TestCheckSysctls(t *testing.T) {
	tests := []struct {
		files map[string]string
		want  string
	}{
		{map[string]string{"kernel/unprivileged_userns_clone": "1\n", "user/max_user_namespaces": "100\n"}, ""},
		{map[string]string{"kernel/unprivileged_userns_clone": "0\n"}, "sysctl kernel.unprivileged_userns_clone is 0; enable them with: sudo sysctl -w kernel.unprivileged_userns_clone=1"},
		{map[string]string{"user/max_user_namespaces": "0\n"}, "sudo sysctl -w user.max_user_namespaces=15000"},
		{map[string]string{"kernel/apparmor_restrict_unprivileged_userns": "1\n"}, "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"},
		{nil, ""},
	}
	for _, tc := range tests {
		dir := t.TempDir()
		for name, content := range tc.files {
			os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
			os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
		}
		err := checkSysctls(dir)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.files, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrNoUserNS) {
			t.Errorf("%v: %v, want %q", tc.files, err, tc.want)
		}
	}
}

func TestNewIDMapMissingTool(t *testing.T) {
	err := newIDMap("urun-no-such-newuidmap", 1, []Mapping{{0, 1000, 1}})
	if err == nil || !strings.Contains(err.Error(), "apt-get install uidmap") {
		t.Errorf("missing tool: %v, want the package to install", err)
	}
}

func TestPlanWithoutRanges(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root gets the identity map")
	}
	empty := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(empty, nil, 0o644)
	var logged strings.Builder
	m, err := Plan(Config{SubUIDFile: empty, SubGIDFile: empty, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.UID) != 1 || m.UID[0] != (Mapping{0, uint32(os.Getuid()), 1}) {
		t.Errorf("maps %v, want the caller alone", m)
	}
	if !strings.Contains(logged.String(), "usermod --add-subuids") {
		t.Errorf("warning %q does not say how to add a range", logged.String())
	}
}

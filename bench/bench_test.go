package bench

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseSubIDs(t *testing.T) {
	const file = "# comment\nother:200000:65536\nurun-test:100000:65536\n1002:300000:10\nbad:x:1\n"
	tests := []struct {
		name, user, id   string
		wantStart, wantN int
		wantErrSubstring string
	}{
		{name: "by name", user: "urun-test", id: "1001", wantStart: 100000, wantN: 65536},
		{name: "by uid", user: "someone", id: "1002", wantStart: 300000, wantN: 10},
		{name: "absent", user: "nobody", id: "65534", wantErrSubstring: "no range for nobody"},
		{name: "malformed", user: "bad", id: "7", wantErrSubstring: `bad entry "bad:x:1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, n, err := parseSubIDs(strings.NewReader(file), tt.user, tt.id)
			if tt.wantErrSubstring != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstring) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErrSubstring)
				}
				return
			}
			if err != nil || start != tt.wantStart || n != tt.wantN {
				t.Fatalf("got %d, %d, %v; want %d, %d", start, n, err, tt.wantStart, tt.wantN)
			}
		})
	}
}

func TestIDShiftMap(t *testing.T) {
	s := IDShift{User: "u", UID: 1001, GID: 1002, SubUID: 100000, SubGID: 200000, Count: 65536}
	tests := []struct{ in, uid, gid int }{
		{0, 1001, 1002}, {1, 100000, 200000}, {42, 100041, 200041}, {65536, 165535, 265535}, {65537, 65537, 65537},
	}
	for _, tt := range tests {
		if got := s.mapID(tt.in, s.UID, s.SubUID); got != tt.uid {
			t.Errorf("uid %d -> %d, want %d", tt.in, got, tt.uid)
		}
		if got := s.mapID(tt.in, s.GID, s.SubGID); got != tt.gid {
			t.Errorf("gid %d -> %d, want %d", tt.in, got, tt.gid)
		}
	}
	if !(IDShift{}).identity() || s.identity() {
		t.Error("identity: only the zero shift shifts nothing")
	}
}

func TestIsMountPoint(t *testing.T) {
	const mi = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n" +
		"40 36 0:50 / /tmp/x/mnt rw - fuse.ufs ufs rw,user_id=0\n"
	tests := []struct {
		mnt  string
		want bool
	}{{"/mnt/a b", true}, {"/tmp/x/mnt", true}, {"/tmp/x", false}, {"/mnt/a\\040b", false}}
	for _, tt := range tests {
		if got := isMountPoint([]byte(mi), tt.mnt); got != tt.want {
			t.Errorf("isMountPoint(%q) = %v, want %v", tt.mnt, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		samples             []time.Duration
		median, least, most time.Duration
	}{
		{ms(5, 1, 3), 3 * time.Millisecond, time.Millisecond, 5 * time.Millisecond},
		{ms(4, 1, 3, 10), 3500 * time.Microsecond, time.Millisecond, 10 * time.Millisecond},
		{ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{nil, 0, 0, 0},
	}
	for _, tt := range tests {
		r := &Result{Samples: tt.samples}
		r.summarize()
		if r.Median != tt.median || r.Min != tt.least || r.Max != tt.most {
			t.Errorf("%v: median/min/max %v/%v/%v, want %v/%v/%v", tt.samples, r.Median, r.Min, r.Max, tt.median, tt.least, tt.most)
		}
	}
	// summarize must not reorder the samples: they are the rounds, in order.
	r := &Result{Samples: ms(3, 1, 2)}
	r.summarize()
	if !slices.Equal(r.Samples, ms(3, 1, 2)) {
		t.Errorf("samples reordered: %v", r.Samples)
	}
}

func TestSelectWorkloads(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string
		wantErr bool
	}{
		{in: []string{"readdir", "untar"}, want: []string{"readdir", "untar"}},
		{in: []string{"copy-up"}, want: []string{"copyup-append", "copyup-chmod"}},
		{in: []string{"copy-up", "copyup-chmod"}, want: []string{"copyup-append", "copyup-chmod"}},
		{in: []string{"nope"}, wantErr: true},
	}
	for _, tt := range tests {
		ws, err := selectWorkloads(tt.in)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "known:") {
				t.Errorf("%v: err %v, want one listing the known workloads", tt.in, err)
			}
			continue
		}
		var got []string
		for _, w := range ws {
			got = append(got, w.Name)
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%v: got %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	all, err := selectWorkloads(nil)
	if err != nil || len(all) != len(Workloads) {
		t.Errorf("no selection: %d workloads, %v; want all %d", len(all), err, len(Workloads))
	}
}

func TestTargets(t *testing.T) {
	res := func(w, impl string, ms int, notes ...string) *Result {
		r := &Result{Workload: w, Impl: impl, Samples: []time.Duration{time.Duration(ms) * time.Millisecond}, Notes: notes}
		r.summarize()
		return r
	}
	rep := &Report{Results: []*Result{
		res("readdir", ImplOverlay, 10), res("readdir", ImplUfs, 14), // 1.4 ≤ 1.5: met
		res("untar", ImplOverlay, 10), res("untar", ImplUfs, 30), // 3.0 > 2.5: miss
		res("copyup-chmod", ImplUfs, 5, "data copied"),
		res("copyup-chmod", ImplUfsMetacopy, 1, "metadata only"), res("copyup-chmod", ImplOverlayMetacopy, 1, "metadata only"),
		res("readdir", ImplUfsRootless, 20), res("readdir", ImplFuseRootless, 20), // not faster: miss
		{Workload: "gobuild", Impl: ImplUfs, Err: "boom"}, res("gobuild", ImplOverlay, 1),
	}}
	rep.CheckTargets()
	want := map[string]string{
		"ufs (root), readdir of a wide directory: ≤ 1.5× kernel overlayfs":              met,
		"ufs (root), untar the rootfs into the union: ≤ 2.5× kernel overlayfs":          miss,
		"ufs (root): chmod of a lower file without copying its data (-o metacopy=on)":   met,
		"ufs rootless faster than fuse-overlayfs rootless: readdir of a wide directory": miss,
		"ufs (root), go build of a module in the union: ≤ 1.2× kernel overlayfs":        "not measured: ufs failed",
	}
	got := map[string]string{}
	for _, c := range rep.Targets {
		got[c.Text] = c.Status
	}
	for text, status := range want {
		if got[text] != status {
			t.Errorf("%s: status %q, want %q", text, got[text], status)
		}
	}
	for _, c := range rep.Targets {
		if strings.Contains(c.Text, "metacopy") && c.Figure != "metadata only, 1.00 ms (overlayfs metacopy=on: metadata only, 1.00 ms; ufs default: data copied, 5.00 ms)" {
			t.Errorf("metacopy target figure %q", c.Figure)
		}
	}
	if _, ok := got["ufs (root), sequential write of a new file: ≤ 1.1× kernel overlayfs"]; ok {
		t.Error("a target without any figure is listed")
	}
}

func TestEditSpec(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	spec := `{"process":{"terminal":true,"args":["sh"]},"root":{"path":"rootfs"},
		"mounts":[{"destination":"/proc","type":"proc"},{"destination":"/sys/fs/cgroup","type":"cgroup"}],
		"linux":{"resources":{"devices":[]},"cgroupsPath":"x","namespaces":[{"type":"user"}]}}`
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := editSpec(p, "/r"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	var got struct {
		Process struct {
			Terminal bool
			Args     []string
		}
		Root struct {
			Path     string
			Readonly bool
		}
		Mounts []struct{ Type string }
		Linux  map[string]any
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Process.Terminal || !slices.Equal(got.Process.Args, []string{"/bin/true"}) || got.Root.Path != "/r" || !got.Root.Readonly {
		t.Errorf("process/root not rewritten: %s", b)
	}
	if len(got.Mounts) != 1 || got.Mounts[0].Type != "proc" {
		t.Errorf("cgroup mount kept: %s", b)
	}
	if _, ok := got.Linux["resources"]; ok {
		t.Errorf("resources kept: %s", b)
	}
	if _, ok := got.Linux["namespaces"]; !ok {
		t.Errorf("namespaces lost: %s", b)
	}
	if err := editSpec(filepath.Join(t.TempDir(), "absent.json"), "/r"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing spec: err %v, want ErrNotExist", err)
	}
}

func TestFilterTarDropsDevices(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "in.tar"), filepath.Join(dir, "out.tar")
	f, _ := os.Create(src)
	tw := tar.NewWriter(f)
	for _, h := range []*tar.Header{
		{Name: "./dev/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666},
		{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		{Name: "./run/fifo", Typeflag: tar.TypeFifo, Mode: 0o644},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("abc"))
		}
	}
	tw.Close()
	f.Close()
	if err := filterTar(src, dst); err != nil {
		t.Fatal(err)
	}
	out, _ := os.Open(dst)
	defer out.Close()
	tr := tar.NewReader(out)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "./etc/hostname" {
			if b, _ := io.ReadAll(tr); string(b) != "abc" {
				t.Errorf("content %q, want abc", b)
			}
		}
	}
	if !slices.Equal(names, []string{"./etc/", "./etc/hostname"}) {
		t.Errorf("kept %v, want the directory and the file only", names)
	}
}

func TestSplitTree(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "full")
	var want []string
	for i := range 60 {
		p := filepath.Join("a", string(rune('a'+i%5)), "f"+strings.Repeat("x", i%7)+string(rune('0'+i%10)))
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(src, "empty"), 0o700)
	n0, _, err := countTree(src)
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if !d.IsDir() {
			rel, _ := filepath.Rel(src, p)
			want = append(want, rel)
		}
		return nil
	})
	layers := []string{filepath.Join(dir, "l2"), filepath.Join(dir, "l1"), filepath.Join(dir, "l0")}
	if err := splitTree(src, layers); err != nil {
		t.Fatal(err)
	}
	// Every file is in exactly one layer, with its content; the files are
	// spread over more than one layer; directories keep their modes.
	used := map[string]bool{}
	for _, rel := range want {
		found := 0
		for _, l := range layers {
			if b, err := os.ReadFile(filepath.Join(l, rel)); err == nil {
				found++
				used[l] = true
				if string(b) != rel {
					t.Errorf("%s: content %q", rel, b)
				}
			}
		}
		if found != 1 {
			t.Errorf("%s in %d layers, want 1", rel, found)
		}
	}
	if len(used) < 2 {
		t.Errorf("files in %d layer(s), want them spread", len(used))
	}
	for _, l := range layers {
		if fi, err := os.Stat(filepath.Join(l, "a")); err == nil && fi.Mode().Perm() != 0o750 {
			t.Errorf("%s/a: mode %v, want 0750", l, fi.Mode().Perm())
		}
	}
	merged := filepath.Join(dir, "merged")
	if err := mergeLayers(t.Context(), layers, merged); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := countTree(merged); n != n0 {
		t.Errorf("merged copy has %d objects, the source had %d", n, n0)
	}
}

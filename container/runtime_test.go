package container

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRuntimeBeside: the runtime binary is used only when an executable
// file of that name lies beside urun.
func TestRuntimeBeside(t *testing.T) {
	tests := []struct {
		name  string
		setup func(dir string) error
		want  bool
	}{
		{"absent", func(string) error { return nil }, false},
		{"executable", func(d string) error { return os.WriteFile(filepath.Join(d, RuntimeName), nil, 0o755) }, true},
		{"not executable", func(d string) error { return os.WriteFile(filepath.Join(d, RuntimeName), nil, 0o644) }, false},
		{"directory", func(d string) error { return os.Mkdir(filepath.Join(d, RuntimeName), 0o755) }, false},
		{"symlink to an executable", func(d string) error {
			if err := os.WriteFile(filepath.Join(d, "real"), nil, 0o755); err != nil {
				return err
			}
			return os.Symlink("real", filepath.Join(d, RuntimeName))
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			got := RuntimeBeside(filepath.Join(dir, "urun"))
			want := ""
			if tt.want {
				want = filepath.Join(dir, RuntimeName)
			}
			if got != want {
				t.Errorf("RuntimeBeside = %q, want %q", got, want)
			}
		})
	}
}

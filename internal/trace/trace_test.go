package trace

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// withTrace points the trace at a new file for the test.
func withTrace(t *testing.T) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "trace")
	t.Setenv(EnvFile, name)
	Open()
	t.Cleanup(func() {
		out.Close()
		out, step, mark = nil, time.Time{}, time.Time{}
	})
	return name
}

var lineRE = regexp.MustCompile(`^phase=([a-z-]+) ms=([0-9]+\.[0-9]{3}) start=[0-9]+ pid=[0-9]+$`)

func phases(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		m := lineRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("bad trace line %q", l)
		}
		got = append(got, m[1])
	}
	return got
}

func TestPhases(t *testing.T) {
	name := withTrace(t)
	t.Setenv(EnvStart, "1")
	Main()
	if os.Getenv(EnvStart) != "" {
		t.Errorf("%s still set: a child would record start again", EnvStart)
	}
	Step("cli")
	Phase("mount", time.Now().Add(-time.Millisecond))
	SinceMark("teardown") // no mark yet: nothing
	Mark()
	SinceMark("teardown")
	want := []string{"start", "cli", "mount", "teardown"}
	if got := phases(t, name); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("phases %v, want %v", got, want)
	}
}

func TestOff(t *testing.T) {
	t.Setenv(EnvFile, "")
	Open()
	if Enabled() {
		t.Fatal("enabled without URUN_TRACE")
	}
	cmd := exec.Command("true")
	Pass(cmd)
	if cmd.Env != nil || cmd.ExtraFiles != nil {
		t.Errorf("Pass without a trace changed the command: %v %v", cmd.Env, cmd.ExtraFiles)
	}
	Phase("x", time.Now())
	Started("y")
}

// TestPass: the descriptor and the spawn time go before the last
// variable (reexec's entry name), and the child's Started records them.
func TestPass(t *testing.T) {
	name := withTrace(t)
	cmd := exec.Command("true")
	cmd.ExtraFiles = []*os.File{os.Stdin}
	cmd.Env = []string{"A=1", "ENTRY=x"}
	Pass(cmd)
	if len(cmd.ExtraFiles) != 2 || cmd.ExtraFiles[1] != out {
		t.Fatalf("ExtraFiles %v", cmd.ExtraFiles)
	}
	if n := len(cmd.Env); n != 4 || cmd.Env[0] != "A=1" || cmd.Env[1] != envFD+"=4" ||
		!strings.HasPrefix(cmd.Env[2], envSpawn+"=") || cmd.Env[3] != "ENTRY=x" {
		t.Fatalf("Env %q", cmd.Env)
	}
	t.Setenv(envSpawn, strings.TrimPrefix(cmd.Env[2], envSpawn+"="))
	Started("userns")
	if got := phases(t, name); len(got) != 1 || got[0] != "userns" {
		t.Errorf("phases %v", got)
	}
}

package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTracePhases(t *testing.T) {
	trace := `phase=start ms=5.000 start=1 pid=10
phase=cli ms=1.000 start=2 pid=10
phase=store ms=20.000 start=3 pid=10
phase=cli ms=0.500 start=4 pid=10
phase=userns ms=10.000 start=5 pid=11
phase=mount ms=2.000 start=6 pid=11
phase=init-start ms=7.000 start=7 pid=1
phase=init-setup ms=2.000 start=8 pid=1
phase=exec-setup ms=1.000 start=3000000 pid=1
phase=container ms=15.000 start=1000000 pid=11
phase=monitor-exit ms=1.000 start=10 pid=11
phase=teardown ms=0.500 start=11 pid=10
`
	name := filepath.Join(t.TempDir(), "trace")
	if err := os.WriteFile(name, []byte(trace), 0o644); err != nil {
		t.Fatal(err)
	}
	ph, err := tracePhases(name, 60*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// command: from exec-setup's end (4 ms) to container's (16 ms).
	for k, want := range map[string]float64{"cli": 1.5, "command": 12, "other": 60 - 55} {
		if got := ph[k]; got < want-1e-9 || got > want+1e-9 {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if ph, err := tracePhases(name+".none", time.Second); ph != nil || err != nil {
		t.Errorf("no trace file: %v, %v; want nothing", ph, err)
	}
	for _, bad := range []string{"phase=x\n", "ms=1\n", "phase=x ms=y\n"} {
		if _, _, err := readTrace(strings.NewReader(bad)); err == nil {
			t.Errorf("readTrace(%q): no error", bad)
		}
	}
}

package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// urun reports its own phases with URUN_TRACE=FILE (see internal/trace):
// one line "phase=NAME ms=DURATION start=NS pid=PID" per phase and
// process. The runtime part gives each urun sample a fresh trace file and
// URUN_TRACE_START (set by timeCommand just before the exec), and reports
// the median of each phase.

// envTrace and envTraceStart are urun's trace variables.
const (
	envTrace      = "URUN_TRACE"
	envTraceStart = "URUN_TRACE_START"
)

// urunPhase is one line of the breakdown: a phase urun records, or one
// the bench derives (command, other).
type urunPhase struct {
	name, what string
	part       bool // inside or beside another phase, not added to the total
}

var urunPhases = []urunPhase{
	{"start", "exec of the CLI and Go's start-up (runtime and package init) until main", false},
	{"cli", "flags, container state and lock, user namespace plan", false},
	{"cli-image", "--rm from an image: read it from the store's files (beside the state's creation)", true},
	{"userns", "monitor: clone into the user namespace, newuidmap/newgidmap, exec and start-up until its maps are written", false},
	{"store", "monitor: the image store step (while the container's init starts); none for --rm of an image the CLI found", false},
	{"store-open", "open the store (containers-storage: its JSON files, the overlay driver)", true},
	{"store-image", "look the image up (pull if needed)", true},
	{"store-record", "the container record and its writable layer, or for --rm the lease on the image", true},
	{"lease", "monitor: --rm of an image the CLI found: the sweep of stale state, the lease on the image", false},
	{"mount", "monitor: FUSE mount of the rootfs (--rootfs: also the sweep of stale state)", false},
	{"init-start", "init: clone into pid/mount/net/… namespaces, exec and start-up (beside store and mount)", true},
	{"init-wait", "init: waiting for the monitor's mount", true},
	{"container", "monitor: from sending the init its config until it exits (the next three, and the hand-over)", false},
	{"init-setup", "init: mounts (/proc, /dev, /sys, binds), pivot_root, hostname, loopback", true},
	{"exec-setup", "init: user, capabilities, seccomp, PATH look-up, until execve", true},
	{"command", "the command itself, from execve until the monitor sees it end (derived)", true},
	{"monitor-exit", "monitor: unmount, --rm (the store record, the state), exit", false},
	{"teardown", "CLI: from the monitor's end to its exit", false},
	{"other", "end to end minus the phases above: process exits and reaping (derived)", false},
}

// readTrace sums the durations of each phase in urun's trace file, and
// gives the end of each (the last one's, in ms since the epoch).
func readTrace(r io.Reader) (sum, end map[string]float64, err error) {
	sum, end = map[string]float64{}, map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var name string
		ms, start := -1.0, -1.0
		for f := range strings.FieldsSeq(sc.Text()) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "phase":
				name = v
			case "ms", "start":
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return nil, nil, fmt.Errorf("trace line %q: %w", sc.Text(), err)
				}
				if k == "ms" {
					ms = x
				} else {
					start = x / 1e6
				}
			}
		}
		if name == "" || ms < 0 {
			return nil, nil, fmt.Errorf("trace line %q: want phase=NAME ms=DURATION", sc.Text())
		}
		sum[name] += ms
		if start >= 0 {
			end[name] = max(end[name], start+ms)
		}
	}
	return sum, end, sc.Err()
}

// tracePhases reads the trace of one sample of total duration total, and
// adds the derived phases; none (and no error) from a urun too old to
// write a trace.
func tracePhases(path string, total time.Duration) (map[string]float64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("urun's trace: %w", err)
	}
	defer f.Close()
	ph, end, err := readTrace(f)
	if err != nil {
		return nil, err
	}
	if c, e := end["container"], end["exec-setup"]; c > 0 && e > 0 {
		ph["command"] = c - e
	}
	sum := 0.0
	for _, p := range urunPhases {
		if !p.part && p.name != "other" {
			sum += ph[p.name]
		}
	}
	ph["other"] = float64(total.Nanoseconds())/1e6 - sum
	return ph, nil
}

// writePhases prints the median of each phase of the urun runtimes.
func (r *Report) writePhases(p func(string, ...any)) {
	var rs []*Result
	for _, x := range r.Runtime {
		if len(x.Phases) > 0 {
			rs = append(rs, x)
		}
	}
	if len(rs) == 0 {
		return
	}
	p("### Where urun's time goes (median ms per phase, `URUN_TRACE`)\n\n| phase | what |")
	for _, x := range rs {
		p(" %s |", r.rtLabel(x.Impl))
	}
	p("\n|---|---|")
	for range rs {
		p("---|")
	}
	p("\n")
	for _, ph := range urunPhases {
		name := ph.name
		if ph.part {
			name = "↳ " + name
		}
		p("| %s | %s |", name, ph.what)
		for _, x := range rs {
			if v, ok := x.Phases[ph.name]; ok && len(v) > 0 {
				p(" %.1f |", medianFloat(v))
			} else {
				p(" – |")
			}
		}
		p("\n")
	}
	p("| **total** | end to end |")
	for _, x := range rs {
		p(" **%.1f** |", float64(x.Median.Nanoseconds())/1e6)
	}
	p("\n\n")
}

func (r *Report) rtLabel(impl string) string {
	for _, i := range r.RTImpls {
		if i.Name == impl {
			return i.Label
		}
	}
	return impl
}

func medianFloat(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

package bench

import (
	"fmt"
	"slices"
)

// Check is one target of the issue beside its figure.
type Check struct {
	Text   string `json:"target"`
	Figure string `json:"figure"`
	Status string `json:"status"` // "met", "**MISS**", or why it was not measured
}

const (
	met  = "met"
	miss = "**MISS**"
)

// rootTargets are the targets for ufs as root, as ratios to kernel
// overlayfs.
var rootTargets = []struct {
	workload string
	max      float64
}{
	{"seqread-cold", 1.1}, {"seqread-warm", 1.1}, {"randread", 1.1},
	{"seqwrite", 1.1}, {"seqwrite-fsync", 1.1}, {"statwalk-warm", 1.1},
	{"readdir", 1.5}, {"unlink", 1.5}, {"untar", 2.5}, {"gobuild", 1.2},
}

// CheckTargets compares the figures with the targets.
func (r *Report) CheckTargets() {
	r.Targets = nil
	add := func(text, figure, status string) { r.Targets = append(r.Targets, Check{text, figure, status}) }
	for _, t := range rootTargets {
		w := WorkloadByName(t.workload)
		text := fmt.Sprintf("ufs (root), %s: ≤ %.1f× kernel overlayfs", w.Title, t.max)
		x := r.ratio(t.workload, ImplUfs, ImplOverlay)
		if x == 0 {
			if r.result(t.workload, ImplUfs) != nil || r.result(t.workload, ImplOverlay) != nil {
				add(text, "–", "not measured: "+r.whyMissing(t.workload, ImplUfs, ImplOverlay))
			}
			continue
		}
		status := met
		if x > t.max {
			status = miss
		}
		add(text, fmt.Sprintf("%.2f×", x), status)
	}
	if c := r.result("copyup-chmod", ImplUfs); c != nil {
		text := "ufs (root): chmod of a lower file without copying its data"
		switch {
		case c.Err != "" || len(c.Samples) == 0:
			add(text, "–", "not measured: "+r.whyMissing("copyup-chmod", ImplUfs, ImplUfs))
		case slices.Contains(c.Notes, "data copied"):
			add(text, "data copied, "+fmtDur(c.Median), miss)
		default:
			add(text, "metadata only, "+fmtDur(c.Median), met)
		}
	}
	for _, w := range Workloads {
		if r.result(w.Name, ImplUfsRootless) == nil && r.result(w.Name, ImplFuseRootless) == nil {
			continue
		}
		text := fmt.Sprintf("ufs rootless faster than fuse-overlayfs rootless: %s", w.Title)
		x := r.ratio(w.Name, ImplUfsRootless, ImplFuseRootless)
		if x == 0 {
			add(text, "–", "not measured: "+r.whyMissing(w.Name, ImplUfsRootless, ImplFuseRootless))
			continue
		}
		status := met
		if x >= 1 {
			status = miss
		}
		add(text, fmt.Sprintf("%.2f×", x), status)
	}
	if len(r.Runtime) > 0 || len(r.RTSkips) > 0 {
		r.checkRuntimeTargets(add)
	}
}

func (r *Report) whyMissing(workload string, impls ...string) string {
	for _, i := range impls {
		if x := r.result(workload, i); x != nil && x.Err != "" {
			return i + " failed"
		}
		for _, s := range r.Skips {
			if s.Impl == i {
				return i + ": " + s.Reason
			}
		}
	}
	return "no figure"
}

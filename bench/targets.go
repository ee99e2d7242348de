package bench

import (
	"fmt"
	"slices"
	"strings"
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
	r.checkMetacopy(add)
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

// checkMetacopy reports the target "chmod of a lower file without copying
// its data". Like overlayfs, ufs does it only with metacopy=on, which is
// opt-in (an upper with metacopy files needs metacopy=on to be read): the
// figure is ufs-metacopy's, beside overlayfs's with metacopy=on and ufs's
// with the default options.
func (r *Report) checkMetacopy(add func(text, figure, status string)) {
	const w = "copyup-chmod"
	c, plain := r.result(w, ImplUfsMetacopy), r.result(w, ImplUfs)
	if c == nil && plain == nil {
		return
	}
	text := "ufs (root): chmod of a lower file without copying its data (-o metacopy=on)"
	var peers []string
	for _, x := range []struct{ impl, label string }{{ImplOverlayMetacopy, "overlayfs metacopy=on"}, {ImplUfs, "ufs default"}} {
		if o := r.result(w, x.impl); o != nil && o.Err == "" && len(o.Samples) > 0 {
			peers = append(peers, x.label+": "+copyNote(o)+", "+fmtDur(o.Median))
		}
	}
	beside := ""
	if len(peers) > 0 {
		beside = " (" + strings.Join(peers, "; ") + ")"
	}
	switch {
	case c == nil:
		add(text, "–"+beside, "not measured: "+ImplUfsMetacopy+" was not run")
	case c.Err != "" || len(c.Samples) == 0:
		add(text, "–"+beside, "not measured: "+r.whyMissing(w, ImplUfsMetacopy))
	case slices.Contains(c.Notes, "data copied"):
		add(text, "data copied, "+fmtDur(c.Median)+beside, miss)
	default:
		add(text, copyNote(c)+", "+fmtDur(c.Median)+beside, met)
	}
}

// copyNote is what a copy-up workload's result says it copied.
func copyNote(x *Result) string {
	if slices.Contains(x.Notes, "data copied") {
		return "data copied"
	}
	if len(x.Notes) > 0 {
		return strings.Join(x.Notes, ", ")
	}
	return "metadata only"
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

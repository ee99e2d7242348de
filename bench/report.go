package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Report is everything one run measured.
type Report struct {
	Date     time.Time `json:"date"`
	Machine  string    `json:"machine"`
	Kernel   string    `json:"kernel"`
	Smoke    bool      `json:"smoke"`
	Rounds   int       `json:"rounds"`
	Warmup   int       `json:"warmup_rounds"`
	Fixture  string    `json:"fixture,omitempty"`
	Sizes    Sizes     `json:"sizes"`
	Impls    []Impl    `json:"impls"`
	Results  []*Result `json:"results"`
	Skips    []Skip    `json:"skipped,omitempty"`
	Runtime  []*Result `json:"runtime,omitempty"`
	RTImpls  []Impl    `json:"runtime_impls,omitempty"`
	RTSkips  []Skip    `json:"runtime_skipped,omitempty"`
	RTRounds int       `json:"runtime_rounds,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
	Targets  []Check   `json:"targets,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

// NewReport describes the machine.
func NewReport(smoke bool) *Report {
	r := &Report{Date: time.Now().UTC(), Smoke: smoke}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %d GiB RAM", (kb+(1<<19))>>20)
		}
	}
	r.Machine = fmt.Sprintf("%d × %s%s", runtime.NumCPU(), model, mem)
	return r
}

func (r *Report) result(workload, impl string) *Result {
	for _, x := range r.Results {
		if x.Workload == workload && x.Impl == impl {
			return x
		}
	}
	return nil
}

// ratio is the median of impl over the median of ref on a workload, 0
// when either is missing.
func (r *Report) ratio(workload, impl, ref string) float64 {
	a, b := r.result(workload, impl), r.result(workload, ref)
	if a == nil || b == nil || a.Median == 0 || b.Median == 0 {
		return 0
	}
	return float64(a.Median) / float64(b.Median)
}

// fmtDur prints a duration with 3 significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.0f µs", float64(d)/1e3)
}

func fmtRatio(x float64) string {
	switch {
	case x == 0:
		return "–"
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func cell(r *Result) string {
	switch {
	case r == nil:
		return "–"
	case r.Err != "":
		return "error¹"
	case len(r.Samples) == 0:
		return "–"
	}
	s := fmtDur(r.Median)
	if len(r.Samples) > 1 {
		s += " (" + fmtDur(r.Min) + "–" + fmtDur(r.Max) + ")"
	}
	if len(r.Notes) > 0 {
		s += ", " + strings.Join(r.Notes, "; ")
	}
	return s
}

// WriteMarkdown writes the report's tables.
func (r *Report) WriteMarkdown(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# ubench results\n\n")
	p("%s, %s, kernel %s.", r.Date.Format("2006-01-02 15:04 UTC"), r.Machine, r.Kernel)
	if len(r.Results) > 0 {
		mode := ""
		if r.Smoke {
			mode = " **Smoke mode: small sizes, not figures to compare.**"
		}
		p(" Filesystem: %d measured round(s) after %d warm-up round(s), implementations interleaved; lower layers: %s; big file %s, write %s, fio reads %s, wide directory %d entries, %d missing-name lookups.%s\n\n",
			r.Rounds, r.Warmup, r.Fixture, fmtBytes(r.Sizes.BigFile), fmtBytes(r.Sizes.Write), fmtBytes(r.Sizes.RandRead), r.Sizes.WideEntries, r.Sizes.Lookups, mode)
		r.writeFS(p)
	} else {
		p("\n\n")
	}
	if len(r.Runtime) > 0 || len(r.RTSkips) > 0 {
		r.writeRuntime(p)
	}
	if len(r.Targets) > 0 {
		p("## Targets\n\n| target | figure | status |\n|---|---|---|\n")
		for _, c := range r.Targets {
			p("| %s | %s | %s |\n", c.Text, c.Figure, c.Status)
		}
		p("\n")
	}
	for _, s := range append(r.Skips, r.RTSkips...) {
		p("- not measured: **%s**: %s\n", s.Impl, s.Reason)
	}
	for _, n := range r.Notes {
		p("- %s\n", n)
	}
	for _, n := range r.Warnings {
		p("- harness warning: %s\n", oneLine(n))
	}
	errs := 0
	for _, x := range append(r.Results, r.Runtime...) {
		if x.Err != "" {
			if errs == 0 {
				p("\n¹ errors:\n\n")
			}
			errs++
			p("- %s on %s: `%s`\n", x.Impl, x.Workload, oneLine(x.Err))
		}
	}
	p("\n")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func fmtBytes(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%g GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%g MiB", float64(n)/(1<<20))
}

func (r *Report) writeFS(p func(string, ...any)) {
	header := func() {
		p("| workload |")
		for _, i := range r.Impls {
			p(" %s |", i.Label)
		}
		p("\n|---|")
		for range r.Impls {
			p("---|")
		}
		p("\n")
	}
	p("## Filesystem: median time (min–max)\n\n")
	header()
	for _, w := range Workloads {
		if r.result(w.Name, r.Impls[0].Name) == nil {
			continue
		}
		p("| %s |", w.Title)
		for _, i := range r.Impls {
			p(" %s |", cell(r.result(w.Name, i.Name)))
		}
		p("\n")
	}
	p("\n## Filesystem: ratio to kernel overlayfs (root) / to the plain directory (lower is better)\n\n")
	header()
	for _, w := range Workloads {
		if r.result(w.Name, r.Impls[0].Name) == nil {
			continue
		}
		p("| %s |", w.Title)
		for _, i := range r.Impls {
			p(" %s / %s |", fmtRatio(r.ratio(w.Name, i.Name, ImplOverlay)), fmtRatio(r.ratio(w.Name, i.Name, ImplPlain)))
		}
		p("\n")
	}
	p("\n")
}

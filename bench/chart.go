package bench

import (
	"fmt"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// bar is one bar of a grouped bar chart.
type bar struct {
	group  int // category
	series int
	value  float64
}

// barChart draws grouped bars; on a log scale the bars grow from base (1
// for ratios, so that a bar below 1 points down: faster than the
// reference) instead of from 0.
func barChart(title, ylabel string, groups, series []string, bars []bar, refLine bool, path string) error {
	if len(bars) == 0 {
		return nil
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, b := range bars {
		lo, hi = math.Min(lo, b.value), math.Max(hi, b.value)
	}
	if refLine {
		lo, hi = math.Min(lo, 1), math.Max(hi, 1)
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	logScale := hi/lo > 10
	base := 0.0
	if logScale {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = lo/2, hi*6 // room for the legend
		base = 1
		if !refLine {
			base = lo / 2
		}
	} else {
		p.Y.Min, p.Y.Max = 0, hi*1.35
	}
	p.NominalX(groups...)
	p.X.Min, p.X.Max = -0.5, float64(len(groups))-0.5
	width := 0.8 / float64(len(series))
	legend := map[int]bool{}
	for _, b := range bars {
		x0 := float64(b.group) - 0.4 + float64(b.series)*width
		poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: base}, {X: x0 + width, Y: base}, {X: x0 + width, Y: b.value}, {X: x0, Y: b.value}})
		if err != nil {
			return err
		}
		poly.Color = plotutil.Color(b.series)
		poly.LineStyle.Width = 0
		p.Add(poly)
		if !legend[b.series] {
			legend[b.series] = true
			p.Legend.Add(series[b.series], poly)
		}
	}
	if refLine {
		l, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(groups)) - 0.5, Y: 1}})
		if err != nil {
			return err
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.X.Tick.Label.Rotation = 0.35
	p.X.Tick.Label.XAlign = draw.XRight
	w := vg.Length(2.2*float64(len(groups))+3) * vg.Inch / 2
	return p.Save(max(w, 7*vg.Inch), 5*vg.Inch, path)
}

// WriteCharts writes one chart per family (ext: svg, png, pdf): the ratio of each implementation
// to kernel overlayfs (root); and the runtime's times.
func (r *Report) WriteCharts(dir, ext string) ([]string, error) {
	var files []string
	var series []string
	var impls []Impl
	for _, i := range r.Impls {
		if i.Name != ImplOverlay {
			impls = append(impls, i)
			series = append(series, i.Label)
		}
	}
	for _, fam := range Families {
		var groups []string
		var bars []bar
		for _, w := range Workloads {
			if w.Family != fam || r.result(w.Name, ImplOverlay) == nil {
				continue
			}
			g := len(groups)
			groups = append(groups, w.Name)
			for s, i := range impls {
				if x := r.ratio(w.Name, i.Name, ImplOverlay); x > 0 {
					bars = append(bars, bar{g, s, x})
				}
			}
		}
		if len(bars) == 0 {
			continue
		}
		path := filepath.Join(dir, "fs-"+fam+"."+ext)
		title := fmt.Sprintf("ufs and peers, %s workloads: time relative to kernel overlayfs (root), lower is better", fam)
		if err := barChart(title, "time / kernel overlayfs (root)", groups, series, bars, true, path); err != nil {
			return files, fmt.Errorf("chart %s: %w", fam, err)
		}
		files = append(files, path)
	}
	if len(r.Runtime) > 0 {
		var groups []string
		var bars []bar
		for _, x := range r.Runtime {
			if x.Median > 0 {
				bars = append(bars, bar{len(groups), 0, float64(x.Median) / 1e6})
				groups = append(groups, x.Impl)
			}
		}
		path := filepath.Join(dir, "runtime."+ext)
		if err := barChart("`true` in a container, end to end (median)", "milliseconds", groups, []string{"median"}, bars, false, path); err != nil {
			return files, fmt.Errorf("chart runtime: %w", err)
		}
		files = append(files, path)
	}
	return files, nil
}

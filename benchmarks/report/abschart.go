package main

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// An absChart is one absolute chart a family without crypto/tls gets: its
// main metric, and BenchmarkProxy's proxy CPU, the other thing its proxies
// are told apart by (benchmarks/RESULTS.md, "The proxy targets").
type absChart struct {
	unit   string
	suffix string // of the file name, after the family's: "" for the main metric
	title  string // the chart's, before the section's label
	higher bool   // higher is better
}

func absCharts(f *family) []absChart {
	out := []absChart{{unit: f.metric(), title: title(f), higher: f.throughput}}
	if f.hasUnit("proxy-cpu-s/GiB") {
		out = append(out, absChart{unit: "proxy-cpu-s/GiB", suffix: "-cpu", title: f.name + ": CPU seconds of the proxy's processes per GiB moved"})
	}
	return out
}

// chartKey is the key of a's chart in section.charts: the family's name for
// its main metric, as for a ratio chart.
func (a absChart) chartKey(f *family) string {
	if a.suffix == "" {
		return f.name
	}
	return f.name + " " + a.unit
}

// newAbsChart returns the chart of a family without crypto/tls: its values
// in a.unit, since there is no ratio to take. It returns false where the
// family has crypto/tls (newChart draws it) or no value in a.unit.
func newAbsChart(f *family, label string, a absChart) (*chart, bool) {
	if f.hasBaseline() || len(f.conns) == 0 || !f.hasUnit(a.unit) {
		return nil, false
	}
	better := "lower is better"
	if a.higher {
		better = "higher is better"
	}
	sub := "absolute values, not ratios: there is no crypto/tls row to compare against; " + f.runsText()
	if _, hi := f.runCounts(); hi >= minCI { // some bar has whiskers
		sub += "; whiskers: the median's 95% confidence interval"
	} else {
		sub += "; no whiskers: a 95% confidence interval needs 6 runs"
	}
	c := &chart{
		title:    a.title + " · " + label,
		subtitle: sub,
		faster:   1,
		conns:    slices.Clone(f.conns),
		abs:      true,
		unit:     a.unit,
		ends:     [2]string{"← worse", "better →"},
	}
	if !a.higher {
		c.faster = -1
		c.ends = [2]string{"← better", "worse →"}
	}
	for i, conn := range c.conns {
		if conn == "" { // a benchmark without conn=
			c.conns[i] = a.unit
		}
	}
	// Only the keys that tell rows apart label them: every BenchmarkProxy
	// row moves 32 MiB.
	varies := make([]bool, len(f.rowKeys))
	for i := range f.rowKeys {
		for _, r := range f.rows {
			varies[i] = varies[i] || r.labels[i] != f.rows[0].labels[i]
		}
	}
	if !slices.Contains(varies, true) {
		for i := range varies {
			varies[i] = true
		}
	}
	bmin, bmax := math.Inf(1), 0.0
	for _, r := range f.rows {
		var labels []string
		for i, l := range r.labels {
			if l != "" && varies[i] {
				labels = append(labels, showValue(f.rowKeys[i], l))
			}
		}
		g := chartGroup{label: strings.Join(labels, " · ")}
		if g.label == "" {
			g.label = f.name
		}
		for _, conn := range f.conns {
			s, ok := summarize(r.cells[conn][a.unit])
			g.bars = append(g.bars, chartBar{ratio: ratio{r: s.med, lo: s.lo, hi: s.hi}, ok: ok})
			if ok && s.med > 0 {
				bmin, bmax = min(bmin, s.med), max(bmax, s.med)
			}
		}
		c.groups = append(c.groups, g)
	}
	// A linear axis from 0 reads best, unless the values span an order of
	// magnitude and it would squeeze the small ones to slivers: in the VM
	// the tcp row moves 10 times the TLS rows.
	c.linear = bmax <= 10*bmin
	c.axis = a.unit + ", " + better
	if !c.linear {
		c.axis = a.unit + ", log scale, " + better
	}
	return c, true
}

// absAxis places an absolute chart's axis: from 0 on a linear one, around
// the bars on a log one, and the whiskers within reason, as for ratios.
func (c *chart) absAxis(l *layout, fs *faces) {
	bmin, bmax := math.Inf(1), 0.0
	wmin, wmax := math.Inf(1), 0.0
	for _, g := range c.groups {
		for _, b := range g.bars {
			if b.ok && b.r > 0 {
				bmin, bmax = min(bmin, b.r), max(bmax, b.r)
				if b.measured() && b.lo > 0 {
					wmin, wmax = min(wmin, b.lo), max(wmax, b.hi)
				}
			}
		}
	}
	if bmax == 0 { // nothing to draw
		bmin, bmax = 1, 1
	}
	l.linear = c.linear
	l.dmax = max(bmax*1.06, min(wmax, bmax*1.5))
	if c.linear {
		l.dmin = 0
	} else {
		// From and to round values, so that the axis's ends are labelled.
		l.dmin = snap125(min(bmin/1.06, max(wmin, bmin/1.5)), false)
		l.dmax = snap125(l.dmax, true)
	}
	measure := func(s string) float64 { return width(fs.small, s) }
	l.ticks = absTicks(l.dmin, l.dmax, c.linear, l.x, measure)
}

// absTicks picks the densest round values between lo and hi whose labels,
// measure wide, stay apart where x places them: steps of 1, 2 or 5 times a
// power of ten on a linear axis, 1-2-5 then powers of ten on a log one.
func absTicks(lo, hi float64, linear bool, x func(float64) float64, measure func(string) float64) []float64 {
	var cands [][]float64
	round := func(v float64) float64 {
		v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
		return v
	}
	if linear {
		for e := math.Floor(math.Log10(hi-lo)) - 2; e <= math.Floor(math.Log10(hi-lo))+1; e++ {
			for _, m := range []float64{1, 2, 5} {
				step := m * math.Pow(10, e)
				var t []float64
				for k := math.Ceil(lo / step); k*step <= hi; k++ {
					t = append(t, round(k*step))
				}
				cands = append(cands, t)
			}
		}
	} else {
		for _, ms := range [][]float64{{1, 2, 5}, {1, 3}, {1}} {
			var t []float64
			for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
				for _, m := range ms {
					if v := round(m * math.Pow(10, e)); lo <= v && v <= hi {
						t = append(t, v)
					}
				}
			}
			cands = append(cands, t)
		}
	}
	for _, t := range cands {
		ok := len(t) >= 2
		for i := 1; ok && i < len(t); i++ {
			gap := (measure(absLabel(t[i]))+measure(absLabel(t[i-1])))/2 + 16
			ok = x(t[i])-x(t[i-1]) >= gap
		}
		if ok {
			return t
		}
	}
	if len(cands) > 0 && len(cands[len(cands)-1]) == 1 {
		return cands[len(cands)-1]
	}
	return nil
}

// absLabel is a tick's label: "0.5", "20", "1,000".
func absLabel(v float64) string {
	if v >= 1000 {
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// valueLabel is a bar's value as the tables show it.
func (c *chart) valueLabel(v float64) string {
	if c.unit == "ns/op" {
		return duration(v)
	}
	return number(v)
}

// snap125 rounds v down (or up) to 1, 2 or 5 times a power of ten.
func snap125(v float64, up bool) float64 {
	e := math.Pow(10, math.Floor(math.Log10(v)))
	ms := []float64{1, 2, 5, 10}
	if up {
		for _, m := range ms {
			if m*e >= v*(1-1e-9) {
				return m * e
			}
		}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if m := ms[i]; m*e <= v*(1+1e-9) {
			return m * e
		}
	}
	return v
}

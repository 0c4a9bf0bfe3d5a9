package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/perf/benchmath"
)

const (
	baseline = "crypto-tls"   // the conn every ratio is taken against
	anchor   = "openssl-ktls" // Sendfile's outside reference
)

// connOrder is the column order of the conns the harness knows; others
// follow in the order they first appear. The bare engine names are the
// older engine= key's values.
var connOrder = []string{"tcp", baseline, "ktls-stdlib", "stdlib", "ktls-userspace", "userspace", "ktls-kernel", "kernel", anchor}

// A family is one benchmark function's results in one run, as a table:
// one row per sub-benchmark apart from the conn, one column per conn.
type family struct {
	name       string
	throughput bool     // compared by MB/s, higher is faster; else by ns/op, lower is faster
	rowKeys    []string // the names of the row label columns
	conns      []string // the columns, in connOrder
	rows       []*row
}

type row struct {
	labels []string                        // aligned with family.rowKeys; "" where the row lacks the key
	cells  map[string]map[string][]float64 // conn → unit → one value per repeated run
}

// connKeys name the column key: conn= is the harness's, engine= an older one.
var connKeys = []string{"conn", "engine"}

// families groups a run's results by benchmark function, in the order they
// first appear.
func families(ru *dataset) []*family {
	var (
		out    []*family
		byName = map[string][]result{}
	)
	for _, r := range ru.results {
		if _, ok := byName[r.family]; !ok {
			out = append(out, &family{name: r.family})
		}
		byName[r.family] = append(byName[r.family], r)
	}
	for _, f := range out {
		f.fill(byName[f.name])
	}
	return out
}

func (f *family) fill(rs []result) {
	connKey := ""
	for _, k := range connKeys {
		if slices.ContainsFunc(rs, func(r result) bool { return hasKey(r.parts, k) }) {
			connKey = k
			break
		}
	}
	procs := map[int]bool{}
	for _, r := range rs {
		procs[r.procs] = true
		if _, ok := r.metrics["MB/s"]; ok {
			f.throughput = true
		}
	}
	// Row keys: every key but the conn, in first-seen order; a part without
	// '=' is named by its position.
	keyOf := func(i int, p kv) string {
		if p.key == "" {
			return "#" + strconv.Itoa(i)
		}
		return p.key
	}
	for _, r := range rs {
		for i, p := range r.parts {
			if k := keyOf(i, p); (connKey == "" || p.key != connKey) && !slices.Contains(f.rowKeys, k) {
				f.rowKeys = append(f.rowKeys, k)
			}
		}
	}
	if len(procs) > 1 {
		f.rowKeys = append(f.rowKeys, "procs")
	}
	byLabel := map[string]*row{}
	var seenConns []string
	for _, r := range rs {
		labels := make([]string, len(f.rowKeys))
		conn := ""
		for i, p := range r.parts {
			if p.key == connKey && connKey != "" {
				conn = p.value
				continue
			}
			labels[slices.Index(f.rowKeys, keyOf(i, p))] = p.value
		}
		if len(procs) > 1 {
			labels[len(labels)-1] = strconv.Itoa(r.procs)
		}
		id := strings.Join(labels, "\x00")
		rw := byLabel[id]
		if rw == nil {
			rw = &row{labels: labels, cells: map[string]map[string][]float64{}}
			byLabel[id] = rw
			f.rows = append(f.rows, rw)
		}
		if rw.cells[conn] == nil {
			rw.cells[conn] = map[string][]float64{}
		}
		for unit, v := range r.metrics {
			rw.cells[conn][unit] = append(rw.cells[conn][unit], v)
		}
		if !slices.Contains(seenConns, conn) {
			seenConns = append(seenConns, conn)
		}
	}
	for _, c := range connOrder {
		if slices.Contains(seenConns, c) {
			f.conns = append(f.conns, c)
		}
	}
	for _, c := range seenConns {
		if !slices.Contains(f.conns, c) {
			f.conns = append(f.conns, c)
		}
	}
}

func hasKey(parts []kv, key string) bool {
	return slices.ContainsFunc(parts, func(p kv) bool { return p.key == key })
}

// metric is the unit a family's ratios compare.
func (f *family) metric() string {
	if f.throughput {
		return "MB/s"
	}
	return "ns/op"
}

// hasBaseline reports whether any row has crypto/tls to compare against.
func (f *family) hasBaseline() bool {
	return slices.ContainsFunc(f.rows, func(r *row) bool { return r.cells[baseline] != nil })
}

// others are the conns compared against the baseline.
func (f *family) others() []string {
	var out []string
	for _, c := range f.conns {
		if c != baseline {
			out = append(out, c)
		}
	}
	return out
}

// kernelConn is the conn compared with the OpenSSL anchor, "" if none.
func (f *family) kernelConn() string {
	if !slices.Contains(f.conns, anchor) {
		return ""
	}
	for _, c := range []string{"ktls-kernel", "kernel"} {
		if slices.Contains(f.conns, c) {
			return c
		}
	}
	return ""
}

// hasUnit reports whether any cell has a value in unit.
func (f *family) hasUnit(unit string) bool {
	for _, r := range f.rows {
		for _, m := range r.cells {
			if len(m[unit]) > 0 {
				return true
			}
		}
	}
	return false
}

// runCounts returns the fewest and most repeated runs of any cell.
func (f *family) runCounts() (lo, hi int) {
	unit := f.metric()
	for _, r := range f.rows {
		for _, m := range r.cells {
			n := len(m[unit])
			if n == 0 {
				continue
			}
			if lo == 0 || n < lo {
				lo = n
			}
			hi = max(hi, n)
		}
	}
	return lo, hi
}

// runsText says how many runs the medians are of.
func (f *family) runsText() string {
	lo, hi := f.runCounts()
	switch {
	case hi == 1:
		return "one run"
	case lo != hi:
		return fmt.Sprintf("median of %d to %d runs", lo, hi)
	}
	return fmt.Sprintf("median of %d runs", hi)
}

// The statistics are benchstat's (golang.org/x/perf/cmd/benchstat) with its
// defaults: benchmath.AssumeNothing, which makes no assumption about the
// distribution of the runs (on a busy machine they are anything but
// normal), summarizes each cell by its median with a confidence interval
// from order statistics, and compares two cells by the Mann-Whitney U test.
const confidence = 0.95 // benchstat's -confidence default

// minCI is the fewest runs that give a median a confidence interval at
// 95%: benchmath's order statistics need 6 (its warning says so).
const minCI = 6

// thresholds holds benchstat's alpha: a p-value above 0.05 is "~".
var thresholds = benchmath.DefaultThresholds

// A summary is the repeated runs of one value: their median and its 95%
// confidence interval. lo and hi are infinite with too few runs for one
// (fewer than 6 at 95%), and warnings then says so as benchstat does.
type summary struct {
	med, lo, hi float64
	n           int
	warnings    []string
	sample      *benchmath.Sample // for compare
}

func summarize(xs []float64) (summary, bool) {
	if len(xs) == 0 {
		return summary{}, false
	}
	smp := benchmath.NewSample(slices.Clone(xs), &thresholds) // NewSample sorts in place
	sm := benchmath.AssumeNothing.Summary(smp, confidence)
	s := summary{med: sm.Center, lo: sm.Lo, hi: sm.Hi, n: len(xs), sample: smp}
	for _, w := range sm.Warnings {
		s.warnings = append(s.warnings, w.Error())
	}
	return s, true
}

// hasCI reports whether the runs were enough for a confidence interval.
func (s summary) hasCI() bool { return !math.IsInf(s.lo, 0) && !math.IsInf(s.hi, 0) }

// pct is the confidence interval as benchstat's ± column shows it: the
// farther bound from the median, in percent of it ("3%"), "∞" without an
// interval.
func (s summary) pct() string {
	return benchmath.Summary{Center: s.med, Lo: s.lo, Hi: s.hi}.PctRangeString()
}

// A ratio compares a conn's median with the baseline's: both MB/s (higher is
// faster) or both ns/op (lower is faster). lo and hi bound it by pairing the
// two medians' confidence intervals worst and best (the conn's lower bound
// over the baseline's upper, and back), infinite where either side has no
// interval; they are the charts' whiskers. The verdict is benchstat's: the
// Mann-Whitney U test of the two sides' runs, not significant ("~") where
// its p-value is above alpha.
type ratio struct {
	r, lo, hi float64
	pct       string                // the conn's own ±, which is also the ratio's with the baseline's median fixed
	cmp       *benchmath.Comparison // nil for an absolute chart's bar
	warnings  []string              // the conn's summary's and the comparison's
}

func compare(x, base summary) (ratio, bool) {
	if base.med <= 0 || x.n == 0 || base.n == 0 {
		return ratio{}, false
	}
	r := ratio{r: x.med / base.med, lo: math.Inf(-1), hi: math.Inf(1), pct: x.pct(), warnings: slices.Clone(x.warnings)}
	if x.hasCI() && base.hasCI() && base.lo > 0 {
		r.lo, r.hi = x.lo/base.hi, x.hi/base.lo
	}
	// benchstat compares the old (the baseline) with the new.
	cmp := benchmath.AssumeNothing.Compare(base.sample, x.sample)
	r.cmp = &cmp
	for _, w := range cmp.Warnings {
		r.warnings = append(r.warnings, w.Error())
	}
	return r, true
}

// measured reports whether lo and hi are finite, from enough runs for both
// confidence intervals: the charts draw them as whiskers.
func (r ratio) measured() bool { return !math.IsInf(r.lo, 0) && !math.IsInf(r.hi, 0) }

// noisy reports that the difference is not significant: the U test's
// p-value is above alpha, marked "~" as benchstat marks it.
func (r ratio) noisy() bool { return r.cmp != nil && r.cmp.P > r.cmp.Alpha }

// String is "1.50× ±3% (p=0.000 n=10)": the ratio of the medians, the
// conn's confidence interval, the U test's p-value and the runs per side
// (n=10+8, baseline first, where they differ), as benchstat prints them;
// "~1.01× ±2% (p=0.481 n=10)" where the difference is not significant.
// The warnings are the table's footnotes, not part of the string.
func (r ratio) String() string {
	s := fmt.Sprintf("%.2f×", r.r)
	if r.noisy() {
		s = "~" + s
	}
	s += " ±" + r.pct
	if r.cmp != nil {
		s += " (" + r.cmp.String() + ")"
	}
	return s
}

// ratio is conn's ratio against the conn against in unit, in row r.
func (r *row) ratio(conn, against, unit string) (ratio, bool) {
	x, ok := summarize(r.cells[conn][unit])
	if !ok {
		return ratio{}, false
	}
	b, ok := summarize(r.cells[against][unit])
	if !ok {
		return ratio{}, false
	}
	return compare(x, b)
}

func geomean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += math.Log(x)
	}
	return math.Exp(s / float64(len(xs)))
}

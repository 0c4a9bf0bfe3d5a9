package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
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

// A summary is the repeated runs of one value.
type summary struct {
	med, min, max float64
	n             int
}

func summarize(xs []float64) (summary, bool) {
	if len(xs) == 0 {
		return summary{}, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return summary{med: med, min: s[0], max: s[n-1], n: n}, true
}

// spread is half the min–max range relative to the median, as benchstat's
// ±; meaningful with 3 runs or more.
func (s summary) spread() float64 {
	if s.med == 0 {
		return 0
	}
	return (s.max - s.min) / 2 / math.Abs(s.med)
}

// A ratio compares a conn's median with the baseline's: both MB/s (higher is
// faster) or both ns/op (lower is faster). lo and hi bound it from the
// repeated runs: the worst and best pairing of the two min–max ranges.
type ratio struct {
	r, lo, hi float64
	runs      int // the fewer repeated runs of the two sides
}

func compare(x, base summary) (ratio, bool) {
	if base.med <= 0 || base.min <= 0 || x.n == 0 {
		return ratio{}, false
	}
	return ratio{r: x.med / base.med, lo: x.min / base.max, hi: x.max / base.min, runs: min(x.n, base.n)}, true
}

// measured reports whether lo and hi come from enough runs to mean something.
func (r ratio) measured() bool { return r.runs >= 3 }

// noisy reports whether the runs' ranges overlap, so that the two could be
// equally fast: marked "~".
func (r ratio) noisy() bool { return r.measured() && r.lo <= 1 && 1 <= r.hi }

// String is "1.23×", or with 3 runs or more "1.23× (1.19–1.27)" with the
// range, and "~1.02× (0.97–1.06)" where that range includes 1.
func (r ratio) String() string {
	s := fmt.Sprintf("%.2f×", r.r)
	if r.noisy() {
		s = "~" + s
	}
	if r.measured() {
		s += fmt.Sprintf(" (%.2f–%.2f)", r.lo, r.hi)
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

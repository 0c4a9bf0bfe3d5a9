package main

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A section is one run as the report shows it.
type section struct {
	data     *dataset
	label    string // "native", names the charts
	machine  string // -machine
	command  string // -command
	families []*family
	charts   map[string]string // family name → chart file name; an absolute chart's of a second unit under "name unit" (absChart.chartKey)
}

// descriptions name the harness's benchmarks in headings and chart titles.
var descriptions = map[string]string{
	"Send":      "bulk send",
	"Receive":   "bulk receive",
	"Sendfile":  "io.Copy from a file (sendfile)",
	"RoundTrip": "1 KiB request/response",
	"Handshake": "handshake + install",
	"Write":     "bulk write",
	"Proxy":     "TLS-terminating proxy to a plain TCP backend, MB/s in the row's direction",
}

func title(f *family) string {
	if d, ok := descriptions[f.name]; ok {
		return f.name + ": " + d
	}
	return f.name
}

// resources are the per-conn absolute tables, the first group present wins:
// BenchmarkProxy's first, since -benchmem (which vmtest passes) adds B/op
// to its rows, the allocations of the client and backend, not the proxy's;
// BenchmarkIdle's before B/op for the same reason.
// ranged tables show each median's min–max range over the runs.
var resources = [][]struct {
	unit, caption string
	ranged        bool
}{
	{
		// BenchmarkProxy: the proxy is another process.
		{"proxy-cpu-s/GiB", "CPU seconds of the proxy's processes per GiB moved (proxy-cpu-s/GiB, user + system from /proc/PID/stat of the proxy and its descendants), lower is better", true},
		{"proxy-io-B/B", "Bytes the proxy's processes passed to read- and write-like calls per byte moved (proxy-io-B/B, rchar + wchar of /proc/PID/io: read(2), write(2) and their vector forms count, recv(2), send(2) and splice(2) do not), about 2 where every byte is read into the process and written out", true},
	},
	{
		// BenchmarkIdle: what an idle pair holds; its time per op is
		// only how long opening, measuring and closing them took.
		{"heap-B/pair", "Live heap per idle pair, both ends (heap-B/pair: growth of HeapAlloc after two GCs, divided by the pairs), lower is better", true},
		{"kernel-slab-B/pair", "Kernel slab memory per idle pair (kernel-slab-B/pair: growth of /proc/meminfo's Slab, the whole machine's, divided by the pairs), lower is better", true},
		{"stack-B/pair", "Goroutine stacks per idle pair (stack-B/pair: growth of StackInuse, divided by the pairs; the server's reading goroutine), lower is better", true},
	},
	{
		{"B/MiB", "Bytes allocated per MiB moved (B/MiB), lower is better", false},
		{"cpu-s/GiB", "CPU seconds per GiB moved (cpu-s/GiB, user + system of the whole process), lower is better", false},
	},
	{
		{"B/op", "Bytes allocated per operation (B/op), lower is better", false},
		{"allocs/op", "Allocations per operation (allocs/op), lower is better", false},
	},
}

func markdown(b *strings.Builder, docTitle, links string, secs []*section) {
	fmt.Fprintf(b, "# %s\n", docTitle)
	for _, s := range secs {
		s.markdown(b, links)
	}
}

func (s *section) markdown(b *strings.Builder, links string) {
	fmt.Fprintf(b, "\n## %s\n\n", s.label)
	ru := s.data
	src := code(filepath.Base(ru.source))
	if ru.prefix != "" {
		src += ", lines `[" + ru.prefix + "]`"
	}
	fmt.Fprintf(b, "- Input: %s\n", src)
	if s.machine != "" {
		fmt.Fprintf(b, "- Machine: %s\n", s.machine)
	}
	var env []string
	for _, c := range ru.config {
		if c.key != "pkg" && c.key != "kernel" {
			env = append(env, code(c.key+": "+c.value))
		}
	}
	if len(env) > 0 {
		fmt.Fprintf(b, "- Go reports: %s\n", strings.Join(env, ", "))
	}
	if k := kernel(ru); k != "" {
		fmt.Fprintf(b, "- Kernel: %s\n", k)
	}
	for _, c := range ru.config {
		if c.key == "pkg" {
			fmt.Fprintf(b, "- Package: %s\n", code(c.value))
		}
	}
	if s.command != "" {
		fmt.Fprintf(b, "- Command: %s\n", code(s.command))
	}
	fmt.Fprintf(b, "\nThe statistics are benchstat's (golang.org/x/perf/benchmath, no assumption about the distribution of the runs). "+
		"Each ratio is a conn's median over the repeated runs divided by crypto/tls's median in the same row. "+
		"± is the 95%% confidence interval of a median, in percent of it (∞ with fewer than 6 runs, too few for one). "+
		"p is the Mann-Whitney U test's p-value of the conn's runs against crypto/tls's, n the runs per side (crypto/tls's first where they differ); "+
		"~ marks a ratio whose difference from 1× is not significant (p > 0.05). Numbered notes are benchstat's warnings. – means not measured.\n")
	for _, f := range s.families {
		f.markdown(b, s.label, links, s.charts)
	}
}

func kernel(ru *dataset) string {
	var parts []string
	for _, c := range ru.config {
		if c.key == "kernel" {
			parts = append(parts, code(c.value))
		}
	}
	if len(parts) == 0 && ru.prefix != "" {
		k := code(ru.prefix)
		if ru.release != "" {
			k += " (" + code(ru.release) + ")"
		}
		parts = append(parts, k)
	}
	return strings.Join(parts, ", ")
}

// markdown writes f's tables and links its charts, named in charts as
// section.charts does, each link prefixed with links.
func (f *family) markdown(b *strings.Builder, label, links string, charts map[string]string) {
	fmt.Fprintf(b, "\n### %s\n", title(f))
	runs := f.runsText()
	if f.hasBaseline() {
		fmt.Fprintf(b, "\n**%s; %s**\n\n", f.axis(), runs)
		f.ratioTable(b)
	} else {
		fmt.Fprintf(b, "\n**%s (no crypto-tls row to compare against); %s%s**\n\n", f.metricName(), runs, rangeNote(f))
		f.absTable(b, f.metric(), true)
	}
	for _, group := range resources {
		shown := false
		for _, r := range group {
			if f.hasUnit(r.unit) {
				note := ""
				if r.ranged {
					note = rangeNote(f)
				}
				fmt.Fprintf(b, "\n**%s%s**\n\n", r.caption, note)
				f.absTable(b, r.unit, r.ranged)
				shown = true
			}
		}
		if shown {
			break
		}
	}
	if f.hasBaseline() {
		if chart := charts[f.name]; chart != "" {
			fmt.Fprintf(b, "\n![%s, %s: %s](%s)\n", f.name, label, f.axis(), links+chart)
		}
		return
	}
	for _, a := range absCharts(f) {
		if chart := charts[a.chartKey(f)]; chart != "" {
			better := "lower is better"
			if a.higher {
				better = "higher is better"
			}
			fmt.Fprintf(b, "\n![%s, %s: %s, %s, absolute](%s)\n", f.name, label, a.unit, better, links+chart)
		}
	}
}

// axis says what a ratio means, for table captions and chart axes.
func (f *family) axis() string {
	if f.throughput {
		return "× crypto/tls MB/s (higher is faster)"
	}
	return "× crypto/tls time per op (lower is faster)"
}

func (f *family) metricName() string {
	if f.throughput {
		return "MB/s"
	}
	return "time per op"
}

func (f *family) header(b *strings.Builder, cols []string) {
	var head, align []string
	for _, k := range f.rowKeys {
		head = append(head, keyName(k))
		align = append(align, "---")
	}
	if len(f.rowKeys) == 0 {
		head, align = append(head, "benchmark"), append(align, "---")
	}
	for _, c := range cols {
		head = append(head, escape(c))
		align = append(align, "---:")
	}
	fmt.Fprintf(b, "| %s |\n|%s|\n", strings.Join(head, " | "), strings.Join(align, "|"))
}

func (f *family) labelCells(r *row) []string {
	if len(f.rowKeys) == 0 {
		return []string{escape(f.name)}
	}
	out := make([]string, len(r.labels))
	for i, l := range r.labels {
		out[i] = escape(showValue(f.rowKeys[i], l))
	}
	return out
}

func (f *family) ratioTable(b *strings.Builder) {
	unit := f.metric()
	others := f.others()
	kc := f.kernelConn()
	cols := []string{"crypto/tls " + unit}
	if !f.throughput {
		cols[0] = "crypto/tls time/op"
	}
	cols = append(cols, others...)
	if kc != "" {
		cols = append(cols, kc+" ÷ "+anchor)
	}
	f.header(b, cols)
	// Each ratio column's ratios, for the geometric mean.
	accs := make([][]float64, len(others)+1)
	var ns notes
	defer ns.write(b)
	for _, r := range f.rows {
		cells := f.labelCells(r)
		if base, ok := summarize(r.cells[baseline][unit]); ok {
			cells = append(cells, absolute(unit, base)+ns.mark(base.warnings))
		} else {
			cells = append(cells, "–")
		}
		for i, c := range others {
			x, ok := r.ratio(c, baseline, unit)
			if !ok {
				cells = append(cells, "–")
				continue
			}
			cells = append(cells, x.String()+ns.mark(x.warnings))
			if x.r > 0 {
				accs[i] = append(accs[i], x.r)
			}
		}
		if kc != "" {
			if x, ok := r.ratio(kc, anchor, unit); ok {
				cells = append(cells, x.String()+ns.mark(x.warnings))
				if x.r > 0 {
					accs[len(others)] = append(accs[len(others)], x.r)
				}
			} else {
				cells = append(cells, "–")
			}
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
	}
	if len(f.rows) < 2 {
		return
	}
	cells := []string{"**geometric mean**"}
	for range max(len(f.rowKeys), 1) - 1 {
		cells = append(cells, "")
	}
	cells = append(cells, "")
	n := len(others)
	if kc != "" {
		n++
	}
	for _, rs := range accs[:n] {
		switch {
		case len(rs) == 0:
			cells = append(cells, "–")
		case len(rs) < len(f.rows):
			cells = append(cells, fmt.Sprintf("**%.2f×** (%d of %d rows)", geomean(rs), len(rs), len(f.rows)))
		default:
			cells = append(cells, fmt.Sprintf("**%.2f×**", geomean(rs)))
		}
	}
	fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
}

// rangeNote says what the ± of a ranged table means, where some cell has
// more than one run.
func rangeNote(f *family) string {
	if _, hi := f.runCounts(); hi >= 2 {
		return "; medians ± their 95% confidence interval"
	}
	return ""
}

// absTable shows the median of unit per conn, every conn a column; ranged,
// with its confidence interval from 2 runs up (± ∞ with a note below 6).
func (f *family) absTable(b *strings.Builder, unit string, ranged bool) {
	var ns notes
	defer ns.write(b)
	cols := make([]string, len(f.conns))
	for i, c := range f.conns {
		cols[i] = c
		if c == "" { // a benchmark without conn=
			cols[i] = unit
		}
	}
	f.header(b, cols)
	for _, r := range f.rows {
		cells := f.labelCells(r)
		for _, c := range f.conns {
			s, ok := summarize(r.cells[c][unit])
			switch {
			case !ok:
				cells = append(cells, "–")
			case unit == "ns/op":
				cells = append(cells, duration(s.med))
			case strings.HasSuffix(unit, "/op"):
				cells = append(cells, count(s.med))
			case ranged && s.n >= 2:
				cells = append(cells, number(s.med)+" ±"+s.pct()+ns.mark(s.warnings))
			default:
				cells = append(cells, number(s.med))
			}
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(cells, " | "))
	}
}

// absolute formats the baseline's own median, with its confidence interval
// from 2 runs up.
func absolute(unit string, s summary) string {
	v := number(s.med)
	if unit == "ns/op" {
		v = duration(s.med)
	}
	if s.n >= 2 {
		v += " ±" + s.pct()
	}
	return v
}

// notes numbers a table's warnings, each text once, as benchstat numbers
// its footnotes: a cell ends in ¹, and the table is followed by "¹ need >=
// 6 samples for confidence interval at level 0.95".
type notes struct{ texts []string }

// mark returns the markers of warnings, " ¹" or " ¹ ²", "" for none.
func (ns *notes) mark(warnings []string) string {
	var out strings.Builder
	for _, w := range warnings {
		i := slices.Index(ns.texts, w)
		if i < 0 {
			i = len(ns.texts)
			ns.texts = append(ns.texts, w)
		}
		out.WriteString(" " + superscript(i+1))
	}
	return out.String()
}

func (ns *notes) write(b *strings.Builder) {
	if len(ns.texts) == 0 {
		return
	}
	b.WriteString("\n")
	for i, t := range ns.texts {
		fmt.Fprintf(b, "- %s %s\n", superscript(i+1), t)
	}
}

func superscript(n int) string {
	const digits = "⁰¹²³⁴⁵⁶⁷⁸⁹"
	var out []rune
	for _, c := range strconv.Itoa(n) {
		out = append(out, []rune(digits)[c-'0'])
	}
	return string(out)
}

func keyName(k string) string {
	switch {
	case strings.HasPrefix(k, "#"):
		return "case"
	case k == "procs":
		return "GOMAXPROCS"
	}
	return escape(k)
}

var sizeRE = regexp.MustCompile(`^([0-9]+)([KMG]iB|B)$`)

// showValue spells sizes for people: "16KiB" and "16384" become "16 KiB".
func showValue(key, v string) string {
	if m := sizeRE.FindStringSubmatch(v); m != nil {
		return m[1] + " " + m[2]
	}
	if key == "size" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			for _, u := range []struct {
				name  string
				shift uint
			}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
				if n%(1<<u.shift) == 0 {
					return strconv.FormatInt(n>>u.shift, 10) + " " + u.name
				}
			}
			return v + " B"
		}
	}
	return v
}

// number formats with three significant digits, grouping thousands.
func number(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	}
	return strconv.FormatFloat(v, 'f', 2-int(math.Floor(math.Log10(a))), 64)
}

// count formats a count (B/op, allocs/op): whole unless a median of two.
func count(v float64) string {
	if v == math.Trunc(v) {
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	}
	return number(v)
}

func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func duration(ns float64) string {
	switch {
	case ns >= 1e9:
		return number(ns/1e9) + " s"
	case ns >= 1e6:
		return number(ns/1e6) + " ms"
	case ns >= 1e3:
		return number(ns/1e3) + " µs"
	}
	return number(ns) + " ns"
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// code wraps s in a code span that its own backquotes cannot end.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

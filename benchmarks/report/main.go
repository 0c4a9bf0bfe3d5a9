// Command report turns the output of go test -bench for ./benchmarks into
// the ratio tables of benchmarks/RESULTS.md and PNG charts, every engine
// against crypto/tls in the same run:
//
//	go test -run '^$' -bench . -count 10 ./benchmarks > native.txt
//	go run -C benchmarks/report . -o ../results -links results/ \
//		-machine "..." -command "..." ../../native.txt ../../vm.txt
//
// It writes results.md and one chart per benchmark family per input file
// (send-native.png, ...) into the -o folder; -links results/ makes the
// charts' links right for a copy of results.md in benchmarks/RESULTS.md.
// A family without crypto/tls, such as BenchmarkProxy, gets charts of its
// absolute values instead: proxy-native.txt gives proxy-native.png (MB/s)
// and proxy-cpu-native.png (proxy-cpu-s/GiB).
// Each input is a section; a file with lines of several VM kernels
// ("[linux-6.1] ...") is a section per kernel. The rows are grouped by the
// conn= key of the benchmark names (benchmarks/harness_test.go).
//
// The statistics are benchstat's, from golang.org/x/perf: benchfmt reads the
// benchmark lines, and benchmath.AssumeNothing summarizes and compares them
// with benchstat's defaults, without assuming the runs are normally
// distributed (on a busy machine they are not). Each cell is the median of
// -count's runs; ± is the median's 95% confidence interval in percent of it,
// its farther bound (∞ with fewer than 6 runs, too few for one at 95%). A
// ratio divides a conn's median by crypto/tls's (the OpenSSL anchor's in the
// ÷ openssl-ktls column) and is followed by the Mann-Whitney U test's
// p-value and the runs per side, "(p=0.008 n=5)", "n=10+8" where the sides
// differ, baseline first; "~" marks a difference that is not significant,
// p > 0.05 (3 runs a side can never be significant, 4 can). benchstat's
// warnings become numbered notes under each table. The charts' whiskers are
// the 95% intervals: a ratio's pairs the conn's interval with crypto/tls's,
// worst and best. Use -count 10 or more: 6 or 7 runs give an interval as wide
// as the runs' min–max range.
//
// It is a module of its own so that the fonts it draws with stay out of
// ktls's go.mod; hence go run -C, and paths relative to this folder.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "report:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

// list is a flag that may be given once for every input or once per input.
type list []string

func (l *list) String() string     { return strings.Join(*l, ", ") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func (l list) pick(i int) string {
	switch len(l) {
	case 0:
		return ""
	case 1:
		return l[0]
	}
	return l[i]
}

func run(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("report", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var machines, commands list
	out := fl.String("o", ".", "the `folder` to write results.md and the charts into")
	docTitle := fl.String("title", "Benchmark results", "the markdown's heading")
	links := fl.String("links", "", "a `prefix` for the charts' links in the markdown, such as results/ for benchmarks/RESULTS.md")
	fl.Var(&machines, "machine", "the machine, kernel and so on, in words; once for all inputs, or once per input in order")
	fl.Var(&commands, "command", "the command that produced the input; once for all inputs, or once per input in order")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: report [-o folder] [-title text] [-machine text]... [-command text]... bench.txt...\n\n"+
			"Reads go test -bench output (\"-\" for standard input) and writes results.md and PNG charts\n"+
			"of every conn= against crypto-tls (absolute values where there is no crypto-tls).\n\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	files := fl.Args()
	if len(files) == 0 {
		fl.Usage()
		return usageError{errors.New("no input files")}
	}
	for _, l := range []struct {
		name string
		l    list
	}{{"-machine", machines}, {"-command", commands}} {
		if len(l.l) > 1 && len(l.l) != len(files) {
			return usageError{fmt.Errorf("%s given %d times for %d inputs: give it once, or once per input", l.name, len(l.l), len(files))}
		}
	}

	// Read everything before writing anything.
	var secs []*section
	used := map[string]bool{}
	for i, path := range files {
		runs, err := read(path)
		if err != nil {
			return err
		}
		for _, ru := range runs {
			label := fileLabel(path)
			if len(runs) > 1 && ru.prefix != "" {
				label += "-" + sanitize(ru.prefix)
			}
			for n, base := 2, label; used[label]; n++ {
				label = base + "-" + strconv.Itoa(n)
			}
			used[label] = true
			secs = append(secs, &section{
				data:     ru,
				label:    label,
				machine:  machines.pick(i),
				command:  commands.pick(i),
				families: families(ru),
				charts:   map[string]string{},
			})
		}
	}

	type output struct {
		name string
		data []byte
	}
	var outs []output
	names := map[string]bool{} // the absolute charts' file names
	for _, s := range secs {
		for _, f := range s.families {
			c, ok := newChart(f, s.label)
			if !ok {
				continue
			}
			data, err := c.encode()
			if err != nil {
				return fmt.Errorf("chart %s of %s: %w", f.name, s.label, err)
			}
			name := sanitize(f.name) + "-" + s.label + ".png"
			s.charts[f.name] = name
			names[name] = true
			outs = append(outs, output{name, data})
		}
		for _, f := range s.families {
			for _, a := range absCharts(f) {
				c, ok := newAbsChart(f, s.label, a)
				if !ok {
					continue
				}
				data, err := c.encode()
				if err != nil {
					return fmt.Errorf("chart %s %s of %s: %w", f.name, a.unit, s.label, err)
				}
				name := absName(f, a, s.label, names)
				s.charts[a.chartKey(f)] = name
				outs = append(outs, output{name, data})
			}
		}
	}
	var md strings.Builder
	markdown(&md, *docTitle, *links, secs)
	outs = append(outs, output{"results.md", []byte(md.String())})

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, o := range outs {
		p := filepath.Join(*out, o.name)
		if err := os.WriteFile(p, o.data, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, p)
	}
	return nil
}

func read(path string) ([]*dataset, error) {
	if path == "-" {
		return parse(os.Stdin, "standard input")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parse(f, path)
}

// fileLabel names a section and its charts after its file: bench-vm.txt is
// "vm".
func fileLabel(path string) string {
	if path == "-" {
		return "stdin"
	}
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	for _, p := range []string{"bench-", "bench_", "benchmarks-", "benchmarks_"} {
		base = strings.TrimPrefix(base, p)
	}
	if l := sanitize(base); l != "" {
		return l
	}
	return "run"
}

// sanitize keeps a name safe in a file name and a markdown link.
func sanitize(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-.")
}

// absName names an absolute chart's file like a ratio chart's, family then
// label, but without saying the family twice: proxy-native.txt's Proxy chart
// is proxy-native.png, its CPU chart proxy-cpu-native.png. Where that name
// is taken, the label is kept whole.
func absName(f *family, a absChart, label string, used map[string]bool) string {
	fam := sanitize(f.name)
	name := fam + a.suffix + "-" + strings.TrimPrefix(label, fam+"-") + ".png"
	if used[name] {
		name = fam + a.suffix + "-" + label + ".png"
	}
	used[name] = true
	return name
}

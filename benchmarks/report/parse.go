package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
)

// A dataset is the benchmark results of one machine: one input file, or the
// lines of one VM kernel when a file holds several ("[linux-6.1] ...",
// "[linux-7.3] ..."), which must not be mixed into one median.
type dataset struct {
	source  string // the input file's name as given
	prefix  string // the "[...]" line prefix without brackets, "" if none
	release string // the kernel release vmtest printed for prefix, if any
	config  []kv   // goos, goarch, pkg, cpu, kernel lines, first seen first
	results []result
}

type kv struct{ key, value string }

// A result is one benchmark line.
type result struct {
	family  string // "Send" for BenchmarkSend/...
	parts   []kv   // the sub-benchmark names; key "" where a part has no '='
	procs   int    // the -N GOMAXPROCS suffix, 0 when absent
	metrics map[string]float64
}

// configKeys are the configuration lines (golang.org/x/perf/benchfmt's
// "key: value") shown as the machine description. Other lines of that shape
// are more likely log output ("vmtest: ...") than configuration.
var configKeys = map[string]bool{"goos": true, "goarch": true, "pkg": true, "cpu": true, "kernel": true}

// parse reads go test -bench output. Lines it does not understand are
// skipped: the output of a VM or of -v carries logs between the results.
//
// The benchmark lines themselves are read by golang.org/x/perf/benchfmt, the
// parser benchstat uses, once the lines are split by their "[...]" prefix:
// benchfmt knows nothing of vmtest's prefixes, and one kernel's lines must
// not be read as another's.
func parse(r io.Reader, source string) ([]*dataset, error) {
	var (
		runs     []*dataset
		byPrefix = map[string]*dataset{}
		lines    = map[*dataset]*bytes.Buffer{} // each dataset's benchmark lines, unprefixed
	)
	get := func(prefix string) *dataset {
		if ru := byPrefix[prefix]; ru != nil {
			return ru
		}
		ru := &dataset{source: source, prefix: prefix}
		byPrefix[prefix] = ru
		runs = append(runs, ru)
		lines[ru] = new(bytes.Buffer)
		return ru
	}
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			splitLine(line, get, byPrefix, lines)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if _, ok := err.(*fs.PathError); ok {
				return nil, err // it names the file
			}
			return nil, fmt.Errorf("read %s: %w", source, err)
		}
	}
	for _, ru := range runs {
		name := source
		if ru.prefix != "" {
			name += " [" + ru.prefix + "]"
		}
		br := benchfmt.NewReader(lines[ru], name)
		for br.Scan() {
			// A *benchfmt.SyntaxError is a line that only looks like a
			// result ("BenchmarkX-8\tsome log output"): skipped, as
			// benchstat skips it (it prints it; here logs are expected).
			if res, ok := br.Result().(*benchfmt.Result); ok {
				if x, ok := fromBenchfmt(res); ok {
					ru.results = append(ru.results, x)
				}
			}
		}
		if err := br.Err(); err != nil {
			return nil, err
		}
	}
	// A prefix that only carried logs is not a run.
	kept := runs[:0]
	for _, ru := range runs {
		if len(ru.results) > 0 {
			kept = append(kept, ru)
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("%s: no benchmark results (want the output of go test -bench)", source)
	}
	return kept, nil
}

// maxLine bounds the lines handed to benchfmt, whose bufio.Scanner fails
// the whole read on a line of bufio.MaxScanTokenSize or more; no benchmark
// line comes near it, a line of log output may.
const maxLine = bufio.MaxScanTokenSize - 1

// splitLine files one line of input: a benchmark line under its prefix's
// dataset for benchfmt, a configuration line in the dataset's config, and
// vmtest's summary line as the release of the kernel it names.
func splitLine(line string, get func(string) *dataset, seen map[string]*dataset, lines map[*dataset]*bytes.Buffer) {
	line = strings.TrimRight(line, "\r\n")
	prefix := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.Index(line, "] "); i > 0 {
			prefix, line = line[1:i], line[i+2:]
		}
	}
	if strings.HasPrefix(line, "Benchmark") {
		if len(line) < maxLine && looksLikeResult(line) {
			buf := lines[get(prefix)]
			buf.WriteString(line)
			buf.WriteByte('\n')
		}
		return
	}
	if key, value, ok := strings.Cut(line, ": "); ok && configKeys[key] {
		ru := get(prefix)
		c := kv{key, strings.TrimSpace(value)}
		for _, have := range ru.config {
			if have == c {
				return
			}
		}
		ru.config = append(ru.config, c)
		return
	}
	// vmtest's summary names each kernel's release:
	// "ok  \tlinux-7.3   7.3.4-amd64   gcm(aes) ...   12 tests passed ..."
	if f := strings.Fields(line); prefix == "" && len(f) >= 3 && (f[0] == "ok" || f[0] == "FAIL") &&
		strings.Contains(line, "tests passed") {
		if ru := seen[f[1]]; ru != nil {
			ru.release = f[2]
		}
	}
}

// looksLikeResult reports whether a line starting with "Benchmark" has a
// name and an iteration count, so that a dataset is only made for a prefix
// that has results: the checks of the values and units are benchfmt's.
func looksLikeResult(line string) bool {
	f := strings.Fields(line)
	if len(f) < 4 || len(f[0]) == len("Benchmark") {
		return false
	}
	_, err := strconv.ParseInt(f[1], 10, 64)
	return err == nil
}

// fromBenchfmt turns benchfmt's result into the report's. The values keep
// the units go test printed (ns/op, MB/s), not benchfmt's tidied ones
// (sec/op, B/s), which the tables and captions name.
func fromBenchfmt(r *benchfmt.Result) (result, bool) {
	metrics := make(map[string]float64, len(r.Values))
	for _, v := range r.Values {
		unit, value := v.Unit, v.Value
		if v.OrigUnit != "" {
			unit, value = v.OrigUnit, v.OrigValue
		}
		metrics[unit] = value
	}
	if len(metrics) == 0 {
		return result{}, false
	}
	// The name is split here rather than by benchfmt.Name.Parts, which
	// takes any "-N" ending for GOMAXPROCS, "-0" included (go test never
	// prints that).
	name, procs := splitProcs(r.Name.String())
	family, rest, _ := strings.Cut(name, "/")
	res := result{family: family, procs: procs, metrics: metrics}
	if rest != "" {
		for _, p := range strings.Split(rest, "/") {
			k, v, ok := strings.Cut(p, "=")
			if !ok {
				k, v = "", p
			}
			res.parts = append(res.parts, kv{k, v})
		}
	}
	return res, true
}

// splitProcs removes the -N suffix that go test adds when GOMAXPROCS is not 1.
func splitProcs(name string) (string, int) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 || i < strings.LastIndexByte(name, '/') {
		return name, 0
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n <= 0 || name[i+1] == '+' {
		return name, 0
	}
	return name[:i], n
}

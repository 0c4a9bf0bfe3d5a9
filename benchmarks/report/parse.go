package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
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
func parse(r io.Reader, source string) ([]*dataset, error) {
	var (
		runs     []*dataset
		byPrefix = map[string]*dataset{}
	)
	get := func(prefix string) *dataset {
		if ru := byPrefix[prefix]; ru != nil {
			return ru
		}
		ru := &dataset{source: source, prefix: prefix}
		byPrefix[prefix] = ru
		runs = append(runs, ru)
		return ru
	}
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			parseLine(line, get, byPrefix)
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

func parseLine(line string, get func(string) *dataset, seen map[string]*dataset) {
	line = strings.TrimRight(line, "\r\n")
	prefix := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.Index(line, "] "); i > 0 {
			prefix, line = line[1:i], line[i+2:]
		}
	}
	if res, ok := parseResult(line); ok {
		ru := get(prefix)
		ru.results = append(ru.results, res)
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

// parseResult parses "BenchmarkName-8  1000  123 ns/op  45.6 MB/s ...".
func parseResult(line string) (result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") || len(f[0]) == len("Benchmark") {
		return result{}, false
	}
	if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
		return result{}, false
	}
	metrics := make(map[string]float64, (len(f)-2)/2)
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return result{}, false
		}
		metrics[f[i+1]] = v
	}
	name, procs := splitProcs(f[0][len("Benchmark"):])
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

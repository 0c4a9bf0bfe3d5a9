#!/bin/sh
# Reruns BenchmarkProxy natively (5 runs) and in an amd64 guest of Linux
# "newest" under TCG, saves the raw outputs as benchmarks/results/proxy-native.txt
# and proxy-vm.txt, and writes their tables to benchmarks/results/proxy.md, from
# which the tables of RESULTS.md's Proxy section are copied, and their charts
# (proxy-native.png, proxy-cpu-native.png, proxy-vm.png, proxy-cpu-vm.png) to
# benchmarks/results/, where RESULTS.md links them; -links results/ makes
# proxy.md's links the same as RESULTS.md's. The rows of ktls
# proxy run where ./cmd/ktls has the proxy subcommand (or KTLS_BENCH_KTLS names
# a ktls that has); the other proxies where installed, on Debian bookworm:
#
#	apt-get install stunnel4 hitch haproxy nginx libnginx-mod-stream
#
# -cpu max: Debian's haproxy needs CMPXCHG16B, which vmtest's default amd64 CPU
# leaves out (internal/testing/vmtest/README.md, "Benchmark proxies").
set -eu
cd "$(dirname "$0")/.."
go test -run '^$' -bench Proxy -count 5 ./benchmarks > benchmarks/results/proxy-native.txt
go run ./internal/testing/vmtest -arch amd64 -kernel newest -cpu max -pkg ./benchmarks -run '^$' -bench Proxy \
	-benchtime 3x -test-timeout 40m -timeout 45m > benchmarks/results/proxy-vm.txt 2>&1
out=$(mktemp -d)
go run -C benchmarks/report . -o "$out" -links results/ -title "BenchmarkProxy" \
	-machine "2-core AMD EPYC cloud VM, Debian 12, natively (no kTLS module)" \
	-machine "the same machine: Linux newest under qemu TCG, -cpu max, one host thread for both vCPUs" \
	-command "go test -run '^\$' -bench Proxy -count 5 ./benchmarks" \
	-command "go run ./internal/testing/vmtest -arch amd64 -kernel newest -cpu max -pkg ./benchmarks -run '^\$' -bench Proxy -benchtime 3x -test-timeout 40m -timeout 45m" \
	../results/proxy-native.txt ../results/proxy-vm.txt
cp "$out/results.md" benchmarks/results/proxy.md
cp "$out"/proxy-*.png benchmarks/results/
rm -r "$out"
echo "benchmarks/results/proxy.md and the proxy charts written"

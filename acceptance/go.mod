module example.com/ktls-acceptance

go 1.26.0

require github.com/ktls-go/ktls v0.0.0

require (
	github.com/klauspost/cpuid/v2 v2.4.2 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

replace github.com/ktls-go/ktls => ../

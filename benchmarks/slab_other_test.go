//go:build !linux

package benchmarks

// kernelSlab: only Linux says how much slab memory its kernel holds.
func kernelSlab() (int64, bool) { return 0, false }

package kernelstat

import "testing"

// BenchmarkCompare reads the counters with this package's parser and with
// github.com/prometheus/procfs, to choose between them:
//
//	go test -run XXX -bench Compare ./internal/kernelstat
func BenchmarkCompare(b *testing.B) {
	b.Run("parser=kernelstat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Read(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parser=procfs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := readProcfs(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Go counterparts of bench/runtime_bench.cpp, run by bench/run_suite.py with
// `go test -bench . -benchmem=false`. Each benchmark sets GOMAXPROCS itself so that the
// same-thread ones compare with one fibers I/O thread and the cross-thread one with two.
package micro

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// nsPerOp is the wall time since start per iteration (testing.B.Elapsed needs Go 1.20).
func nsPerOp(start time.Time, n int) float64 {
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func withProcs(b *testing.B, n int) {
	old := runtime.GOMAXPROCS(n)
	b.Cleanup(func() { runtime.GOMAXPROCS(old) })
}

// Counterpart of BM_yield_switch: two goroutines taking turns through runtime.Gosched.
// One iteration is one switch away and one back.
func BenchmarkYieldSwitch(b *testing.B) {
	withProcs(b, 1)
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			runtime.Gosched()
		}
	}()
	runtime.Gosched() // let the other goroutine start
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		runtime.Gosched()
	}
	perOp := nsPerOp(start, b.N)
	b.StopTimer()
	done.Store(true)
	wg.Wait()
	b.ReportMetric(perOp/2, "ns/switch")
}

// Counterpart of BM_spawn_join: start one goroutine and wait for it.
func BenchmarkSpawnWait(b *testing.B) {
	withProcs(b, 1)
	var wg sync.WaitGroup
	for i := 0; i < b.N; i++ {
		wg.Add(1)
		go func() { wg.Done() }()
		wg.Wait()
	}
}

// Counterpart of BM_spawn_batch_join: start 1000 goroutines, then wait for all.
func BenchmarkSpawnBatchWait(b *testing.B) {
	withProcs(b, 1)
	const batch = 1000
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < b.N; i++ {
		wg.Add(batch)
		for j := 0; j < batch; j++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
	}
	b.ReportMetric(nsPerOp(start, b.N)/batch, "ns/goroutine")
}

// Counterpart of BM_channel_same_thread/N: a producer sends, a consumer goroutine receives.
func BenchmarkChannel(b *testing.B) {
	for _, capacity := range []int{0, 1, 64, 1024} {
		b.Run("cap="+strconv.Itoa(capacity), func(b *testing.B) {
			withProcs(b, 1)
			ch := make(chan int, capacity)
			done := make(chan struct{})
			go func() {
				for range ch {
				}
				close(done)
			}()
			for i := 0; i < b.N; i++ {
				ch <- i
			}
			close(ch)
			<-done
		})
	}
}

// Ping-pong over two unbuffered channels with GOMAXPROCS=2; one iteration is two wakes.
// Not a counterpart of BM_channel_ping_pong_cross_thread: Go's scheduler is free to run both
// goroutines on one P (runnext hand-off), so this is what such Go code gets, not a wake
// across threads (locking each goroutine to a thread measures LockOSThread hand-offs instead).
func BenchmarkChannelPingPong2Procs(b *testing.B) {
	withProcs(b, 2)
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		ping <- i
		<-pong
	}
	b.ReportMetric(nsPerOp(start, b.N)/2, "ns/wake")
	close(ping)
}

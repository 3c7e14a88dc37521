// bench/scale/go-scale - N parked goroutines: resident memory per goroutine, spawn and
// wake-all times (the Go counterpart of scale_bench). Usage: go-scale [N]
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

func residentKiB() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	v, _ := strconv.ParseInt(f[1], 10, 64)
	return v * 4
}

func main() {
	n := 1000000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	runtime.GOMAXPROCS(1)
	gate := make(chan struct{})
	var parked, done sync.WaitGroup
	before := residentKiB()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		parked.Add(1)
		done.Add(1)
		go func() {
			parked.Done()
			<-gate
			done.Done()
		}()
	}
	parked.Wait()
	t1 := time.Now()
	after := residentKiB()
	close(gate)
	done.Wait()
	t2 := time.Now()
	fmt.Printf("go-scale: %d parked goroutines: %.2f KiB resident per goroutine, spawn+park %.0f ns/goroutine (%.0f ms), wake-all+finish %.0f ns/goroutine (%.0f ms)\n",
		n, float64(after-before)/float64(n),
		float64(t1.Sub(t0).Nanoseconds())/float64(n), float64(t1.Sub(t0).Milliseconds()),
		float64(t2.Sub(t1).Nanoseconds())/float64(n), float64(t2.Sub(t1).Milliseconds()))
}

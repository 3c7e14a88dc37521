// go-echo: the Go peer of the echo comparison. One goroutine per connection, each a plain
// read/write loop over a 64 KiB buffer (what io.Copy does, without its splice fast path, so
// every byte goes through user space as in the other servers). GOMAXPROCS comes from the
// environment as usual. Stops on SIGINT/SIGTERM.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

func serve(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, 64*1024)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// A load client that stops with echoes in flight resets its connections.
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) &&
				!errors.Is(err, syscall.ECONNRESET) {
				log.Printf("read: %v", err)
			}
			return
		}
	}
}

func main() {
	port := flag.Int("port", 7003, "TCP port on 127.0.0.1 (0: pick a free one and print it)")
	flag.Parse()
	log.SetPrefix("go-echo: ")
	log.SetFlags(0)

	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("go-echo: listening on %s (GOMAXPROCS=%d)\n", ln.Addr(), runtime.GOMAXPROCS(0))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		ln.Close()
	}()

	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("accept: %v", err)
			continue
		}
		go serve(conn) // TCP_NODELAY is Go's default for TCP connections
	}
}

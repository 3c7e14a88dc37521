// go-tls-echo: the Go peer of bench/tls_bench.cpp. A crypto/tls echo server, one goroutine
// per connection, each a plain read/write loop over a 16 KiB buffer (one record per read).
// Session tickets on (Go's default), TLS 1.2 minimum as the other servers. GOMAXPROCS comes
// from the environment (tls_bench sets 1). Killed by tls_bench when done.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"runtime"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16*1024)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	cert := flag.String("cert", "", "certificate chain, PEM")
	key := flag.String("key", "", "private key, PEM")
	port := flag.Int("port", 0, "TCP port on 127.0.0.1")
	flag.Parse()
	log.SetPrefix("go-tls-echo: ")
	log.SetFlags(0)

	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		log.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	ln, err := tls.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", *port), cfg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("go-tls-echo: listening on %s (GOMAXPROCS=%d)\n", ln.Addr(), runtime.GOMAXPROCS(0))
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c)
	}
}

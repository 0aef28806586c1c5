// Command netpollhol shows, with plain Go sockets and no internode, the
// head-of-line delay the bench's hol scenario measures: small round trips
// on one loopback connection while two others carry bulk data as fast as
// they can, all in one process.
//
//	go -C examples/bench run ./netpollhol
//	go -C examples/bench run ./netpollhol -pause
//
// Each round trip writes 128 bytes and reads them back from an echo
// goroutine, 500 µs apart; it prints their p50, p99 and p99.9, how late
// the 500 µs sleeps between them woke (the p50 and p99 of the time slept
// beyond 500 µs: what an open-loop pacer's timer adds), and the bulk
// MB/s. With -bulk=false the round trips run alone.
//
// What it shows: while the bulk goroutines keep every processor busy, a
// response that has arrived waits unread for milliseconds, because the Go
// scheduler polls the network only when a processor runs out of work (and
// otherwise every 10 ms, from its monitor thread). With -pause the bulk
// writers hold back while a round trip is in flight (at most 1 ms), the
// processors run dry, the poller runs and the response is read at once.
// Timers fire late too while the processors are busy: a sleep's lateness
// is the start delay the bench's hol scenario reports (start_p99_us).
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"slices"
	"sync/atomic"
	"time"
)

func main() {
	bulk := flag.Bool("bulk", true, "run the bulk transfers")
	pause := flag.Bool("pause", false, "bulk writers hold back while a round trip is in flight")
	duration := flag.Duration("duration", 3*time.Second, "how long to measure")
	chunk := flag.Int("chunk", 256<<10, "bytes per bulk write and read")
	flag.Parse()

	var (
		stop     atomic.Bool
		moved    atomic.Int64
		inFlight atomic.Bool
		answered = make(chan struct{})
	)
	if *bulk {
		for range 2 {
			w, r := pair()
			go func() {
				defer w.Close()
				buf := make([]byte, *chunk)
				for !stop.Load() {
					if _, err := w.Write(buf); err != nil {
						return
					}
					if *pause && inFlight.Load() {
						select {
						case <-answered:
						case <-time.After(time.Millisecond):
						}
					}
				}
			}()
			go func() {
				buf := make([]byte, *chunk)
				for {
					n, err := r.Read(buf)
					moved.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}

	client, server := pair()
	go func() {
		b := make([]byte, 128)
		for {
			if _, err := io.ReadFull(server, b); err != nil {
				return
			}
			if _, err := server.Write(b); err != nil {
				return
			}
		}
	}()
	var rtts, late []time.Duration
	b := make([]byte, 128)
	start := time.Now()
	for time.Since(start) < *duration {
		t := time.Now()
		inFlight.Store(true)
		if _, err := client.Write(b); err != nil {
			log.Fatal(err)
		}
		if _, err := io.ReadFull(client, b); err != nil {
			log.Fatal(err)
		}
		rtts = append(rtts, time.Since(t))
		inFlight.Store(false)
		for done := false; !done; { // release every paused writer
			select {
			case answered <- struct{}{}:
			default:
				done = true
			}
		}
		slept := time.Now()
		time.Sleep(500 * time.Microsecond)
		late = append(late, time.Since(slept)-500*time.Microsecond)
	}
	elapsed := time.Since(start)
	stop.Store(true)
	q := func(ds []time.Duration, f float64) time.Duration {
		slices.Sort(ds)
		return ds[int(f*float64(len(ds)-1))].Round(time.Microsecond)
	}
	fmt.Printf("bulk=%v pause=%v round trips=%d p50=%v p99=%v p99.9=%v sleep late p50=%v p99=%v bulk MB/s=%.0f\n",
		*bulk, *pause, len(rtts), q(rtts, 0.50), q(rtts, 0.99), q(rtts, 0.999), q(late, 0.50), q(late, 0.99),
		float64(moved.Load())/elapsed.Seconds()/1e6)
}

// pair returns the two ends of a loopback TCP connection.
func pair() (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	return c, <-accepted
}

// Command loadgen loads one WebSocket echo server in one shape and prints the
// result as one JSON line on stdout.
//
//	loadgen -mode rr|latency|idle|handshake|pipeline|bulk -url ws://127.0.0.1:PORT/ws [flags]
//	loadgen -mode fanout -sub ws://HOST:PORT/sub[,...] -pub ws://HOST:PORT/pub -steps 1000[,...] [flags]
//
// Timed modes warm up, print {"event":"window"} as the timed window opens, and
// print the result when it closes, so that the harness can sample the server's
// CPU over the same window. The idle mode is driven from stdin instead: see
// runIdle; so is the fan-out mode: see fanout.go. On failure it prints {"error": "..."} and exits 1.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"
)

type options struct {
	mode     string
	url      string
	conns    int
	clients  int
	size     int
	binary   bool
	window   int
	warmup   time.Duration
	duration time.Duration
	timeout  time.Duration
	// The fan-out mode's.
	subURLs          string
	pubURL           string
	steps            string
	broadcasts       int
	warmupBroadcasts int
	gap              time.Duration
	retries          int
	stallEvery       int
	stallRcvbuf      int
	giveUp           int
	rcvbuf           int // SO_RCVBUF of a connection, set before it connects; 0: the kernel's
}

func main() {
	var opt options
	flag.StringVar(&opt.mode, "mode", "rr", "rr, latency, idle, handshake, pipeline, bulk or fanout")
	flag.StringVar(&opt.url, "url", "ws://127.0.0.1:8000/ws", "the echo server")
	flag.IntVar(&opt.conns, "conns", 50, "connections (rr) or idle connections (idle)")
	flag.IntVar(&opt.clients, "clients", 8, "concurrent clients (handshake)")
	flag.IntVar(&opt.size, "size", 32, "message size in bytes")
	flag.BoolVar(&opt.binary, "binary", false, "send binary messages instead of text")
	flag.IntVar(&opt.window, "window", 64, "messages in flight (pipeline)")
	flag.DurationVar(&opt.warmup, "warmup", time.Second, "load before the timed window")
	flag.DurationVar(&opt.duration, "duration", 3*time.Second, "the timed window")
	flag.DurationVar(&opt.timeout, "timeout", 10*time.Second, "longest wait for any one reply (fanout: for a whole broadcast)")
	flag.StringVar(&opt.subURLs, "sub", "ws://127.0.0.1:8000/sub", "fanout: subscribe URLs, comma-separated; subscribers are spread over them in turn")
	flag.StringVar(&opt.pubURL, "pub", "ws://127.0.0.1:8000/pub", "fanout: the publisher's URL")
	flag.StringVar(&opt.steps, "steps", "", "fanout: subscriber counts, comma-separated and growing (default: -conns)")
	flag.IntVar(&opt.broadcasts, "broadcasts", 30, "fanout: measured broadcasts per step")
	flag.IntVar(&opt.warmupBroadcasts, "warmup-broadcasts", 3, "fanout: broadcasts before the measured ones, reported apart")
	flag.DurationVar(&opt.gap, "gap", 50*time.Millisecond, "fanout: pause after each broadcast has reached everyone")
	flag.IntVar(&opt.retries, "retries", 0, "fanout: steps the harness may have measured again, in all")
	flag.IntVar(&opt.stallEvery, "stall-every", 0, "fanout: one subscriber in this many stops reading after \"ready\" (0: none)")
	flag.IntVar(&opt.stallRcvbuf, "stall-rcvbuf", 4096, "fanout: SO_RCVBUF of a subscriber that stops reading, in bytes")
	flag.IntVar(&opt.giveUp, "give-up", 0, "fanout: end a step after this many broadcasts in a row timed out (0: never)")
	flag.Parse()

	modes := map[string]func(options) (map[string]any, error){
		"rr":        runRequestReply,
		"latency":   runLatency,
		"idle":      runIdle,
		"handshake": runHandshake,
		"pipeline":  runPipeline,
		"bulk":      runBulk,
		"fanout":    runFanout,
	}
	run, known := modes[opt.mode]
	if !known {
		fail(fmt.Errorf("unknown mode %q", opt.mode))
	}
	result, err := run(opt)
	if err != nil {
		fail(err)
	}
	result["mode"] = opt.mode
	emit(result)
}

func emit(line map[string]any) {
	encoded, err := json.Marshal(line)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(encoded, '\n'))
}

func fail(err error) {
	emit(map[string]any{"error": err.Error()})
	os.Exit(1)
}

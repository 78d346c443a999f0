package main

import (
	"fmt"
	"sort"
	"time"
)

// runRequestReply: opt.conns connections, each with one message in flight
// (send, wait for the echo, send the next), as most real clients talk.
func runRequestReply(opt options) (map[string]any, error) {
	return timed(opt, opt.conns, func(w *window) error {
		e, err := dial(opt)
		if err != nil {
			return err
		}
		for !w.stop.Load() {
			if err := e.roundTrip(); err != nil {
				return err
			}
			w.done.Add(1)
		}
		return e.close()
	})
}

// runBulk: one connection, one large message in flight.
func runBulk(opt options) (map[string]any, error) {
	opt.conns = 1
	result, err := runRequestReply(opt)
	if err == nil {
		result["mb_per_s"] = result["per_s"].(float64) * float64(opt.size) / 1e6
	}
	return result, err
}

// runLatency: one connection, one message in flight; the round trips of the
// window, in microseconds.
func runLatency(opt options) (map[string]any, error) {
	samples := make([]float64, 0, 1<<20)
	result, err := timed(opt, 1, func(w *window) error {
		e, err := dial(opt)
		if err != nil {
			return err
		}
		for !w.stop.Load() {
			started := time.Now()
			if err := e.roundTrip(); err != nil {
				return err
			}
			if w.open.Load() {
				samples = append(samples, float64(time.Since(started).Nanoseconds())/1e3)
			}
			w.done.Add(1)
		}
		return e.close()
	})
	if err != nil {
		return nil, err
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("no round trip completed in the window")
	}
	sort.Float64s(samples)
	quantile := func(q float64) float64 { return samples[int(q*float64(len(samples)-1))] }
	result["p50_us"], result["p99_us"], result["max_us"] = quantile(0.5), quantile(0.99), samples[len(samples)-1]
	return result, nil
}

// runHandshake: opt.clients clients, each in a loop: connect, upgrade, one
// echo, closing handshake. The connection's whole life, as short-lived
// clients (page loads, scripts) cost a server.
func runHandshake(opt options) (map[string]any, error) {
	return timed(opt, opt.clients, func(w *window) error {
		for !w.stop.Load() {
			e, err := dial(opt)
			if err != nil {
				return err
			}
			if err := e.roundTrip(); err != nil {
				e.conn.Close()
				return err
			}
			if err := e.close(); err != nil {
				return err
			}
			w.done.Add(1)
		}
		return nil
	})
}

// runPipeline: one connection with opt.window messages in flight: the shape
// where a server can batch reads and writes. One goroutine suffices: a small
// write never blocks while so little is in flight.
func runPipeline(opt options) (map[string]any, error) {
	return timed(opt, 1, func(w *window) error {
		e, err := dial(opt)
		if err != nil {
			return err
		}
		inFlight := 0
		for ; inFlight < opt.window; inFlight++ {
			if err := e.send(); err != nil {
				return fmt.Errorf("sending: %w", err)
			}
		}
		for inFlight > 0 {
			if err := e.receive(); err != nil {
				return err
			}
			inFlight--
			w.done.Add(1)
			if !w.stop.Load() {
				if err := e.send(); err != nil {
					return fmt.Errorf("sending: %w", err)
				}
				inFlight++
			}
		}
		return e.close()
	})
}

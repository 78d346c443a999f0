package main

import (
	"fmt"
	"sync/atomic"
	"time"
)

// window is what the workers of a timed mode share: whether the timed window
// is open, whether to stop, and how many units of work (round trips,
// handshakes) have been done.
type window struct {
	open atomic.Bool
	stop atomic.Bool
	done atomic.Int64
}

// timed runs `workers` copies of work through the warm-up and the timed
// window, then sets stop and waits for every worker to wind down (each
// finishes what it has in flight and closes its connection cleanly).
func timed(opt options, workers int, work func(w *window) error) (map[string]any, error) {
	var w window
	errs := make(chan error, workers)
	for i := 0; i < workers; i++ {
		go func() { errs <- work(&w) }()
	}
	pending := workers
	// sleep waits for d, or returns the first error of a worker that ended early.
	sleep := func(d time.Duration) error {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case err := <-errs:
			pending--
			if err == nil {
				err = fmt.Errorf("a worker ended before the window closed")
			}
			return err
		case <-timer.C:
			return nil
		}
	}
	if err := sleep(opt.warmup); err != nil {
		return nil, err
	}
	startCount, startCPU, started := w.done.Load(), cpuSeconds(), time.Now()
	w.open.Store(true)
	emit(map[string]any{"event": "window"})
	if err := sleep(opt.duration); err != nil {
		return nil, err
	}
	count, elapsed, cpu := w.done.Load()-startCount, time.Since(started).Seconds(), cpuSeconds()-startCPU
	w.open.Store(false)
	w.stop.Store(true)
	deadline := time.After(2 * opt.timeout)
	for ; pending > 0; pending-- {
		select {
		case err := <-errs:
			if err != nil {
				return nil, fmt.Errorf("after the window: %w", err)
			}
		case <-deadline:
			return nil, fmt.Errorf("%d workers did not wind down within %s", pending, 2*opt.timeout)
		}
	}
	return map[string]any{
		"count":        count,
		"elapsed_s":    elapsed,
		"per_s":        float64(count) / elapsed,
		"client_cpu_s": cpu,
	}, nil
}

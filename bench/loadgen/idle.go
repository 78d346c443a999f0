package main

import (
	"bufio"
	"fmt"
	"os"
	"sync"
	"time"
)

// runIdle holds opt.conns idle connections open, in steps that the harness
// drives through stdin so that it can read the server's memory in between:
//
//	{"event":"warm"}   one connection is open and has echoed; the harness reads
//	                   the baseline and writes a line
//	{"event":"open"}   opt.conns more connections have completed the
//	                   handshake; the harness reads the memory again and
//	                   writes a line
//	result             every connection is closed (closing handshake)
func runIdle(opt options) (map[string]any, error) {
	stdin := bufio.NewReader(os.Stdin)
	proceed := func() error {
		if _, err := stdin.ReadString('\n'); err != nil {
			return fmt.Errorf("the harness went away: %w", err)
		}
		return nil
	}
	warm, err := dial(opt)
	if err != nil {
		return nil, err
	}
	if err := warm.roundTrip(); err != nil {
		return nil, err
	}
	emit(map[string]any{"event": "warm"})
	if err := proceed(); err != nil {
		return nil, err
	}

	started, startCPU := time.Now(), cpuSeconds()
	conns, err := openIdle(opt)
	if err != nil {
		return nil, err
	}
	openSeconds := time.Since(started).Seconds()
	emit(map[string]any{"event": "open", "conns": len(conns), "open_s": openSeconds})
	if err := proceed(); err != nil {
		return nil, err
	}

	if err := closeAll(append(conns, warm)); err != nil {
		return nil, err
	}
	return map[string]any{
		"conns":        len(conns),
		"open_s":       openSeconds,
		"conns_per_s":  float64(len(conns)) / openSeconds,
		"client_cpu_s": cpuSeconds() - startCPU,
	}, nil
}

// openIdle opens opt.conns connections, 32 handshakes at a time (a burst of
// thousands at once would only measure the listen backlog).
func openIdle(opt options) ([]*echoer, error) {
	conns := make([]*echoer, opt.conns)
	errs := make([]error, opt.conns)
	slots := make(chan struct{}, 32)
	var group sync.WaitGroup
	for i := range conns {
		group.Add(1)
		slots <- struct{}{}
		go func(i int) {
			defer group.Done()
			defer func() { <-slots }()
			conns[i], errs[i] = dial(opt)
		}(i)
	}
	group.Wait()
	var opened []*echoer
	var first error
	for i, conn := range conns {
		if conn != nil {
			opened = append(opened, conn)
		} else if first == nil {
			first = errs[i]
		}
	}
	if first != nil {
		closeAll(opened)
		return nil, fmt.Errorf("%d of %d connections opened: %w", len(opened), opt.conns, first)
	}
	return opened, nil
}

func closeAll(conns []*echoer) error {
	errs := make(chan error, len(conns))
	for _, conn := range conns {
		go func(e *echoer) { errs <- e.close() }(conn)
	}
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

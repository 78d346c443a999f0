package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The fan-out mode: subscribers connect to a server's subscribe endpoint,
// one publisher sends a message to its publish endpoint, the server
// broadcasts it to every subscriber. For each broadcast the client records,
// per subscriber, the time from just before the publisher's write until
// that subscriber's reader had the frame. Broadcasts never overlap: the next
// one goes out once every subscriber got the last (or it timed out) and
// -gap has passed.
//
// Each subscriber has its own goroutine, blocked in a read, and takes the
// time as soon as the frame's header is parsed; nothing else runs while a
// broadcast is in flight, so the client keeps up with any Python server.
//
// Steps (-steps 1000,2000,5000) add subscribers and measure again with all
// of them, as the websocket-shootout measure does. The harness drives the
// steps through stdin so that it can read the server's CPU in between:
//
//	{"event":"open", ...}   the step's subscribers are all connected and
//	                        have each had the server's "ready"; the harness
//	                        reads the server's CPU and writes a line
//	{"event":"step", ...}   the step's broadcasts, one record each; the
//	                        harness reads the CPU again and writes a line to
//	                        go on to the next step ("again": to measure the
//	                        same step again, at most -retries times in all),
//	                        or closes stdin to stop
//	result                  every connection closed (closing handshake)

// readyMessage is what a server sends a subscriber once it will get every
// broadcast: the client sends nothing before all subscribers had it, so no
// broadcast can miss one that has connected but not yet joined.
const readyMessage = "ready"

type subscriber struct {
	conn    *websocket.Conn
	index   int
	stalled bool // never read after "ready": its buffers fill and stay full
}

type broadcastRecord struct {
	Index     int      `json:"i"`
	Conns     int      `json:"conns"`
	Delivered int64    `json:"delivered"`
	AllUs     *float64 `json:"all_us"` // until the last subscriber had it; null: some never did
	FirstUs   float64  `json:"first_us"`
	MedianUs  float64  `json:"median_us"` // of the subscribers that had it
	P90Us     float64  `json:"p90_us"`
	ClientCPU float64  `json:"client_cpu_s"` // the client's CPU while this broadcast was in flight
	Warmup    bool     `json:"warmup"`
	// The same per subscribe URL (subscribers on another server process than
	// the publisher's are reached through the broker): only with several URLs.
	ByURL []urlRecord `json:"by_url,omitempty"`
}

type urlRecord struct {
	Delivered int64    `json:"delivered"`
	AllUs     *float64 `json:"all_us"`
	FirstUs   float64  `json:"first_us"`
	MedianUs  float64  `json:"median_us"`
}

type fanout struct {
	opt      options
	base     time.Time
	payloads [][]byte
	sent     []int64   // ns since base, just before the publisher's write
	received [][]int64 // received[b][i]: ns since base when subscriber i had broadcast b; 0: not yet
	got      []atomic.Int64
	target   []atomic.Int64 // subscribers that broadcast b goes to
	complete chan int       // b, once every targeted subscriber had it
	failures chan error
	closing  atomic.Bool
	readers  sync.WaitGroup
	subs     []*subscriber
	urls     int
	reading  []int // per step count: the subscribers that read (all but the stalled ones)
}

func runFanout(opt options) (map[string]any, error) {
	steps, err := parseSteps(opt)
	if err != nil {
		return nil, err
	}
	if opt.size < 16 {
		return nil, fmt.Errorf("-size must be at least 16 for the broadcast's sequence number")
	}
	subURLs := strings.Split(opt.subURLs, ",")
	perStep := opt.warmupBroadcasts + opt.broadcasts
	total := perStep * (len(steps) + opt.retries)
	most := steps[len(steps)-1]
	f := &fanout{
		opt:      opt,
		base:     time.Now(),
		payloads: make([][]byte, total),
		sent:     make([]int64, total),
		received: make([][]int64, total),
		got:      make([]atomic.Int64, total),
		target:   make([]atomic.Int64, total),
		complete: make(chan int, total),
		failures: make(chan error, most+1),
	}
	// Everything the readers touch is allocated before the first of them
	// starts: they only ever write their own slot.
	for b := range f.payloads {
		head := fmt.Sprintf("%08d:", b)
		f.payloads[b] = append([]byte(head), bytes.Repeat([]byte("x"), opt.size-len(head))...)
		f.received[b] = make([]int64, most)
	}
	f.urls = len(subURLs)
	stdin := bufio.NewReader(os.Stdin)
	// The harness's next line: "" goes on, "again" measures the step again;
	// false at the end of input.
	proceed := func() (string, bool) {
		line, err := stdin.ReadString('\n')
		return strings.TrimSpace(line), err == nil
	}

	publisher, err := f.openPublisher()
	if err != nil {
		return nil, err
	}
	defer publisher.Close()

	var measured []map[string]any
	b := 0
	retries := opt.retries
	for stepIndex := 0; ; {
		conns := steps[stepIndex]
		started, startCPU := time.Now(), cpuSeconds()
		if err := f.openSubscribers(conns, subURLs); err != nil {
			f.closeAll(publisher)
			return nil, err
		}
		emit(map[string]any{
			"event":        "open",
			"conns":        conns,
			"open_s":       time.Since(started).Seconds(),
			"client_cpu_s": cpuSeconds() - startCPU,
		})
		if _, more := proceed(); !more {
			break
		}
		started, startCPU = time.Now(), cpuSeconds()
		records := make([]broadcastRecord, 0, perStep)
		missed := 0 // broadcasts in a row that timed out
		gaveUp := false
		for k := 0; k < perStep; k++ {
			record, err := f.broadcast(publisher, b, conns)
			if err != nil {
				f.closeAll(publisher)
				return nil, err
			}
			record.Warmup = k < opt.warmupBroadcasts
			records = append(records, record)
			b++
			if record.AllUs == nil {
				missed++
			} else {
				missed = 0
			}
			// A server stuck behind a stalled subscriber stays stuck: the
			// rest of the step would only add -timeout each.
			if opt.giveUp > 0 && missed >= opt.giveUp {
				gaveUp = true
				break
			}
			time.Sleep(opt.gap)
		}
		step := map[string]any{
			"event":        "step",
			"conns":        conns,
			"stalled":      conns - f.readingOf(conns),
			"broadcasts":   records,
			"gave_up":      gaveUp,
			"elapsed_s":    time.Since(started).Seconds(),
			"client_cpu_s": cpuSeconds() - startCPU,
		}
		emit(step)
		measured = append(measured, step)
		line, more := proceed()
		if !more {
			break
		}
		if line == "again" {
			if retries == 0 {
				f.closeAll(publisher)
				return nil, fmt.Errorf("asked to measure a step again more than -retries %d times", opt.retries)
			}
			retries--
			continue
		}
		if stepIndex++; stepIndex == len(steps) {
			break
		}
	}
	started := time.Now()
	if err := f.closeAll(publisher); err != nil {
		return nil, err
	}
	return map[string]any{
		"steps":   len(measured),
		"conns":   len(f.subs),
		"close_s": time.Since(started).Seconds(),
	}, nil
}

func parseSteps(opt options) ([]int, error) {
	if opt.steps == "" {
		return []int{opt.conns}, nil
	}
	var steps []int
	for _, field := range strings.Split(opt.steps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 || (len(steps) > 0 && n <= steps[len(steps)-1]) {
			return nil, fmt.Errorf("-steps wants growing positive counts, got %q", opt.steps)
		}
		steps = append(steps, n)
	}
	return steps, nil
}

func (f *fanout) openPublisher() (*websocket.Conn, error) {
	o := f.opt
	o.url = f.opt.pubURL
	e, err := dial(o)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	// The publish endpoint sends nothing, but keepalive pings must be
	// answered (gorilla does it while reading), or the server would close it.
	go func() {
		for {
			if _, _, err := e.conn.NextReader(); err != nil {
				return
			}
		}
	}()
	return e.conn, nil
}

// openSubscribers brings the subscribers up to `conns`, 32 handshakes at a
// time, spread over the subscribe URLs in turn.
func (f *fanout) openSubscribers(conns int, urls []string) error {
	first := len(f.subs)
	fresh := make([]*subscriber, conns-first)
	errs := make([]error, len(fresh))
	slots := make(chan struct{}, 32)
	var group sync.WaitGroup
	for k := range fresh {
		group.Add(1)
		slots <- struct{}{}
		go func(k int) {
			defer group.Done()
			defer func() { <-slots }()
			index := first + k
			o := f.opt
			o.url = urls[index%len(urls)]
			fresh[k], errs[k] = joinSubscriber(o, index, f.isStalled(index))
		}(k)
	}
	group.Wait()
	var failed error
	for k, sub := range fresh {
		if sub != nil {
			f.subs = append(f.subs, sub)
			if !sub.stalled {
				f.readers.Add(1)
				go f.read(sub)
			}
		} else if failed == nil {
			failed = errs[k]
		}
	}
	if failed != nil {
		return fmt.Errorf("%d of %d subscribers connected: %w", len(f.subs), conns, failed)
	}
	return nil
}

// isStalled says whether subscriber `index` stops reading after "ready":
// one in every -stall-every, the last of each run of that many, so that
// they are spread over the URLs and through the server's member order.
func (f *fanout) isStalled(index int) bool {
	return f.opt.stallEvery > 0 && index%f.opt.stallEvery == f.opt.stallEvery-1
}

// readingOf is how many of the first `conns` subscribers read.
func (f *fanout) readingOf(conns int) int {
	if f.opt.stallEvery == 0 {
		return conns
	}
	return conns - conns/f.opt.stallEvery
}

func joinSubscriber(opt options, index int, stalled bool) (*subscriber, error) {
	if stalled {
		opt.rcvbuf = opt.stallRcvbuf
	}
	e, err := dial(opt)
	if err != nil {
		return nil, err
	}
	e.conn.SetReadDeadline(time.Now().Add(opt.timeout))
	kind, data, err := e.conn.ReadMessage()
	if err == nil && (kind != websocket.TextMessage || string(data) != readyMessage) {
		err = fmt.Errorf("expected %q from the server, got type %d %q", readyMessage, kind, data)
	}
	if err != nil {
		e.conn.Close()
		return nil, fmt.Errorf("subscriber %d waiting for %q: %w", index, readyMessage, err)
	}
	e.conn.SetReadDeadline(time.Time{})
	return &subscriber{e.conn, index, stalled}, nil
}

// read is one subscriber's goroutine: the time of every broadcast it gets.
func (f *fanout) read(sub *subscriber) {
	defer f.readers.Done()
	defer sub.conn.Close()
	buf := make([]byte, f.opt.size+1)
	for {
		kind, reader, err := sub.conn.NextReader()
		at := time.Since(f.base).Nanoseconds()
		if err != nil {
			if !f.closing.Load() {
				f.failures <- fmt.Errorf("subscriber %d: %w", sub.index, err)
			}
			return
		}
		n := 0
		for n < len(buf) {
			read, err := reader.Read(buf[n:])
			n += read
			if err == io.EOF {
				break
			}
			if err != nil {
				if !f.closing.Load() {
					f.failures <- fmt.Errorf("subscriber %d reading: %w", sub.index, err)
				}
				return
			}
		}
		b := sequence(buf[:n])
		if b < 0 || b >= len(f.payloads) || kind != websocket.TextMessage || !bytes.Equal(buf[:n], f.payloads[b]) {
			f.failures <- fmt.Errorf("subscriber %d: unexpected message, type %d: %q", sub.index, kind, buf[:n])
			return
		}
		if f.received[b][sub.index] != 0 {
			f.failures <- fmt.Errorf("subscriber %d got broadcast %d twice", sub.index, b)
			return
		}
		f.received[b][sub.index] = at
		if f.got[b].Add(1) == f.target[b].Load() {
			f.complete <- b
		}
	}
}

// sequence is the broadcast number that a message starts with (8 digits),
// or -1; read without allocating, as it is on every delivery.
func sequence(message []byte) int {
	if len(message) < 8 {
		return -1
	}
	b := 0
	for _, digit := range message[:8] {
		if digit < '0' || digit > '9' {
			return -1
		}
		b = 10*b + int(digit-'0')
	}
	return b
}

// broadcast sends broadcast b and waits until the `conns` subscribers all
// have it, or -timeout has passed.
func (f *fanout) broadcast(publisher *websocket.Conn, b int, conns int) (broadcastRecord, error) {
	f.target[b].Store(int64(f.readingOf(conns)))
	startCPU := cpuSeconds()
	publisher.SetWriteDeadline(time.Now().Add(f.opt.timeout))
	f.sent[b] = time.Since(f.base).Nanoseconds()
	if err := publisher.WriteMessage(websocket.TextMessage, f.payloads[b]); err != nil {
		return broadcastRecord{}, fmt.Errorf("publisher: %w", err)
	}
	timer := time.NewTimer(f.opt.timeout)
	defer timer.Stop()
	timedOut := false
wait:
	for {
		select {
		case done := <-f.complete:
			if done == b {
				break wait
			} // else a broadcast that had timed out, complete at last
		case err := <-f.failures:
			return broadcastRecord{}, err
		case <-timer.C:
			timedOut = true
			break wait
		}
	}
	cpu := cpuSeconds() - startCPU
	return f.summarize(b, conns, timedOut, cpu), nil
}

func (f *fanout) summarize(b int, conns int, timedOut bool, cpu float64) broadcastRecord {
	latencies := make([]float64, 0, conns)
	byURL := make([][]float64, f.urls)
	expected := make([]int, f.urls) // the reading subscribers of each URL
	for i, at := range f.received[b][:conns] {
		if f.isStalled(i) {
			continue
		}
		expected[i%f.urls]++
		if at != 0 {
			latency := float64(at-f.sent[b]) / 1e3
			latencies = append(latencies, latency)
			byURL[i%f.urls] = append(byURL[i%f.urls], latency)
		}
	}
	record := broadcastRecord{Index: b, Conns: conns, ClientCPU: cpu}
	record.Delivered, record.AllUs, record.MedianUs = describe(latencies, f.readingOf(conns), timedOut)
	if len(latencies) > 0 {
		quantile := func(q float64) float64 { return latencies[int(q*float64(len(latencies)-1))] }
		record.FirstUs, record.P90Us = latencies[0], quantile(0.9)
	}
	if f.urls > 1 {
		for u, values := range byURL {
			var part urlRecord
			part.Delivered, part.AllUs, part.MedianUs = describe(values, expected[u], timedOut)
			if len(values) > 0 {
				part.FirstUs = values[0]
			}
			record.ByURL = append(record.ByURL, part)
		}
	}
	return record
}

// describe sorts `latencies` and gives how many there are, the last if all
// `expected` subscribers had the broadcast in time (else nil), and the median.
func describe(latencies []float64, expected int, timedOut bool) (int64, *float64, float64) {
	sort.Float64s(latencies)
	if len(latencies) == 0 {
		return 0, nil, 0
	}
	var all *float64
	if !timedOut && len(latencies) == expected {
		last := latencies[len(latencies)-1]
		all = &last
	}
	return int64(len(latencies)), all, latencies[(len(latencies)-1)/2]
}

// closeAll runs the closing handshake on every connection: our Close from
// here, the server's Close ends each reader.
func (f *fanout) closeAll(publisher *websocket.Conn) error {
	f.closing.Store(true)
	deadline := time.Now().Add(f.opt.timeout)
	message := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	publisher.WriteControl(websocket.CloseMessage, message, deadline)
	var first error
	for _, sub := range f.subs {
		if sub.stalled {
			// It reads nothing, so it could never see the server's Close:
			// drop the connection, as a client that went away does.
			sub.conn.Close()
			continue
		}
		if err := sub.conn.WriteControl(websocket.CloseMessage, message, deadline); err != nil && first == nil {
			first = fmt.Errorf("subscriber %d, sending Close: %w", sub.index, err)
		}
		sub.conn.SetReadDeadline(deadline)
	}
	done := make(chan struct{})
	go func() { f.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * f.opt.timeout):
		return fmt.Errorf("subscribers still open %s after their Close", 2*f.opt.timeout)
	}
	return first
}

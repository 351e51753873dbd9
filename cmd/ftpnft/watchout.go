package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/ftpnft/ftpnft/conntrack"
)

// A watch's events go to standard output through a queue and a goroutine
// of their own, so that a reader who stops reading (a stalled pipe, a
// paused terminal) never stops the watch: it still ends on SIGINT and
// SIGTERM, and still notices a deleted namespace. When the queue is full,
// events are dropped and counted, and the count is written, as a "lost"
// line, before the next event that fits.

// watchQueue is how many events wait for a slow reader before the watch
// drops them: a few seconds of a busy server's events.
const watchQueue = 4096

// drainTime bounds how long a watch that was stopped waits for its queued
// events to be written: a reader who stopped reading must not hold it.
const drainTime = time.Second

// queued is one line of a watch's output: an event, or the number of
// events that were dropped before it.
type queued struct {
	event     conntrack.Event
	unwritten int
}

// eventWriter writes a watch's events to w.
type eventWriter struct {
	queue   chan queued
	dropped int // events dropped since the last line queued; the watch's goroutine only
	done    chan struct{}
	err     error // the first write error; read after done is closed
}

// newEventWriter starts writing events to w, as JSON lines or for people.
// A write error ends the writing and calls stop.
func newEventWriter(w io.Writer, asJSON bool, stop context.CancelFunc) *eventWriter {
	ew := &eventWriter{queue: make(chan queued, watchQueue), done: make(chan struct{})}
	enc := json.NewEncoder(w)
	go func() {
		defer close(ew.done)
		for q := range ew.queue {
			var err error
			switch {
			case q.unwritten > 0 && asJSON:
				_, err = fmt.Fprintf(w, "{\"event\":\"lost\",\"unwritten\":%d}\n", q.unwritten)
			case q.unwritten > 0:
				_, err = fmt.Fprintf(w, "[LOST] %d events not written: the output was not read fast enough\n", q.unwritten)
			case asJSON:
				err = enc.Encode(q.event)
			default:
				_, err = fmt.Fprintln(w, q.event)
			}
			if err != nil {
				ew.err = err
				stop()
				return
			}
		}
	}()
	return ew
}

// handle queues ev without blocking; it runs on the watch's goroutine.
func (ew *eventWriter) handle(ev conntrack.Event) {
	if ew.dropped > 0 {
		select {
		case ew.queue <- queued{unwritten: ew.dropped}:
			ew.dropped = 0
		default:
			ew.dropped++
			return
		}
	}
	select {
	case ew.queue <- queued{event: ev}:
	default:
		ew.dropped++
	}
}

// close ends the writing once the queue is written, or after drainTime,
// and returns the first write error.
func (ew *eventWriter) close() error {
	close(ew.queue)
	select {
	case <-ew.done:
		return ew.err
	case <-time.After(drainTime):
		return nil
	}
}

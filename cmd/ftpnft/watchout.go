package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// The lines of a watch or a trace go to standard output through a queue and
// a goroutine of their own, so that a reader who stops reading (a stalled
// pipe, a paused terminal) never stops the watch: it still ends on SIGINT
// and SIGTERM, still notices a deleted namespace, and a trace still removes
// its table. When the queue is full, lines are dropped and counted, and the
// count is written, as a "lost" line, before the next line that fits, or
// at the end.

// watchQueue is how many lines wait for a slow reader before they are
// dropped: a few seconds of a busy server's events.
const watchQueue = 4096

// drainTime bounds how long a watch that was stopped waits for its queued
// lines to be written: a reader who stopped reading must not hold it.
const drainTime = time.Second

// lineWriter writes lines to w from a goroutine of its own.
type lineWriter struct {
	queue   chan []byte
	lost    func(n int) []byte // the line that says n lines were dropped
	dropped int                // lines dropped since the last one queued; the producer's goroutine only
	done    chan struct{}
	err     error // the first write error; read after done is closed
}

// newLineWriter starts writing lines to w. A write error ends the writing
// and calls stop. lost makes the line that says how many were dropped.
func newLineWriter(w io.Writer, lost func(n int) []byte, stop context.CancelFunc) *lineWriter {
	lw := &lineWriter{queue: make(chan []byte, watchQueue), lost: lost, done: make(chan struct{})}
	go func() {
		defer close(lw.done)
		for line := range lw.queue {
			if _, err := w.Write(line); err != nil {
				lw.err = err
				stop()
				return
			}
		}
	}()
	return lw
}

// line queues one line without blocking; one producer goroutine at a time.
func (lw *lineWriter) line(b []byte) {
	if lw.dropped > 0 {
		select {
		case lw.queue <- lw.lost(lw.dropped):
			lw.dropped = 0
		default:
			lw.dropped++
			return
		}
	}
	select {
	case lw.queue <- b:
	default:
		lw.dropped++
	}
}

// close queues the count of the last lines dropped, if it fits, ends the
// writing once the queue is written or after drainTime, and returns the
// first write error. After drainTime the writer may still be blocked in a
// write: err is not read then.
func (lw *lineWriter) close() error {
	if lw.dropped > 0 {
		select {
		case lw.queue <- lw.lost(lw.dropped):
		default:
		}
	}
	close(lw.queue)
	select {
	case <-lw.done:
		return lw.err
	case <-time.After(drainTime):
		return nil
	}
}

// lostEvents is the line of a watch that says n events were not written.
func lostEvents(asJSON bool) func(n int) []byte {
	return func(n int) []byte {
		if asJSON {
			return fmt.Appendf(nil, "{\"event\":\"lost\",\"unwritten\":%d}\n", n)
		}
		return fmt.Appendf(nil, "[LOST] %d events not written: the output was not read fast enough\n", n)
	}
}
